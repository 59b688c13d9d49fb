"""CIFAR Wide ResNets: exact counts (reference and by hand), names, dropout, taps.

The training run: tests/training/test_learns_digits.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import reference
from jaxcnn.weights import convert

NAMES = ("wrn16_8", "wrn28_10", "wrn40_4")  # their counts: the reference rows *_cifar


def _count(name: str, **kw) -> int:
    model = jaxcnn.create_model(name, **kw)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def _by_hand(depth: int, k: int, classes: int = 10) -> int:
    """WRN-d-k counted by hand: bias-free convs, BN (2 per channel), 1x1 projections, FC."""
    n, cin, total = (depth - 4) // 6, 16, 3 * 9 * 16  # stem: 3x3, 3 -> 16
    for width in (16 * k, 32 * k, 64 * k):
        for _ in range(n):
            total += 2 * cin + 9 * cin * width  # norm1, conv1
            total += 2 * width + 9 * width * width  # norm2, conv2
            total += cin * width if cin != width else 0  # 1x1 projection
            cin = width
    return total + 2 * cin + cin * classes + classes  # final BN, head


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_by_hand(name):
    """The hand count of the formula equals the reference figure (and the build: the contract
    test)."""
    info = jaxcnn.get_model_info(name)
    assert _by_hand(info.variant.depth, info.variant.widen_factor) == info.params
    assert info.params == reference.row(f"{name}_cifar")["params"]


def test_tiny_wrn_by_hand():
    # WRN-10-1: one block per stage, widths 16-32-64; stage 1 has no projection.
    assert _by_hand(10, 1) == 432 + (32 + 2304 + 32 + 2304) + (32 + 4608 + 64 + 9216 + 512) + (
        64 + 18432 + 128 + 36864 + 2048
    ) + (128 + 650)
    assert _count("wrn16_8", depth=10, widen_factor=1) == _by_hand(10, 1) == 77_850


def test_dropout_adds_no_parameter_and_bad_depth_is_refused():
    assert _count("wrn28_10", dropout=0.3) == jaxcnn.get_model_info("wrn28_10").params
    with pytest.raises(ValueError, match="6n \\+ 4"):
        jaxcnn.create_model("wrn16_8", depth=20)


def test_names_and_aliases():
    assert jaxcnn.list_models("wrn") == ["wrn16_8", "wrn28_10", "wrn40_4"]
    for alias, name in [
        ("WRN-28-10", "wrn28_10"),
        ("wrn-16-8", "wrn16_8"),
        ("WRN-40-4", "wrn40_4"),
    ]:
        assert jaxcnn.get_model_info(alias).name == name
    info = jaxcnn.get_model_info("wrn28_10")
    assert (info.resolution, info.min_image_size, info.num_classes) == (32, 4, 10)
    # The ImageNet bottleneck WRN stays with the ResNets.
    assert jaxcnn.get_model_info("wrn50_2").name == "wide_resnet50_2"
    with pytest.raises(NotImplementedError, match="no torchvision/timm counterpart"):
        convert.torch_name("wrn16_8", ("params", "stem_conv", "kernel"))


def test_taps_dropout_and_channels():
    """WRN-10-2 with the paper's dropout 0.3: taps, train-only dropout, any channel count."""
    model = jaxcnn.create_model("wrn16_8", depth=10, widen_factor=2, dropout=0.3, num_classes=5)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 12, 12, 1)), jnp.float32)
    # Random variables drawn by numpy: `init` under jit compiles for longer than this test runs.
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    rng = np.random.default_rng(0)
    variables = jax.tree_util.tree_map_with_path(
        lambda path, s: (
            np.ones(s.shape, np.float32)
            if path[-1].key in ("var", "scale")
            else (rng.standard_normal(s.shape) * 0.1).astype(np.float32)
        ),
        shapes,
    )
    assert "downsample" in variables["params"]["stage1_block1"]  # 16 -> 32 channels
    assert set(variables["params"]) == {
        "stem_conv",
        "stage1_block1",
        "stage2_block1",
        "stage3_block1",
        "final_norm",
        "head",
    }
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False, method=model.features))
    taps = apply(variables, x)
    assert {k: v.shape for k, v in taps.items()} == {
        "stem": (2, 12, 12, 16),
        "stage1": (2, 12, 12, 32),
        "stage2": (2, 6, 6, 64),
        "stage3": (2, 3, 3, 128),
        "pre_logits": (2, 128),
        "logits": (2, 5),
    }
    np.testing.assert_array_equal(taps["logits"], apply(variables, x)["logits"])
    train = jax.jit(
        lambda key: model.apply(
            variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
        )[0]
    )
    assert not np.allclose(train(jax.random.key(1)), train(jax.random.key(2)))
    with pytest.raises(ValueError, match="NHWC"):
        model.apply(variables, x[0], train=False)
