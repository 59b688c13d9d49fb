"""Weight conversion and parity with torchvision: same random weights, same input, same logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import convert

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
