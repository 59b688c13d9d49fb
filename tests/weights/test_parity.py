"""Converted-weight parity: the PyTorch network (torchvision, timm or pytorchcv) with random weights
and random BatchNorm statistics, its state dict converted, the same input: the same eval-mode
logits; and back to PyTorch names, the same tensors.

ONE table, one row per (architecture, PyTorch builder, input size, tolerance); the parity checks
that need more than logits (auxiliary heads, train mode, layouts of every size) follow it.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import convert_torch, randomize_bn, rel_err, template, torch_state_dict

import jaxcnn
from jaxcnn.weights import convert

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


# ---------------------------------------------------------------- builders of the PyTorch side


def tv(name, **kw):
    """torchvision.models.<name>(weights=None, **kw), random BN statistics."""

    def build():
        torch.manual_seed(0)
        net = getattr(torchvision.models, name)(weights=None, **kw).eval()
        randomize_bn(net)
        return net

    return build


def tv_biases(name):
    """As `tv`, with random conv / linear biases too (EfficientNet's SE biases start at 0)."""

    def build():
        torch.manual_seed(0)
        net = getattr(torchvision.models, name)(weights=None).eval()
        randomize_bn(net, biases=True)
        return net

    return build


def timm_model(name, **kw):
    def build():
        timm = pytest.importorskip("timm")
        torch.manual_seed(0)
        net = timm.create_model(name, pretrained=False, **kw).eval()
        randomize_bn(net)
        return net

    return build


def timm_legacy_senet(name):
    """timm's legacy SENet with random weights, built without timm's (slow, for 100M parameters)
    init: He-normal convs as timm's (fan_out = out_channels * k * k), random biases, random BN
    affine parameters and running statistics."""

    def build():
        timm = pytest.importorskip("timm")
        with torch.device("meta"):
            net = timm.create_model(name)
        net = net.to_empty(device="cpu").eval()
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.Conv2d):
                    fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                    m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=g)
                    if m.bias is not None:
                        m.bias.uniform_(-0.5, 0.5, generator=g)
                elif isinstance(m, torch.nn.Linear):
                    m.weight.normal_(0.0, 0.05, generator=g)
                    m.bias.uniform_(-0.1, 0.1, generator=g)
        randomize_bn(net)
        return net

    return build


def pytorchcv_shufflenet(name):
    """pytorchcv's ShuffleNet with the variant's widths and global (not fixed 7x7) average pooling,
    so that it runs below 224 px (the same function at 224)."""

    def build():
        pcv = pytest.importorskip("pytorchcv.models.shufflenet")
        from jaxcnn.models import shufflenet_v1

        variant = shufflenet_v1.VARIANTS[name]
        stem, stages = variant.widths()
        torch.manual_seed(0)
        net = pcv.ShuffleNet(
            [[c] * r for c, r in zip(stages, variant.repeats, strict=True)], stem, variant.groups
        )
        net.features.final_pool = torch.nn.AdaptiveAvgPool2d(1)
        net.eval()
        randomize_bn(net)
        return net

    return build


def pytorchcv_to_cadene(key: str) -> str:
    """pytorchcv's NASNet names -> Cadene's (`pretrainedmodels.nasnetamobile`, the layout our
    converter reads; checked once to give Cadene's exact 1,318 keys). Cadene numbers stage s's
    cells from 6s, as in the Large network."""
    m = re.match(r"features\.stage(\d)\.unit(\d+)\.(.*)", key)
    if m:
        s, j = int(m[1]) - 1, int(m[2]) - 1
        cell = (
            f"cell_{j}"
            if s == 0
            else f"reduction_cell_{s - 1}"
            if j == 0
            else f"cell_{6 * s + j - 1}"
        )
        key = f"{cell}.{m[3]}"
    for a, b in [
        (r"^features\.init_block\.", "conv0."),
        (r"^features\.stem1_unit\.", "cell_stem_0."),
        (r"^features\.stem2_unit\.", "cell_stem_1."),
        (r"^output\.fc\.", "last_linear."),
        (r"\.conv1x1_prev\.", ".conv_prev_1x1."),
        (r"\.conv1x1\.", ".conv_1x1."),
        (r"\.path\.path(\d)\.", r".path_\1."),
        (r"\.path\.bn\.", ".final_path_bn."),
        (
            r"\.comb(\d)_(\w+)\.conv(\d)\.conv\.dw_conv\.",
            r".comb_iter_\1_\2.separable_\3.depthwise_conv2d.",
        ),
        (
            r"\.comb(\d)_(\w+)\.conv(\d)\.conv\.pw_conv\.",
            r".comb_iter_\1_\2.separable_\3.pointwise_conv2d.",
        ),
        (r"\.comb(\d)_(\w+)\.conv(\d)\.bn\.", r".comb_iter_\1_\2.bn_sep_\3."),
    ]:
        key = re.sub(a, b, key)
    return key


