"""MobileNetV3 Large / Small and the MobileNet v1 widths: exact counts (against torchvision and
pytorchcv too), block tables, taps, dropout.

Converted-weight parity: tests/weights/test_parity.py;
the training run: tests/training/test_learns_digits.py.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn.models import mobilenet_v3 as V3


def _template(model, size: int = 32, channels: int = 3):
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), train=False)
    )


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree["params"]))


def _numpy_variables(template, seed: int = 0):
    """Random variables of the template's shapes, drawn with numpy: `model.init` compiles one
    random initializer per parameter, which takes minutes on a busy 2-core CPU."""
    rng = np.random.default_rng(seed)

    def leaf(path, x):
        if path[-1].key == "var":
            return jnp.ones(x.shape, x.dtype)
        if path[-1].key == "mean":
            return jnp.zeros(x.shape, x.dtype)
        return jnp.asarray(rng.standard_normal(x.shape) * 0.1, x.dtype)

    return jax.tree_util.tree_map_with_path(leaf, template)


# ---------------------------------------------------------------- counts and layout


def test_block_tables():
    """Tables 1 and 2 as data: (kernel, exp size, out, SE, activation, stride) per bneck."""
    rows = lambda t: [(b.kernel, b.expanded, b.out, b.se, b.act, b.stride) for b in t]  # noqa: E731
    large, small = rows(V3.LARGE), rows(V3.SMALL)
    assert len(large) == 15 and len(small) == 11
    assert large[0] == (3, 16, 16, False, "RE", 1) and large[-1] == (5, 960, 160, True, "HS", 1)
    assert small[0] == (3, 16, 16, True, "RE", 2) and small[-1] == (5, 576, 96, True, "HS", 1)
    assert [r[5] for r in large].count(2) == 4 and [r[5] for r in small].count(2) == 4


@pytest.mark.parametrize("name, width", [("mobilenet_v3_large", 0.75), ("mobilenet_v3_small", 0.5)])
def test_v3_width_multiplier_matches_torchvision(name, width):
    """Channel rounding as torchvision's (every width, SE squeeze and the last layer)."""
    torchvision = pytest.importorskip("torchvision")
    want = sum(p.numel() for p in getattr(torchvision.models, name)(width_mult=width).parameters())
    assert _count(_template(jaxcnn.create_model(name, width_mult=width))) == want


@pytest.mark.parametrize("width, name", [(0.75, "w3d4"), (0.5, "wd2"), (0.25, "wd4")])
def test_v1_widths_match_pytorchcv(width, name):
    """The paper's widths (Table 6): pytorchcv's int(c * alpha) and our make_divisible agree."""
    pcv = pytest.importorskip("pytorchcv.models.mobilenet")
    want = sum(p.numel() for p in getattr(pcv, f"mobilenet_{name}")().parameters())
    ours = f"mobilenet_v1_{round(width * 100):03d}"
    assert jaxcnn.get_model_info(ours).params == want
    assert _count(_template(jaxcnn.create_model("mobilenet_v1", width_mult=width))) == want


def test_v3_taps_any_channel_count_and_input_check():
    model = jaxcnn.create_model("mobilenet_v3_small", num_classes=7)
    x = jnp.ones((2, 32, 32, 5))
    variables = _template(model, 32, 5)  # shapes only: nothing is computed
    taps = jax.eval_shape(lambda v, x: model.apply(v, x, method=model.features), variables, x)
    shapes = {k: v.shape for k, v in taps.items()}
    assert shapes["stem"] == (2, 16, 16, 16)
    assert shapes["block1"] == (2, 8, 8, 16) and shapes["block11"] == (2, 1, 1, 96)
    assert shapes["final"] == (2, 1, 1, 576) and shapes["pooled"] == (2, 576)
    assert shapes["pre_logits"] == (2, 1024) and shapes["logits"] == (2, 7)
    assert variables["params"]["stem"]["conv"]["kernel"].shape == (3, 3, 5, 16)
    with pytest.raises(ValueError, match=r"NHWC.*\(add a batch axis"):
        jax.eval_shape(lambda v: model.apply(v, jnp.ones((32, 32, 5)), train=False), variables)


def test_v3_dropout_only_in_train_mode():
    model = jaxcnn.create_model("mobilenet_v3_small", num_classes=10, width_mult=0.5)
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    variables = _numpy_variables(_template(model, 32))

    @jax.jit
    def train(seed):  # seed is traced: one compilation for both calls
        out, _ = model.apply(
            variables,
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.key(seed)},
        )
        return out

    assert not np.allclose(train(0), train(1))
    evaluate = jax.jit(lambda v: model.apply(v, x, train=False))
    np.testing.assert_array_equal(evaluate(variables), evaluate(variables))


def test_variant_is_frozen_data():
    v = V3.VARIANTS["mobilenet_v3_large"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.width_mult = 2.0  # type: ignore[misc]
