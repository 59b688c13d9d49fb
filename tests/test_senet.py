"""SENet family: the squeeze-excite layer, exact counts, parity with timm's legacy SENets, training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn.weights import convert
from jaxcnn.layers import SqueezeExcite

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

# ../shared/reference/reference_numbers.json rows se_resnet50, se_resnext50_32x4d, senet154 (timm
# legacy_* builds): params.
REFERENCE_PARAMS = {
    "se_resnet50": 28_088_024,
    "se_resnext50_32x4d": 27_559_896,
    "senet154": 115_088_984,
}
# No reference row: the count of timm's model of the same layout (test_counts_match_timm).
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


def _rel_err(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _timm_random(name: str, seed: int = 0) -> "torch.nn.Module":
    """timm's model with random weights, built without timm's (slow, for 100M parameters) init:
    He-normal convs as timm's (fan_out = out_channels * k * k), random biases, and random BN
    affine parameters and running statistics, so eval mode exercises every converted tensor."""
    with torch.device("meta"):
        tm = timm.create_model(TIMM_NAMES[name])
    tm = tm.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in tm.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=g)
                if m.bias is not None:
                    m.bias.uniform_(-0.5, 0.5, generator=g)
            elif isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, 0.05, generator=g)
                m.bias.uniform_(-0.1, 0.1, generator=g)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return tm


def _template(name: str, size: int = 32):
    model = jaxcnn.create_model(name)
    return model, jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
    )


# -- the squeeze-excite layer ---------------------------------------------------------------------


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
    from timm.models.senet import SEModule

    torch.manual_seed(0)
    se = SEModule(32, reduction=16).eval()
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


# -- counts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_count_matches_reference(name):
    assert _count(name) == REFERENCE_PARAMS[name]
    assert jaxcnn.get_model_info(name).params == REFERENCE_PARAMS[name]


@pytest.mark.parametrize("name", sorted(set(TIMM_NAMES) - set(REFERENCE_PARAMS)))
def test_counts_match_timm(name):
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


# -- parity with timm -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, size",
    [("se_resnet50", 32), ("se_resnet50", 37), ("se_resnext50_32x4d", 32)],
)
def test_eval_parity_with_timm(name, size):
    """32 px is the smallest input; 37 px makes the ceil-mode max pool pad a partial window."""
    tm = _timm_random(name)
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x)).numpy()
    model, template = _template(name, size)
    variables = convert.from_torch(name, tm.state_dict(), template)
    got = np.asarray(model.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False))
    assert _rel_err(got, expected) < 1e-5


@pytest.mark.slow
def test_senet154_eval_parity_with_timm():
    """SENet-154 (115 M parameters; three 3x3 stem convs, 3x3 projections): batch 1 at 32 px.
    Applied without jit: compiling the 154 layers on CPU takes longer than running them once."""
    tm = _timm_random("senet154")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x)).numpy()
    model, template = _template("senet154")
    variables = convert.from_torch("senet154", tm.state_dict(), template)
    got = np.asarray(model.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False))
    assert _rel_err(got, expected) < 1e-5


@pytest.mark.parametrize("name", ["se_resnet101", "se_resnet152", "se_resnext101_32x4d"])
def test_timm_state_dict_converts_both_ways(name):
    """Every timm tensor has a place of the same shape, and back: the same keys and shapes."""
    with torch.device("meta"):
        tm = timm.create_model(TIMM_NAMES[name])
    want = {k: tuple(v.shape) for k, v in tm.state_dict().items() if "num_batches" not in k}
    sd = {k: np.zeros(s, np.float32) for k, s in want.items()}
    _, template = _template(name)
    variables = convert.from_torch(name, sd, template)
    back = convert.to_torch(name, variables)
    assert {k: tuple(v.shape) for k, v in back.items()} == want


def test_missing_tensor_is_named():
    with torch.device("meta"):
        tm = timm.create_model("legacy_seresnet50")
    sd = {k: np.zeros(tuple(v.shape), np.float32) for k, v in tm.state_dict().items()}
    del sd["layer3.2.se_module.fc2.weight"]
    _, template = _template("se_resnet50")
    with pytest.raises(convert.WeightMismatchError, match=r"no tensor 'layer3\.2\.se_module\.fc2"):
        convert.from_torch("se_resnet50", sd, template)


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


@pytest.mark.slow
def test_digits_learns(tmp_path):
    """A small SE-ResNet (one block per stage, widths / 8) on the digits at 32 px: far above the
    10% of chance after 2 epochs (0.925 measured)."""
    # Imported here: the data pipeline loads TensorFlow, which must not precede torch's import of
    # triton (that order crashes the process).
    from jaxcnn.training import loop as trainer  # noqa: PLC0415
    from jaxcnn.config import get_config  # noqa: PLC0415

    cfg = get_config()
    cfg.arch, cfg.dataset, cfg.batch_size, cfg.epochs = "se_resnet50", "digits", 32, 2
    cfg.arch_options = dict(TINY)
    cfg.image_size, cfg.log_every_steps, cfg.lr, cfg.augment = 32, 20, 0.05, False
    result = trainer.train_and_evaluate(cfg, tmp_path)
    assert result.eval_accuracy > 0.5