class _CadeneNames(torch.nn.Module):
    """A PyTorch network whose state dict is given in other (Cadene's) names."""

    def __init__(self, net, rename):
        super().__init__()
        self.net, self.rename = net, rename

    def forward(self, x):
        return self.net(x)

    def state_dict(self, *args, **kw):
        return {self.rename(k): v for k, v in self.net.state_dict(*args, **kw).items()}


def pytorchcv_nasnet_mobile():
    """pytorchcv's NASNet-A 4@1056, its state dict in Cadene's names. pytorchcv pools with a fixed
    7x7 window (224 px only); global pooling is the same there."""
    pcv = pytest.importorskip("pytorchcv.models.nasnet")
    torch.manual_seed(0)
    net = pcv.nasnet_4a1056().eval()
    randomize_bn(net)
    net.features.final_pool = torch.nn.AdaptiveAvgPool2d(1)
    return _CadeneNames(net, pytorchcv_to_cadene)


# ---------------------------------------------------------------- the table


def row(arch, build, size, tol=1e-5, *, batch=2, options=None, run="jit", id=None, marks=()):
    """arch: ours; build: () -> the PyTorch network in eval mode; size: input side; tol: max
    relative error of the logits; run: "eager" (op by op), "jit" or "jit_o0" (compiled without
    XLA's backend optimisation: for the huge NASNet graphs that run once)."""
    return pytest.param(
        arch, build, size, tol, batch, options or {}, run, id=id or f"{arch}-{size}", marks=marks
    )


PARITY = [
    # torchvision ResNets.
    row("resnet50", tv("resnet50"), 64, run="eager"),
    row("resnext50_32x4d", tv("resnext50_32x4d"), 64, run="eager"),
    # At small sizes torchvision's adaptive average pool repeats pixels (1x1 -> 6x6 for AlexNet at
    # 63 px, 1x1 -> 7x7 for VGG at 32 px, 1x1 for VGG-13 at 40): ours must do the same, and the
    # first fully connected layer must see PyTorch's (C, H, W) flattening order.
    row("alexnet", tv("alexnet"), 63, run="eager"),
    row("vgg11_bn", tv("vgg11_bn"), 32, run="eager"),
    row("vgg13", tv("vgg13"), 40, run="eager"),
    row("densenet121", tv("densenet121"), 64, run="eager"),
    row("mobilenet_v2", tv("mobilenet_v2"), 64, run="eager"),
    row("shufflenet_v2_x0_5", tv("shufflenet_v2_x0_5"), 64, run="eager"),
    # Pre-activation ResNet-50 against timm's resnetv2_50 (its classifier is a 1x1 conv).
    row("resnetv2_50", timm_model("resnetv2_50"), 64, run="eager"),
    # Inception-v3 without the auxiliary head against timm's (which has none); torchvision's, with
    # its head, in test_inception_v3_parity_with_torchvision below. 75 px is the smallest input.
    row("inception_v3", timm_model("inception_v3"), 75, options={"aux_logits": False}),
    # Inception-v4 and Inception-ResNet-v2 (timm; both fail at 74 px too).
    row("inception_v4", timm_model("inception_v4"), 75),
    row("inception_resnet_v2", timm_model("inception_resnet_v2"), 75),
    # timm's legacy SENets: 32 px is the smallest input; 37 px makes the ceil-mode max pool pad a
    # partial window. Applied op by op.
    row("se_resnet50", timm_legacy_senet("legacy_seresnet50"), 32, run="eager"),
    row("se_resnet50", timm_legacy_senet("legacy_seresnet50"), 37, run="eager"),
    row("se_resnext50_32x4d", timm_legacy_senet("legacy_seresnext50_32x4d"), 32, run="eager"),
    # SENet-154 (115 M parameters; three 3x3 stem convs, 3x3 projections): batch 1, op by op
    # (compiling the 154 layers on CPU takes longer than running them once).
    row(
        "senet154",
        timm_legacy_senet("legacy_senet154"),
        32,
        batch=1,
        run="eager",
        marks=pytest.mark.slow,
    ),
    # MobileNetV3 (torchvision) at 32 px, the smallest input (1x1 at the end).
    row("mobilenet_v3_large", tv("mobilenet_v3_large"), 32),
    row("mobilenet_v3_small", tv("mobilenet_v3_small"), 32),
    # MobileNet v1: timm's mobilenetv1_100 is ReLU6 by default; act_layer='relu' gives the paper's.
    row(
        "mobilenet_v1",
        timm_model("mobilenetv1_100", act_layer="relu"),
        32,
        options={"relu6": False},
        id="mobilenet_v1-relu",
    ),
    row(
        "mobilenet_v1",
        timm_model("mobilenetv1_100", act_layer="relu6"),
        32,
        options={"relu6": True},
        id="mobilenet_v1-relu6",
    ),
    # ShuffleNet v1 against pytorchcv's ShuffleNet class at 32 px (1x1 at the end).
    row("shufflenet_v1_g3", pytorchcv_shufflenet("shufflenet_v1_g3"), 32),
    row("shufflenet_v1_g8", pytorchcv_shufflenet("shufflenet_v1_g8"), 32),
    row("shufflenet_v1_g3_x0_5", pytorchcv_shufflenet("shufflenet_v1_g3_x0_5"), 32),
    # EfficientNet (torchvision) at 32 px, the smallest input; B5 has TF BatchNorm eps.
    row("efficientnet_b0", tv_biases("efficientnet_b0"), 32),
    row("efficientnet_b5", tv_biases("efficientnet_b5"), 32),
    # NASNet-A Mobile against pytorchcv's (in Cadene's names): at 32 px (as at 224) its padding
    # equals TF's SAME: stem input odd, every later strided input even.
    row("nasnet_a_mobile", pytorchcv_nasnet_mobile, 32, run="jit_o0"),
    # timm's large nets at 32 px (their smallest input), batch 1: 15 px after conv0 (odd), then 8,
    # 4, 2, 1; timm's strided average pools count their padding, as ours. 25-45 s and 12-24 s here.
    row("nasnet_a_large", timm_model("nasnetalarge"), 32, batch=1, run="jit_o0"),
    row("pnasnet5large", timm_model("pnasnet5large"), 32, batch=1, run="jit_o0"),
]


