"""Inception-v4 and Inception-ResNet-v2: exact counts, taps, smallest input, dropout.

Converted-weight parity: tests/weights/test_parity.py; the training run: tests/training/test_learns_digits.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import reference

NAMES = ["inception_v4", "inception_resnet_v2"]  # their rows in jaxcnn/reference (timm builds)
SMALLEST = 75  # timm fails at 74 px too


TAPS = {  # (side, channels) at 299 px
    "inception_v4": {
        "stem": (35, 384),
        "stage1": (35, 384),
        "stage2": (17, 1024),
        "stage3": (8, 1536),
    },
    "inception_resnet_v2": {
        "stem": (35, 320),
        "stage1": (35, 320),
        "stage2": (17, 1088),
        "stage3": (8, 2080),
        "final": (8, 1536),
    },
}


def _trace(name: str, size: int, channels: int = 3):
    """Shapes of (taps of `features`, variables), traced without computing anything."""
    model = jaxcnn.create_model(name)
    x = jnp.zeros((1, size, size, channels))
    return jax.eval_shape(
        lambda: model.init_with_output(jax.random.key(0), x, method=model.features)
    )


@pytest.mark.parametrize("name", NAMES)
def test_parameters_and_taps(name):
    """Exact parameter count (MACs: tests/models/test_registry_contract.py) and the `features`
    taps at 299 px."""
    feats, variables = _trace(name, 299)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
    info = jaxcnn.get_model_info(name)
    assert params == info.params == reference.row(name)["params"]
    assert info.macs == reference.row(name)["macs"]
    assert set(feats) == {*TAPS[name], "pre_logits", "logits"}
    for tap, (side, channels) in TAPS[name].items():
        assert feats[tap].shape == (1, side, side, channels), tap
    assert feats["pre_logits"].shape == (1, 1536) and feats["logits"].shape == (1, 1000)


@pytest.mark.parametrize("name", NAMES)
def test_smallest_input_any_channels(name):
    info = jaxcnn.get_model_info(name)
    assert info.min_image_size == SMALLEST and info.resolution == 299
    feats, _ = _trace(name, SMALLEST, channels=1)
    assert feats["stage3"].shape[1:3] == (1, 1) and feats["logits"].shape == (1, 1000)
    with pytest.raises(ValueError, match="at least 75x75"):
        _trace(name, SMALLEST - 1)


def test_small_options_dropout_only_in_train():
    """A reduced network (fewer blocks, quarter width): the residual projections follow the
    input width; eval is deterministic; dropout ('dropout' rng) acts in train mode only."""
    model = jaxcnn.create_model(
        "inception_resnet_v2", num_classes=10, depths=(1, 1, 2), width_mult=0.25, dropout=0.5
    )
    x = jax.random.normal(jax.random.key(1), (2, SMALLEST, SMALLEST, 3))
    # Random values from numpy rather than `init`, whose random draws take XLA:CPU a minute to compile.
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    variables = jax.tree.map(lambda s: 0.1 * rng.standard_normal(s.shape, np.float32), shapes)
    variables["batch_stats"] = jax.tree.map(np.abs, variables["batch_stats"])
    assert variables["params"]["inception_resnet_a1"]["project"]["kernel"].shape == (1, 1, 32, 80)
    apply = jax.jit(
        lambda v, x, key: model.apply(
            v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
        )[0]
    )
    a = apply(variables, x, jax.random.key(2))
    b = apply(variables, x, jax.random.key(3))
    assert not np.allclose(a, b)
    evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
    np.testing.assert_array_equal(evaluate(variables, x), evaluate(variables, x))
