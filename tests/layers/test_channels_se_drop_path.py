"""Channel shuffle (against torchvision's), squeeze-excite (by hand and against timm's SEModule),
DropPath (stochastic depth: identity in eval, unbiased in train)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.layers import DropPath, SqueezeExcite
from jaxcnn.layers.shuffle import channel_shuffle


def test_channel_shuffle_matches_torchvision():
    torch = pytest.importorskip("torch")
    shufflenetv2 = pytest.importorskip("torchvision.models.shufflenetv2")

    x = np.random.default_rng(0).standard_normal((2, 3, 4, 12)).astype(np.float32)
    for g in (2, 3, 4):
        want = shufflenetv2.channel_shuffle(torch.from_numpy(x.transpose(0, 3, 1, 2)), g)
        np.testing.assert_array_equal(
            channel_shuffle(jnp.asarray(x), g), want.numpy().transpose(0, 2, 3, 1)
        )


def test_squeeze_excite_by_hand():
    x = np.random.default_rng(0).standard_normal((2, 5, 4, 8)).astype(np.float32)
    layer = SqueezeExcite(hidden=2)
    variables = layer.init(jax.random.key(0), jnp.asarray(x))
    p = variables["params"]
    assert p["fc1"]["kernel"].shape == (1, 1, 8, 2) and p["fc2"]["kernel"].shape == (1, 1, 2, 8)
    w1, b1 = np.asarray(p["fc1"]["kernel"])[0, 0], np.asarray(p["fc1"]["bias"])
    w2, b2 = np.asarray(p["fc2"]["kernel"])[0, 0], np.asarray(p["fc2"]["bias"])
    squeeze = x.mean(axis=(1, 2))  # (N, C)
    gate = 1 / (1 + np.exp(-(np.maximum(squeeze @ w1 + b1, 0) @ w2 + b2)))
    want = x * gate[:, None, None, :]
    np.testing.assert_allclose(layer.apply(variables, jnp.asarray(x)), want, rtol=1e-5, atol=1e-6)


def test_squeeze_excite_matches_timm_semodule():
    torch = pytest.importorskip("torch")
    senet = pytest.importorskip("timm.models.senet")

    torch.manual_seed(0)
    se = senet.SEModule(32, reduction=16).eval()
    x = np.random.default_rng(1).standard_normal((2, 32, 6, 6)).astype(np.float32)
    with torch.no_grad():
        want = se(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    variables = {
        "params": {
            fc: {
                "kernel": getattr(se, fc).weight.detach().numpy().transpose(2, 3, 1, 0),
                "bias": getattr(se, fc).bias.detach().numpy(),
            }
            for fc in ("fc1", "fc2")
        }
    }
    got = SqueezeExcite(hidden=2).apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_drop_path_eval_identity_train_unbiased():
    x = jnp.ones((20_000, 3, 2))
    layer = DropPath(0.3)
    assert (layer.apply({}, x, deterministic=True) == x).all()
    y = np.asarray(layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(1)}))
    per_sample = y.reshape(len(y), -1)
    assert (per_sample == per_sample[:, :1]).all()  # one draw per sample
    np.testing.assert_allclose(np.unique(per_sample), [0.0, 1 / 0.7], rtol=1e-6)
    # Mean 1 (std 0.0046 over 20,000 samples); without the 1/0.7 scaling it would be 0.7.
    assert abs(per_sample.mean() - 1.0) < 0.03
    assert abs((per_sample[:, 0] == 0).mean() - 0.3) < 0.02
    assert (DropPath(1.0).apply({}, x, deterministic=False) == 0).all()
    with pytest.raises(ValueError, match="rate"):
        DropPath(1.5).apply({}, x, deterministic=False)