def _forward(model, run):
    def apply(v, x):
        return model.apply(v, x, train=False)

    if run == "eager":
        return apply
    if run == "jit":  # one compiled graph is several times faster than op-by-op dispatch
        return jax.jit(apply)

    def compiled(v, x):
        # Compile time halved, run time +30% (measured on NASNet): right for graphs run once.
        lowered = jax.jit(apply).lower(v, x)
        return lowered.compile({"xla_backend_optimization_level": 0})(v, x)

    return compiled


@pytest.mark.parametrize("arch, build, size, tol, batch, options, run", PARITY)
def test_eval_parity(arch, build, size, tol, batch, options, run):
    net = build()
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    sd = torch_state_dict(net)
    model, variables = convert_torch(arch, sd, size, **options)
    got = _forward(model, run)(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
    assert rel_err(got, want) < tol
    # And back to PyTorch names: the same keys, the same tensors.
    back = convert.to_torch(arch, variables)
    assert set(back) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v.numpy(), err_msg=k)


# ---------------------------------------------------------------- parity beyond the logits


def test_googlenet_parity_with_torchvision_aux_heads():
    """Logits and both auxiliary heads at 15 px (the smallest input of both), batch 2, eval mode;
    torchvision refuses 14 px as we do. transform_input=False on both sides."""
    torch.manual_seed(0)
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    randomize_bn(net)
    net.eval()
    assert not net.transform_input
    size = 15
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    seen = {}
    hooks = [
        getattr(net, f"inception{m}").register_forward_hook(
            lambda mod, inp, out, m=m: seen.__setitem__(m, out)
        )
        for m in ("4a", "4d")
    ]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
        want_aux = [net.aux1(seen["4a"]).numpy(), net.aux2(seen["4d"]).numpy()]
        with pytest.raises(RuntimeError):
            net(torch.zeros(1, 3, size - 1, size - 1))
    for h in hooks:
        h.remove()
    sd = torch_state_dict(net)
    model, variables = convert_torch("googlenet_tv", sd, size)
    taps = jax.jit(lambda v, x: model.apply(v, x, train=False, method=model.features))(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1))
    )
    assert rel_err(taps["logits"], want) < 1e-5
    assert rel_err(taps["aux1"], want_aux[0]) < 1e-5
    assert rel_err(taps["aux2"], want_aux[1]) < 1e-5
    assert set(convert.to_torch("googlenet_tv", variables)) == set(sd)


