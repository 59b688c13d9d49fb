"""Inception-v4 and Inception-ResNet-v2: exact counts, smallest input, timm parity, training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn.weights import convert

# Reference rows `inception_v4` and `inception_resnet_v2` of ../shared/reference/reference_numbers.json
# (timm builds, 1000 classes; MACs at 299 px, conv and linear layers only).
REFERENCE = {
    "inception_v4": (42_679_816, 12_253_974_624),
    "inception_resnet_v2": (55_843_464, 13_155_794_016),
}
NAMES = list(REFERENCE)
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
    """Exact parameter count (MACs: tests/test_all_models.py) and the `features` taps at 299 px."""
    feats, variables = _trace(name, 299)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
    info = jaxcnn.get_model_info(name)
    assert params == REFERENCE[name][0] == info.params and info.macs == REFERENCE[name][1]
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


# ---- parity with timm ----------------------------------------------------------------------------


def _randomize(tm, seed: int = 0) -> None:
    """Random BN affine and running statistics, so eval mode exercises every converted tensor."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _template(name: str):
    model = jaxcnn.create_model(name)
    x = jnp.zeros((1, SMALLEST, SMALLEST, 3))
    return model, jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


@pytest.mark.parametrize("name", NAMES)
def test_eval_parity_with_timm(name):
    """timm's model with random weights and BN statistics, eval mode, batch 2 at 75 px."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    tm = timm.create_model(name, pretrained=False).eval()
    _randomize(tm)
    x = np.random.default_rng(0).standard_normal((2, 3, SMALLEST, SMALLEST)).astype(np.float32)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x)).numpy()
    model, template = _template(name)
    variables = convert.from_torch(name, tm.state_dict(), template)
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    got = np.asarray(forward(variables, jnp.asarray(x.transpose(0, 2, 3, 1))))
    assert float(np.max(np.abs(got - expected)) / np.max(np.abs(expected))) < 1e-5
    # Back to a timm state dict: the same names and tensors.
    back = convert.to_torch(name, variables)
    sd = {k: v for k, v in tm.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(back) == set(sd)
    for k in ("last_linear.weight", "classif.weight", "repeat_1.19.conv2d.bias"):
        if k in sd:
            np.testing.assert_array_equal(back[k], sd[k].numpy())


@pytest.mark.parametrize(
    "name, missing",
    [
        ("inception_v4", "features.21.branch2_3b.bn.running_var"),
        ("inception_resnet_v2", "block8.conv2d.weight"),
    ],
)
def test_missing_tensor_is_named(name, missing):
    timm = pytest.importorskip("timm")
    sd = dict(timm.create_model(name, pretrained=False).state_dict())
    del sd[missing]
    _, template = _template(name)
    with pytest.raises(convert.WeightMismatchError, match=f"no tensor '{missing}'"):
        convert.from_torch(name, sd, template)


# ---- a real training run -------------------------------------------------------------------------


@pytest.mark.slow
def test_digits_learns_small_inception_resnet(tmp_path):
    """Inception-ResNet-v2 cut to one block per stage type and a quarter of the width, 75 px
    digits, two epochs: far above the 10% of chance."""
    from jaxcnn.training import loop as trainer
    from jaxcnn.config import get_config

    cfg = get_config()
    cfg.arch, cfg.dataset, cfg.image_size = "inception_resnet_v2", "digits", SMALLEST
    cfg.arch_options = {"depths": (1, 1, 1), "width_mult": 0.25}
    cfg.batch_size, cfg.epochs, cfg.lr, cfg.log_every_steps = 32, 2, 0.05, 20
    result = trainer.train_and_evaluate(cfg, tmp_path)
    assert result.eval_accuracy > 0.5
