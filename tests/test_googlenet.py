"""GoogLeNet: exact parameter counts of the paper's and torchvision's builds (with and without the
auxiliary classifiers), the Inception module, the auxiliary-classifier contract, smallest inputs,
torchvision parity and a short training run."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn.weights import convert
from jaxcnn.layers.pooling import flatten_nchw
from jaxcnn.models.googlenet import TABLE1, InceptionAux, InceptionModule, InceptionSpec

# Rows googlenet_paper_aux, googlenet_paper, googlenet_tv_aux, googlenet_tv of
# ../shared/reference/reference_numbers.json (paper-faithful build; torchvision.models.googlenet).
REFERENCE_PARAMS = {
    ("googlenet", True): 13378280,
    ("googlenet", False): 6998552,
    ("googlenet_tv", True): 13004888,
    ("googlenet_tv", False): 6624904,
}
SMALLEST = {"googlenet": 31, "googlenet_tv": 15}


def _shapes(model, size, channels=3, train=False, method=None):
    """Variables and outputs by shape only (no compilation)."""
    x = jnp.zeros((2, size, size, channels))

    def run():
        variables = model.init(jax.random.key(0), x, train=False)
        out = model.apply(
            variables,
            x,
            train=train,
            method=method,
            mutable=["batch_stats"] if train else False,
            rngs={"dropout": jax.random.key(1)},
        )
        return variables, out[0] if train else out

    return jax.eval_shape(run)


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name, aux", list(REFERENCE_PARAMS))
def test_parameter_counts(name, aux):
    model = jaxcnn.create_model(name, aux_logits=aux)
    variables, _ = _shapes(model, SMALLEST[name])
    assert _count(variables["params"]) == REFERENCE_PARAMS[(name, aux)]
    assert ("aux1" in variables["params"]) == aux
    info = jaxcnn.get_model_info(name)
    assert info.params == REFERENCE_PARAMS[(name, True)]
    assert info.min_image_size == SMALLEST[name] and info.resolution == 224


def test_table1_module_widths_chain():
    """Each Inception module's concatenated output is the next one's input (Table 1)."""
    outs = [spec.out_channels for stage in TABLE1 for spec in stage]
    assert outs == [256, 480, 512, 512, 512, 528, 832, 832, 1024]


def test_inception_module_of_the_lecture():
    """The bottleneck module on 28x28x256 (1x1 128, 3x3 192 after a 64 reduction, 5x5 96 after a
    64 reduction, pool projection 64): depth 480 and 346,112 convolution weights
    (reference_numbers.md, "naive vs bottleneck Inception module")."""
    module = InceptionModule(InceptionSpec(128, 64, 192, 64, 96, 64))
    x = jnp.zeros((1, 28, 28, 256))
    variables, y = jax.eval_shape(
        lambda: module.init_with_output(jax.random.key(0), x, train=False)[::-1]
    )
    assert y.shape == (1, 28, 28, 480)
    kernels = [v for p, v in jax.tree_util.tree_leaves_with_path(variables) if "kernel" in str(p)]
    assert sum(int(np.prod(k.shape)) for k in kernels) == 346112
    assert variables["params"]["conv5x5"]["conv"]["kernel"].shape == (5, 5, 64, 96)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_tv"])
def test_smallest_input_taps_and_any_channel_count(name):
    size = SMALLEST[name]
    model = jaxcnn.create_model(name, num_classes=7)
    _, taps = _shapes(model, size, channels=1, method=model.features)
    assert taps["logits"].shape == taps["aux1"].shape == taps["aux2"].shape == (2, 7)
    assert taps["pre_logits"].shape == (2, 1024)
    assert taps["stem"].shape[-1] == 192 and taps["inception5"].shape[1:] == (1, 1, 1024)
    _, taps = _shapes(model, 224, channels=5, method=model.features)
    assert taps["stem"].shape == (2, 28, 28, 192)
    assert taps["inception3"].shape == (2, 28, 28, 480)
    assert taps["inception4"].shape == (2, 14, 14, 832)
    assert taps["inception5"].shape == (2, 7, 7, 1024)
    for train in (False, True):
        with pytest.raises(ValueError, match="too small"):
            _shapes(model, size - 1, train=train)


def test_aux_contract():
    """train=True: (logits, (aux1, aux2)); train=False: logits; init(train=False) builds the heads;
    aux_logits=False: no heads, logits in both modes."""
    model = jaxcnn.create_model("googlenet", num_classes=10, width_mult=0.125)
    assert model.variant.aux_weight == 0.3
    variables, (logits, aux) = _shapes(model, 32, train=True)
    assert {"aux1", "aux2"} <= set(variables["params"])
    assert logits.shape == (2, 10) and [a.shape for a in aux] == [(2, 10), (2, 10)]
    _, logits = _shapes(model, 32, train=False)
    assert logits.shape == (2, 10)
    plain = jaxcnn.create_model("googlenet", num_classes=10, width_mult=0.125, aux_logits=False)
    variables, logits = _shapes(plain, 32, train=True)
    assert logits.shape == (2, 10) and not {"aux1", "aux2"} & set(variables["params"])


def test_paper_aux_head_pools_5x5_stride_3():
    """At 224 px (a 14x14 map) the paper's head pools 5x5/3 to 4x4, then 1x1 conv + ReLU, FC + ReLU
    and the classifier; torchvision's adaptive 4x4 pool gives other windows."""
    variant = dataclasses.replace(
        jaxcnn.get_model_info("googlenet").variant, aux_channels=8, aux_hidden=16
    )
    head = InceptionAux(variant, num_classes=5)
    x = jax.random.normal(jax.random.key(0), (2, 14, 14, 12))
    template = jax.eval_shape(lambda: head.init(jax.random.key(1), x, train=False))
    # numpy weights: a (jitted or eager) init compiles its random draws for seconds on CPU
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda t: rng.standard_normal(t.shape).astype(np.float32), template)
    p = variables["params"]
    pooled = nn.avg_pool(x, (5, 5), (3, 3))
    y = jax.nn.relu(pooled @ p["conv"]["conv"]["kernel"][0, 0] + p["conv"]["conv"]["bias"])
    y = jax.nn.relu(flatten_nchw(y) @ p["fc"]["kernel"] + p["fc"]["bias"])
    want = y @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(head.apply(variables, x, train=False), want, rtol=1e-5, atol=1e-6)
    adaptive = InceptionAux(dataclasses.replace(variant, aux_pool="adaptive"), num_classes=5)
    assert not np.allclose(adaptive.apply(variables, x, train=False), want, atol=1e-4)


torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def _randomize(tv_model, seed: int = 0) -> None:
    """Random BN affine and running statistics, so eval mode exercises every converted tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in tv_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _rel_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def _torchvision_googlenet():
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    _randomize(tv)
    return tv.eval()


def test_eval_parity_with_torchvision():
    """Logits and both auxiliary heads at 15 px (the smallest input of both), batch 2, eval mode;
    torchvision refuses 14 px as we do. transform_input=False on both sides."""
    tv = _torchvision_googlenet()
    assert not tv.transform_input
    size = SMALLEST["googlenet_tv"]
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    seen = {}
    hooks = [
        getattr(tv, f"inception{m}").register_forward_hook(
            lambda mod, inp, out, m=m: seen.__setitem__(m, out)
        )
        for m in ("4a", "4d")
    ]
    with torch.no_grad():
        want = tv(torch.from_numpy(x)).numpy()
        want_aux = [tv.aux1(seen["4a"]).numpy(), tv.aux2(seen["4d"]).numpy()]
        with pytest.raises(RuntimeError):
            tv(torch.zeros(1, 3, size - 1, size - 1))
    for h in hooks:
        h.remove()
    model = jaxcnn.create_model("googlenet_tv")
    template, _ = _shapes(model, size)
    variables = convert.from_torch("googlenet_tv", tv.state_dict(), template)
    taps = jax.jit(lambda v, x: model.apply(v, x, train=False, method=model.features))(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1))
    )
    assert _rel_err(taps["logits"], want) < 1e-5
    assert _rel_err(taps["aux1"], want_aux[0]) < 1e-5
    assert _rel_err(taps["aux2"], want_aux[1]) < 1e-5
    back = convert.to_torch("googlenet_tv", variables)
    sd = {k: v for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(back) == set(sd)


def test_missing_tensor_is_named_and_paper_build_has_no_counterpart():
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    model = jaxcnn.create_model("googlenet_tv")
    template, _ = _shapes(model, 32)
    sd = tv.state_dict()
    del sd["inception4e.branch3.1.bn.running_var"]
    with pytest.raises(
        convert.WeightMismatchError, match=r"inception4e\.branch3\.1\.bn\.running_var"
    ):
        convert.from_torch("googlenet_tv", sd, template)
    # Without the auxiliary heads the torchvision state dict has tensors too many.
    plain, _ = _shapes(jaxcnn.create_model("googlenet_tv", aux_logits=False), 32)
    with pytest.raises(convert.WeightMismatchError, match=r"'aux1\."):
        convert.from_torch("googlenet_tv", tv.state_dict(), plain)
    with pytest.raises(NotImplementedError, match="googlenet has no torchvision"):
        convert.torch_name("googlenet", ("params", "conv1", "conv", "kernel"))


@pytest.mark.slow
def test_digits_learns_with_auxiliary_losses(tmp_path):
    """torchvision's layout at width 1/4 with two Inception modules, (4a) and (4b), each feeding
    an auxiliary head (loss weight 0.3), on 32 px digits (8x8 upscaled), two epochs: far above
    chance. Most of its time is XLA compilation, which grows with the number of layers."""
    from jaxcnn.training import loop as trainer  # noqa: PLC0415 (TensorFlow after torch segfaults: import late)
    from jaxcnn.config import get_config  # noqa: PLC0415

    cfg = get_config()
    cfg.arch, cfg.dataset, cfg.batch_size, cfg.epochs = "googlenet_tv", "digits", 32, 2
    cfg.arch_options = {
        "width_mult": 0.25,
        "stages": ((), TABLE1[1][:2], ()),
        "aux_after": ("4a", "4b"),
    }
    cfg.image_size, cfg.log_every_steps, cfg.lr = 32, 20, 0.05
    result = trainer.train_and_evaluate(cfg, tmp_path)
    assert result.eval_accuracy > 0.8
