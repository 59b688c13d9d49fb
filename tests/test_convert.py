"""Weight conversion and parity with torchvision: same random weights, same input, same logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn.weights import convert

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def _randomize(tv_model: "torch.nn.Module", seed: int = 0) -> None:
    """Random BN affine and running statistics, so eval mode exercises every converted tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in tv_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _convert(name: str, tv_model, size: int):
    model = jaxcnn.create_model(name)
    template = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
    )
    return model, convert.from_torch(name, tv_model.state_dict(), template)


def _rel_err(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d"])
def test_eval_parity_with_torchvision(name):
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None).eval()
    _randomize(tv)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = tv(torch.from_numpy(x)).numpy()
    model, variables = _convert(name, tv, 64)
    got = np.asarray(model.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False))
    assert _rel_err(got, expected) < 1e-5


@pytest.mark.parametrize(
    "name, size",
    [
        ("alexnet", 63),
        ("vgg11_bn", 32),
        ("vgg13", 40),
        ("densenet121", 64),
        ("mobilenet_v2", 64),
        ("shufflenet_v2_x0_5", 64),
    ],
)
def test_eval_parity_other_families(name, size):
    """At small sizes torchvision's adaptive average pool repeats pixels (1x1 -> 7x7 for VGG at
    32 px, 1x1 -> 6x6 for AlexNet at 63 px, 1x1 for VGG-13 at 40): ours must do the same, and the
    first fully connected layer must see PyTorch's (C, H, W) flattening order."""
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None).eval()
    _randomize(tv)
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = tv(torch.from_numpy(x)).numpy()
    model, variables = _convert(name, tv, size)
    got = np.asarray(model.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False))
    assert _rel_err(got, expected) < 1e-5


def test_adaptive_pool_and_lrn_match_pytorch():
    from jaxcnn.layers.lrn import LocalResponseNorm
    from jaxcnn.layers.pooling import adaptive_avg_pool

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


def test_no_counterpart_is_refused():
    with pytest.raises(NotImplementedError, match="alexnet_2012 has no torchvision"):
        convert.torch_name("alexnet_2012", ("params", "conv1", "kernel"))


def test_train_mode_parity_with_torchvision():
    """Train mode normalises with the batch statistics and updates the running ones like PyTorch."""
    torch.manual_seed(1)
    tv = torchvision.models.resnet18(weights=None).train()
    _randomize(tv, seed=1)
    x = np.random.default_rng(1).standard_normal((4, 3, 64, 64)).astype(np.float32)
    model, variables = _convert("resnet18", tv, 64)
    expected = tv(torch.from_numpy(x)).detach().numpy()
    got, updates = model.apply(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=True, mutable=["batch_stats"]
    )
    assert _rel_err(np.asarray(got), expected) < 1e-5
    # Running means follow PyTorch's momentum 0.1. (Running variances differ by design: PyTorch
    # stores the unbiased batch variance, Flax the biased one.)
    ours = np.asarray(updates["batch_stats"]["stage1_block1"]["conv1"]["bn"]["mean"])
    np.testing.assert_allclose(ours, tv.layer1[0].bn1.running_mean.numpy(), rtol=1e-4, atol=1e-5)


def test_round_trip_and_files(tmp_path):
    from safetensors.torch import save_file

    tv = torchvision.models.resnet18(weights=None)
    sd = {k: v for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(sd, str(tmp_path / "r18.safetensors"))
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    from_st = convert.load_state_dict(tmp_path / "r18.safetensors")
    from_pth = convert.load_state_dict(tmp_path / "r18.pth")
    assert set(from_st) == set(sd)
    _, variables = _convert("resnet18", tv, 32)
    back = convert.to_torch("resnet18", variables)
    assert set(back) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v.numpy())
        np.testing.assert_array_equal(from_st[k], v.numpy())
        np.testing.assert_array_equal(from_pth[k], v.numpy())


def test_mismatch_names_first_bad_tensor():
    tv = torchvision.models.resnet18(weights=None)
    model = jaxcnn.create_model("resnet34")
    template = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    with pytest.raises(convert.WeightMismatchError, match=r"no tensor 'layer1\.2\."):
        convert.from_torch("resnet34", tv.state_dict(), template)
    sd = tv.state_dict()
    sd["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    r18 = jaxcnn.create_model("resnet18")
    template = jax.eval_shape(
        lambda: r18.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    with pytest.raises(convert.WeightMismatchError, match=r"'layer1\.0\.conv1\.weight' has shape"):
        convert.from_torch("resnet18", sd, template)
    sd = tv.state_dict()
    sd["extra.weight"] = torch.zeros(3)
    with pytest.raises(convert.WeightMismatchError, match="'extra.weight'"):
        convert.from_torch("resnet18", sd, template)


def test_pth_needs_no_pickled_code(tmp_path):
    """A .pth holding arbitrary objects is refused (weights_only=True)."""

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights"):
        convert.load_state_dict(tmp_path / "evil.pth")


@pytest.mark.parametrize("width", [0.5, 0.75, 1.4])
def test_mobilenet_v2_width_multiplier_matches_torchvision(width):
    """Channel rounding (make_divisible) as torchvision's: the same parameter count per width."""
    tv = torchvision.models.mobilenet_v2(weights=None, width_mult=width)
    want = sum(p.numel() for p in tv.parameters())
    model = jaxcnn.create_model("mobilenet_v2", width_mult=width)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"])) == want


def test_channel_shuffle_matches_torchvision():
    from torchvision.models.shufflenetv2 import channel_shuffle as tv_shuffle

    from jaxcnn.layers.shuffle import channel_shuffle

    x = np.random.default_rng(0).standard_normal((2, 3, 4, 12)).astype(np.float32)
    for g in (2, 3, 4):
        want = (
            tv_shuffle(torch.from_numpy(x.transpose(0, 3, 1, 2)), g).numpy().transpose(0, 2, 3, 1)
        )
        np.testing.assert_array_equal(channel_shuffle(jnp.asarray(x), g), want)


def test_resnet_v2_parity_with_timm():
    """Pre-activation ResNet-50 against timm's resnetv2_50 (eval mode, random BN statistics)."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    tm = timm.create_model("resnetv2_50", pretrained=False).eval()
    _randomize(tm)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x)).numpy()
    model, variables = _convert("resnetv2_50", tm, 64)
    got = np.asarray(model.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False))
    assert _rel_err(got, expected) < 1e-5
    # And back: the same keys and shapes as timm's (its classifier is a 1x1 conv).
    back = convert.to_torch("resnetv2_50", variables)
    sd = {k: v for k, v in tm.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert {k: tuple(v.shape) for k, v in back.items()} == {
        k: tuple(v.shape) for k, v in sd.items()
    }


@pytest.mark.parametrize("name", ["resnetv2_18", "resnetv2_34", "resnetv2_101", "resnetv2_152"])
def test_resnet_v2_counts_match_timm(name):
    timm = pytest.importorskip("timm")
    want = sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())
    assert jaxcnn.get_model_info(name).params == want
    model = jaxcnn.create_model(name)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"])) == want