def test_inception_v3_parity_with_torchvision():
    """Eval-mode logits at 75 px, batch 2, against torchvision's inception_v3(aux_logits=True) with
    its auxiliary head dropped, and that head (AuxLogits) separately on a 17x17 map (the smallest it
    runs on: 299 px). transform_input=False."""
    from jaxcnn.models.inception_v3 import InceptionAux

    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True).eval()
    randomize_bn(net)
    assert not net.transform_input
    size = 75
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
        with pytest.raises(RuntimeError):
            net(torch.zeros(1, 3, size - 1, size - 1))
    sd = torch_state_dict(net)
    _, full = convert_torch("inception_v3", sd, size)
    model = jaxcnn.create_model("inception_v3", aux_logits=False)
    no_aux = {c: {k: v for k, v in t.items() if k != "AuxLogits"} for c, t in full.items()}
    got = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        no_aux, jnp.asarray(x.transpose(0, 2, 3, 1))
    )
    assert rel_err(got, want) < 1e-5

    m = np.random.default_rng(1).standard_normal((2, 768, 17, 17)).astype(np.float32)
    with torch.no_grad():
        want_aux = net.AuxLogits(torch.from_numpy(m)).numpy()
    head = InceptionAux((128, 768), num_classes=1000)
    got_aux = head.apply(
        {c: t["AuxLogits"] for c, t in full.items()},
        jnp.asarray(m.transpose(0, 2, 3, 1)),
        train=False,
    )
    assert rel_err(got_aux, want_aux) < 1e-5
    assert set(convert.to_torch("inception_v3", full)) == set(sd)


def test_resnet18_train_mode_parity_with_torchvision():
    """Train mode normalises with the batch statistics and updates the running ones like PyTorch."""
    torch.manual_seed(1)
    net = torchvision.models.resnet18(weights=None).train()
    randomize_bn(net, seed=1)
    x = np.random.default_rng(1).standard_normal((4, 3, 64, 64)).astype(np.float32)
    model, variables = convert_torch("resnet18", net.state_dict(), 64)
    want = net(torch.from_numpy(x)).detach().numpy()
    got, updates = model.apply(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=True, mutable=["batch_stats"]
    )
    assert rel_err(got, want) < 1e-5
    # Running means follow PyTorch's momentum 0.1. (Running variances differ by design: PyTorch
    # stores the unbiased batch variance, Flax the biased one.)
    ours = np.asarray(updates["batch_stats"]["stage1_block1"]["conv1"]["bn"]["mean"])
    np.testing.assert_allclose(ours, net.layer1[0].bn1.running_mean.numpy(), rtol=1e-4, atol=1e-5)


def test_mobilenet_v3_train_mode_bn_momentum_matches_torchvision():
    """BatchNorm momentum 0.01 and epsilon 0.001: a train-mode step updates the running means as
    torchvision's does (dropout is switched off on both sides)."""
    torch.manual_seed(1)
    net = torchvision.models.mobilenet_v3_small(weights=None, dropout=0.0)
    randomize_bn(net, seed=1)
    net.train()
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    model, variables = convert_torch("mobilenet_v3_small", net.state_dict(), 32, dropout=0.0)
    want = net(torch.from_numpy(x)).detach().numpy()
    got, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1))
    )
    assert rel_err(got, want) < 1e-4
    for ours, theirs in [
        (updates["batch_stats"]["stem"]["bn"]["mean"], net.features[0][1].running_mean),
        (
            updates["batch_stats"]["block4"]["dw"]["bn"]["mean"],
            net.features[4].block[1][1].running_mean,
        ),
    ]:
        np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-4, atol=1e-5)


def test_efficientnet_torchvision_layout_of_all_eight():
    """torchvision's b0..b7 state dicts fit the converter; dropout, per-block stochastic-depth rates
    and BatchNorm eps / momentum equal torchvision's."""
    for name in (f"efficientnet_b{i}" for i in range(8)):
        net = getattr(torchvision.models, name)(weights=None)
        variant = jaxcnn.get_model_info(name).variant
        convert.from_torch(name, net.state_dict(), template(jaxcnn.create_model(name)))
        assert net.classifier[0].p == variant.dropout
        tv_rates = [blk.stochastic_depth.p for stage in net.features[1:-1] for blk in stage]
        np.testing.assert_allclose([b.drop_rate for b in variant.blocks()], tv_rates, rtol=1e-12)
        bns = {(m.eps, m.momentum) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
        assert bns == {(variant.bn_epsilon, variant.bn_momentum)}, name


@pytest.mark.parametrize(
    "name, timm_name",
    [
        ("se_resnet101", "legacy_seresnet101"),
        ("se_resnet152", "legacy_seresnet152"),
        ("se_resnext101_32x4d", "legacy_seresnext101_32x4d"),
    ],
)
def test_timm_senet_state_dict_converts_both_ways(name, timm_name):
    """Every timm tensor has a place of the same shape, and back: the same keys and shapes."""
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        net = timm.create_model(timm_name)
    want = {k: tuple(v.shape) for k, v in net.state_dict().items() if "num_batches" not in k}
    sd = {k: np.zeros(s, np.float32) for k, s in want.items()}
    variables = convert.from_torch(name, sd, template(jaxcnn.create_model(name)))
    back = convert.to_torch(name, variables)
    assert {k: tuple(v.shape) for k, v in back.items()} == want
