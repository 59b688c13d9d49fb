"""Pooling, normalisation and padding layers against PyTorch's: adaptive average pooling, LRN,
TensorFlow-"SAME" padding and pools (timm's layers), NASNet's factorized reduction."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import randomize_bn

from jaxcnn.layers.lrn import LocalResponseNorm
from jaxcnn.layers.padding import same_padding
from jaxcnn.layers.pooling import adaptive_avg_pool, avg_pool_same, max_pool_same

torch = pytest.importorskip("torch")


def test_adaptive_pool_and_lrn_match_pytorch():
    x = np.random.default_rng(0).standard_normal((2, 10, 13, 8)).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2))
    for out in (7, 6, 5, 3):
        want = torch.nn.AdaptiveAvgPool2d(out)(xt).numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(
            adaptive_avg_pool(jnp.asarray(x), out), want, rtol=1e-6, atol=1e-6
        )
    want = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(xt * 30).numpy()
    got = LocalResponseNorm().apply({}, jnp.asarray(x * 30))
    np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), rtol=1e-5)


@pytest.mark.parametrize("size", [5, 6, 7, 8, 15])
def test_same_padding_ops_match_timm(size):
    """Strided SAME pads (the odd pixel after), timm's AvgPool2dSame counting its padding, TF's
    average pool not counting it, stride-1 pools not counting it, -inf max-pool padding."""
    layers = pytest.importorskip("timm.layers")
    functional = torch.nn.functional

    x = np.random.default_rng(size).standard_normal((2, size, size, 3)).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2))

    def check(ours, theirs):
        want = theirs(xt).detach().numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(np.asarray(ours), want, rtol=1e-6, atol=1e-6)

    for k in (1, 3, 5, 7):
        for s in (1, 2):
            lo, hi = same_padding(size, k, s)
            assert lo + hi == layers.get_same_padding(size, k, s, 1) and hi - lo in (0, 1)
    for s in (1, 2):
        check(
            avg_pool_same(jnp.asarray(x), 3, s, count_padding=s > 1),
            layers.create_pool2d("avg", 3, s, padding="same", count_include_pad=False),
        )
        check(
            max_pool_same(jnp.asarray(x), 3, s), layers.create_pool2d("max", 3, s, padding="same")
        )

    def tf_avg(t):  # window sums over window pixel counts, SAME-padded
        def pad(u):
            return layers.pad_same(u, [3, 3], [2, 2])

        return functional.avg_pool2d(pad(t), 3, 2) / functional.avg_pool2d(
            pad(torch.ones_like(t)), 3, 2
        )

    check(avg_pool_same(jnp.asarray(x), 3, 2, count_padding=False), tf_avg)


@pytest.mark.parametrize("size", [6, 7])
def test_factorized_reduction_matches_timm(size):
    """Even pixels and odd pixels (shifted, zero past the border) through two 1x1 convs, then BN."""
    timm_pnasnet = pytest.importorskip("timm.models.pnasnet")
    from jaxcnn.models import nasnet

    theirs = timm_pnasnet.FactorizedReduction(3, 8).eval()
    randomize_bn(theirs)
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = theirs(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    sd = {k: v.numpy() for k, v in theirs.state_dict().items()}
    bn = "final_path_bn."
    variables = {
        "params": {
            "path_1": {"kernel": sd["path_1.conv.weight"].transpose(2, 3, 1, 0)},
            "path_2": {"kernel": sd["path_2.conv.weight"].transpose(2, 3, 1, 0)},
            "final_path_bn": {"scale": sd[bn + "weight"], "bias": sd[bn + "bias"]},
        },
        "batch_stats": {
            "final_path_bn": {"mean": sd[bn + "running_mean"], "var": sd[bn + "running_var"]}
        },
    }
    got = nasnet.FactorizedReduction(8).apply(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False
    )
    assert got.shape == (2, -(-size // 2), -(-size // 2), 8)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
