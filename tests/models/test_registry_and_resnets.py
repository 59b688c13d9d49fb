"""Registry and ResNet-family modules: exact parameter counts, shapes, taps, gradients, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import reference

# Every registered model's count is checked against the vendored reference figures by the contract
# test (tests/models/test_registry_contract.py); here: the counts of other builds and hand counts.
# resnetv2_18/34/101/152 follow timm's layout: test_resnet_v2_counts_match_timm checks them.
TIMM_CHECKED = ["resnetv2_18", "resnetv2_34", "resnetv2_101", "resnetv2_152"]


def _resnet8_by_hand() -> int:
    """ResNet-8 (6n+2, n=1) counted by hand: 3x3 convs without bias, BN (2 per channel), FC."""
    conv = lambda cin, cout: 9 * cin * cout + 2 * cout  # noqa: E731 (conv + its BN)
    stem = conv(3, 16)
    stage1 = conv(16, 16) + conv(16, 16)
    stage2 = conv(16, 32) + conv(32, 32)  # option-A shortcut: no parameters
    stage3 = conv(32, 64) + conv(64, 64)
    return stem + stage1 + stage2 + stage3 + (64 * 10 + 10)


def count_params(name: str, channels: int | None = None, **kw) -> int:
    channels = channels or (1 if name == "lenet5" else 3)  # the reference LeNet-5 reads 1 channel
    model = jaxcnn.create_model(name, **kw)
    size = jaxcnn.get_model_info(name).min_image_size
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), train=False)
    )
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def test_preact_resnet152_paper_build():
    """The paper's ResNet-152 (pytorchcv preresnet152): stem BN and stride on the 1x1."""
    want = reference.row("preresnet152")["params"]
    assert count_params("resnetv2_152", stem_norm=True, stride_in_1x1=True) == want


def test_resnet8_hand_count():
    assert count_params("resnet8") == _resnet8_by_hand() == 75_290
    assert jaxcnn.get_model_info("resnet8").params == _resnet8_by_hand()


def test_alexnet_single_tower_is_the_lecture_count():
    """The lecture draws AlexNet as one tower: no groups, 62,378,344 parameters."""
    want = reference.row("alexnet_lecture")["params"]
    assert count_params("alexnet_2012", groups=(1,) * 5) == want == 62_378_344


def test_v1_stride_placement_changes_no_parameter():
    assert count_params("resnet50", stride_in_1x1=True) == reference.row("resnet50_v1")["params"]


def test_aliases_and_names():
    assert jaxcnn.get_model_info("resnext50").name == "resnext50_32x4d"
    assert jaxcnn.get_model_info("ResNet-50").name == "resnet50"
    assert "resnet50" in jaxcnn.list_models()
    assert jaxcnn.list_models("vgg") == sorted(
        f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")
    )
    assert jaxcnn.list_models("resnet_cifar") == sorted(
        [f"resnet{d}" for d in (8, 20, 32, 44, 56, 110, 1202)]
        + [f"plain{d}" for d in (20, 32, 44, 56, 110)]
    )


def test_unknown_name_lists_closest():
    with pytest.raises(jaxcnn.UnknownModelError, match="resnet50") as e:
        jaxcnn.create_model("resnet51")
    assert "Closest" in str(e.value)


def test_unknown_variant_option():
    with pytest.raises(ValueError, match="stride_in_1x1"):
        jaxcnn.create_model("resnet50", stride_in_3x3=True)


def test_wrong_rank_says_expected_shape():
    model = jaxcnn.create_model("resnet20")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\).*x\[None\]"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((32, 32, 3)), train=False))


def test_num_classes_and_any_channel_count():
    assert count_params("resnet20", channels=1, num_classes=7) == (
        jaxcnn.get_model_info("resnet20").params - 9 * 16 * 2 - 65 * 3
    )


