"""MobileNetV3 Large / Small (torchvision parity) and the MobileNet v1 widths (timm parity,
pytorchcv counts): exact counts, converted-weight parity, taps, dropout, a short training run."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn.weights import convert
from jaxcnn.models import mobilenet_v3 as V3

# Parameter counts. mobilenet_v3_large / _small and mobilenet_v1: reference_numbers.json rows of the
# same names (torchvision mobilenet_v3_*, timm mobilenetv1_100). mobilenet_v1_075 / _050 / _025:
# pytorchcv 0.0.74 mobilenet_w3d4 / wd2 / wd4 (timm's builder at these widths gives the same).
REFERENCE_PARAMS = {
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v1_075": 2_585_560,
    "mobilenet_v1_050": 1_331_592,
    "mobilenet_v1_025": 470_072,
}


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


def _randomize(model, seed: int = 0) -> None:
    """Random BN affine and running statistics, so eval mode exercises every converted tensor."""
    import torch  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _eval_parity(name: str, torch_model, size: int, **overrides) -> float:
    """Max relative error of our eval-mode logits against `torch_model`'s, converted weights."""
    import torch  # noqa: PLC0415

    torch_model.eval()
    _randomize(torch_model)
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x)).numpy()
    model = jaxcnn.create_model(name, **overrides)
    variables = convert.from_torch(name, torch_model.state_dict(), _template(model, size))
    # jit: one compiled graph is several times faster here than op-by-op dispatch.
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    got = np.asarray(apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1))))
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


# ---------------------------------------------------------------- counts and layout


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_count_and_registry(name):
    info = jaxcnn.get_model_info(name)
    assert info.params == REFERENCE_PARAMS[name]
    assert _count(_template(jaxcnn.create_model(name))) == REFERENCE_PARAMS[name]


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
    assert REFERENCE_PARAMS[ours] == want
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


# ---------------------------------------------------------------- parity


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small"])
def test_v3_eval_parity_with_torchvision(name):
    """torchvision weights=None, random BN statistics, 32 px (the smallest input: 1x1 at the end)."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    assert _eval_parity(name, getattr(torchvision.models, name)(weights=None), 32) < 1e-5


def test_v3_train_mode_bn_momentum_matches_torchvision():
    """BatchNorm momentum 0.01 and epsilon 0.001: a train-mode step updates the running means as
    torchvision's does (dropout is switched off on both sides)."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(1)
    tv = torchvision.models.mobilenet_v3_small(weights=None, dropout=0.0)
    _randomize(tv, seed=1)
    tv.train()
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    name = "mobilenet_v3_small"
    model = jaxcnn.create_model(name, dropout=0.0)
    variables = convert.from_torch(name, tv.state_dict(), _template(model))
    want = tv(torch.from_numpy(x)).detach().numpy()
    got, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1))
    )
    assert float(np.max(np.abs(got - want)) / np.max(np.abs(want))) < 1e-4
    for ours, theirs in [
        (updates["batch_stats"]["stem"]["bn"]["mean"], tv.features[0][1].running_mean),
        (
            updates["batch_stats"]["block4"]["dw"]["bn"]["mean"],
            tv.features[4].block[1][1].running_mean,
        ),
    ]:
        np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("relu6", [False, True])
def test_v1_eval_parity_with_timm(relu6):
    """timm's mobilenetv1_100 (ReLU6 by default; act_layer='relu' gives the paper's ReLU)."""
    timm = pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = timm.create_model(
        "mobilenetv1_100", pretrained=False, act_layer="relu6" if relu6 else "relu"
    )
    assert _eval_parity("mobilenet_v1", tm, 32, relu6=relu6) < 1e-5


def test_missing_tensor_is_named():
    torchvision = pytest.importorskip("torchvision")
    name = "mobilenet_v3_small"
    sd = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    del sd["features.4.block.2.fc1.weight"]  # block 4's SE: [expand, dw, se, project]
    with pytest.raises(convert.WeightMismatchError, match=r"no tensor 'features\.4\.block\.2\.fc1"):
        convert.from_torch(name, sd, _template(jaxcnn.create_model(name)))


def test_round_trip_to_torchvision_names():
    torchvision = pytest.importorskip("torchvision")
    sd = torchvision.models.mobilenet_v3_large(weights=None).state_dict()
    want = {k for k in sd if not k.endswith("num_batches_tracked")}
    model = jaxcnn.create_model("mobilenet_v3_large")
    variables = convert.from_torch("mobilenet_v3_large", sd, _template(model))
    back = convert.to_torch("mobilenet_v3_large", variables)
    assert set(back) == want
    for k in ("features.13.block.2.fc2.weight", "classifier.0.weight", "features.16.0.weight"):
        np.testing.assert_array_equal(back[k], sd[k].numpy())


# ---------------------------------------------------------------- training


@pytest.mark.slow
def test_digits_learns(tmp_path):
    """MobileNetV3-Small at width 0.5 on 32 px digits (8x8 upscaled), through the trainer.

    BatchNorm momentum 0.1 instead of torchvision's 0.01: over 132 steps the running statistics
    that evaluation uses would otherwise still be far from the data's (measured: 0.889 with 0.1;
    the run with 0.01 failed the 0.5 threshold)."""
    from jaxcnn.training import loop as trainer  # noqa: PLC0415
    from jaxcnn.config import get_config  # noqa: PLC0415

    cfg = get_config()
    cfg.arch, cfg.dataset, cfg.batch_size, cfg.epochs = "mobilenet_v3_small", "digits", 32, 3
    cfg.arch_options = {"width_mult": 0.5, "bn_momentum": 0.1}
    cfg.image_size, cfg.log_every_steps, cfg.lr = 32, 20, 0.05
    result = trainer.train_and_evaluate(cfg, tmp_path)
    assert result.eval_accuracy > 0.5


def test_variant_is_frozen_data():
    v = V3.VARIANTS["mobilenet_v3_large"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.width_mult = 2.0  # type: ignore[misc]
