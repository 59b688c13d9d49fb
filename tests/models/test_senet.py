"""SENet family: exact counts (against timm's legacy SENets too), names, taps, dropout.

The squeeze-excite layer: tests/layers; parity with timm: tests/weights/test_parity.py; the
training run: tests/training/test_learns_digits.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn

# Every variant's count against timm's model of the same layout (the contract test checks them
# against the vendored reference figures too).
TIMM_NAMES = {
    "se_resnet50": "legacy_seresnet50",
    "se_resnet101": "legacy_seresnet101",
    "se_resnet152": "legacy_seresnet152",
    "se_resnext50_32x4d": "legacy_seresnext50_32x4d",
    "se_resnext101_32x4d": "legacy_seresnext101_32x4d",
    "senet154": "legacy_senet154",
}


def _count(name: str, **kw) -> int:
    model = jaxcnn.create_model(name, **kw)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


# -- counts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TIMM_NAMES))
def test_counts_match_timm(name):
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    with torch.device("meta"):  # shapes only: no memory, no init
        want = sum(p.numel() for p in timm.create_model(TIMM_NAMES[name]).parameters())
    assert _count(name) == want
    assert jaxcnn.get_model_info(name).params == want


def test_registry_and_aliases():
    assert jaxcnn.list_models("senet") == sorted(TIMM_NAMES)
    assert jaxcnn.get_model_info("SE-ResNet50").name == "se_resnet50"
    assert jaxcnn.get_model_info("se_resnext50").name == "se_resnext50_32x4d"
    for ours, theirs in TIMM_NAMES.items():
        assert jaxcnn.get_model_info(theirs).name == ours
    # MACs of the paper's 224 x 224 (Hu et al. 2018 Table 2: 3.87 G for SE-ResNet-50, stride on
    # the 1x1 as the paper).
    assert jaxcnn.get_model_info("se_resnet50").macs == 3_860_488_192


# -- behaviour ------------------------------------------------------------------------------------

# A small SE-ResNet for fast tests: one block per stage, 1/8 of the widths.
TINY = {"depths": (1, 1, 1, 1), "widths": (8, 16, 32, 64), "stem_widths": (16,)}


def _numpy_variables(model, x):
    """Random variables of the model's shapes, drawn by numpy: `init` under jit compiles for
    longer than these tests run."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    rng = np.random.default_rng(0)
    return jax.tree_util.tree_map_with_path(
        lambda path, s: (
            np.ones(s.shape, np.float32)
            if path[-1].key in ("var", "scale")
            else (rng.standard_normal(s.shape) * 0.1).astype(np.float32)
        ),
        shapes,
    )


def test_taps_dropout_and_channels():
    # SENet-154's stem (three 3x3 convs), 3x3 projections and dropout on the tiny SE-ResNet.
    opts = {"stem_widths": (8, 8, 16), "stem_kernel": 3, "downsample_kernel": 3, "dropout": 0.5}
    model = jaxcnn.create_model("se_resnet50", num_classes=7, **TINY | opts)
    x = jnp.ones((2, 40, 40, 1))  # one channel, a side that is no multiple of 32
    variables = _numpy_variables(model, x)
    taps = jax.jit(lambda v, x: model.apply(v, x, train=False, method=model.features))(variables, x)
    shapes = {k: v.shape for k, v in taps.items()}
    assert shapes == {
        "stem": (2, 10, 10, 16),
        "stage1": (2, 10, 10, 32),
        "stage2": (2, 5, 5, 64),
        "stage3": (2, 3, 3, 128),
        "stage4": (2, 2, 2, 256),
        "pre_logits": (2, 256),
        "logits": (2, 7),
    }
    # Dropout before the classifier: train mode only, from the 'dropout' stream.
    train = jax.jit(
        lambda key: model.apply(
            variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
        )[0]
    )
    assert not np.allclose(train(jax.random.key(1)), train(jax.random.key(2)))
    again = jax.jit(lambda v, x: model.apply(v, x, train=False, method=model.features))(
        variables, x
    )
    np.testing.assert_array_equal(taps["logits"], again["logits"])
    with pytest.raises(ValueError, match="NHWC"):
        model.apply(variables, x[0], train=False)


def test_too_narrow_for_the_groups_is_refused():
    model = jaxcnn.create_model("senet154", widths=(16, 32, 64, 128))
    with pytest.raises(ValueError, match="divisible by its 64 groups"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)), train=False))