@pytest.mark.parametrize(
    "name, size", [("resnet18", 64), ("resnext50_32x4d", 32), ("resnet20", 16)]
)
def test_features_taps_shapes(name, size):
    model = jaxcnn.create_model(name)
    x = jnp.zeros((2, size, size, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    taps = jax.eval_shape(
        lambda v: model.apply(v, x, train=False, method=model.features), variables
    )
    info = jaxcnn.get_model_info(name)
    v = info.variant
    stride = 4 if v.stem == "imagenet" else 1
    assert taps["stem"].shape == (2, size // stride, size // stride, 64 if stride == 4 else 16)
    for i, w in enumerate(v.widths, start=1):
        s = stride * 2 ** (i - 1)
        assert taps[f"stage{i}"].shape == (2, size // s, size // s, w * v.expansion)
    assert taps["pre_logits"].shape == (2, v.widths[-1] * v.expansion)
    assert taps["logits"].shape == (2, info.num_classes)


def test_forward_gradients_and_modes():
    """Small real forward/backward: finite, every parameter gets a gradient, eval is deterministic
    and uses the running statistics, train mode updates them."""
    model = jaxcnn.create_model("resnet8")
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 2))
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)
    evaluate = jax.jit(lambda v: model.apply(v, x, train=False))
    logits = evaluate(variables)
    assert logits.shape == (4, 10) and bool(jnp.isfinite(logits).all())
    np.testing.assert_array_equal(logits, evaluate(variables))

    def loss(params):
        out, upd = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.mean(out**2), upd

    grads, updates = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert float(jnp.abs(g).max()) > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"
    old = variables["batch_stats"]["stem"]["bn"]["mean"]
    new = updates["batch_stats"]["stem"]["bn"]["mean"]
    assert not np.allclose(old, new)  # train mode moved the running mean
    # Eval mode must read the running statistics: changing them changes the output.
    shifted = jax.tree.map(lambda a: a + 1.0, variables["batch_stats"])
    assert not np.allclose(logits, evaluate({**variables, "batch_stats": shifted}))


@pytest.mark.parametrize(
    "name, size, taps",
    [
        ("lenet5", 32, {"c1": (14, 14, 6), "c3": (5, 5, 16), "pre_logits": (84,)}),
        (
            "alexnet_2012",
            227,
            {"conv1": (27, 27, 96), "conv2": (13, 13, 256), "conv5": (6, 6, 256)},
        ),
        ("zfnet", 224, {"conv1": (55, 55, 96), "conv2": (13, 13, 256), "conv5": (6, 6, 256)}),
        ("vgg16", 224, {"stage1": (112, 112, 64), "stage5": (7, 7, 512), "pre_logits": (4096,)}),
        # Huang et al. Table 1: 56x56 after the stem, 7x7 in block 4; 64 + 6 * 32 = 256 channels.
        (
            "densenet121",
            224,
            {"stem": (56, 56, 64), "block1": (56, 56, 256), "block4": (7, 7, 1024)},
        ),
    ],
)
def test_feature_map_sizes_of_the_papers(name, size, taps):
    """The sizes the papers give: AlexNet 55 -> 27 -> 13 -> 6, ZFNet 110 -> 55 -> 26 -> 13 -> 6."""
    model = jaxcnn.create_model(name)
    x = jnp.zeros((1, size, size, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    out = jax.eval_shape(lambda v: model.apply(v, x, train=False, method=model.features), variables)
    for k, shape in taps.items():
        assert out[k].shape == (1, *shape), k


@pytest.mark.parametrize(
    "name, size", [("lenet5", 32), ("alexnet_2012", 67), ("zfnet", 63), ("vgg11_bn", 32)]
)
def test_small_forward_gradients_and_dropout(name, size):
    """Finite logits, a gradient for every parameter, dropout only in train mode.

    The hidden fully connected layers are narrowed to 64 (`fc`): the checks do not depend on their
    width, and drawing and differentiating their ~100M parameters eagerly took most of the time.
    """
    narrow = {} if name == "lenet5" else {"fc": (64, 64)}
    model = jaxcnn.create_model(name, num_classes=5, **narrow)
    x = jax.random.normal(jax.random.key(1), (2, size, size, 2))
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)
    evaluate = jax.jit(lambda v: model.apply(v, x, train=False))
    out = evaluate(variables)
    assert out.shape == (2, 5) and bool(jnp.isfinite(out).all())
    np.testing.assert_array_equal(out, evaluate(variables))

    def loss(params, key):
        y, _ = model.apply(
            {**variables, "params": params},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        return jnp.sum(y**2), y

    grad = jax.jit(jax.grad(loss, has_aux=True))
    grads, y1 = grad(variables["params"], jax.random.key(2))
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert float(jnp.abs(g).max()) > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"
    _, y2 = grad(variables["params"], jax.random.key(3))
    if name in ("alexnet_2012", "zfnet", "vgg11_bn", "mobilenet_v2"):  # the ones with dropout
        assert not np.allclose(y1, y2)


def test_lenet_needs_32x32():
    model = jaxcnn.create_model("lenet5")
    with pytest.raises(ValueError, match="32x32 inputs.*--image_size=32"):
        jax.eval_shape(
            lambda: model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), train=False)
        )


@pytest.mark.parametrize("name", TIMM_CHECKED)
def test_resnet_v2_counts_match_timm(name):
    timm = pytest.importorskip("timm")
    want = sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())
    assert jaxcnn.get_model_info(name).params == want
    assert count_params(name) == want


@pytest.mark.parametrize("width", [0.5, 0.75, 1.4])
def test_mobilenet_v2_width_multiplier_matches_torchvision(width):
    """Channel rounding (make_divisible) as torchvision's: the same parameter count per width."""
    torchvision = pytest.importorskip("torchvision")
    tv = torchvision.models.mobilenet_v2(weights=None, width_mult=width)
    assert count_params("mobilenet_v2", width_mult=width) == sum(p.numel() for p in tv.parameters())
