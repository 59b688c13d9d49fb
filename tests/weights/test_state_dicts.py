"""State dicts: .safetensors and .pth files, the round trip to PyTorch names, mismatch messages
(naming the first tensor that does not fit), the refusal of pickled code, networks without a
PyTorch counterpart."""

import re

import jax
import numpy as np
import pytest
from helpers import template, torch_state_dict

import jaxcnn
from jaxcnn.weights import convert

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def test_round_trip_and_files(tmp_path):
    from safetensors.torch import save_file

    net = torchvision.models.resnet18(weights=None)
    sd = torch_state_dict(net)
    save_file(sd, str(tmp_path / "r18.safetensors"))
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    from_st = convert.load_state_dict(tmp_path / "r18.safetensors")
    from_pth = convert.load_state_dict(tmp_path / "r18.pth")
    assert set(from_st) == set(sd)
    variables = convert.from_torch(
        "resnet18", net.state_dict(), template(jaxcnn.create_model("resnet18"))
    )
    back = convert.to_torch("resnet18", variables)
    assert set(back) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v.numpy())
        np.testing.assert_array_equal(from_st[k], v.numpy())
        np.testing.assert_array_equal(from_pth[k], v.numpy())


def test_mismatch_names_first_bad_tensor():
    sd = torchvision.models.resnet18(weights=None).state_dict()
    with pytest.raises(convert.WeightMismatchError, match=r"no tensor 'layer1\.2\."):
        convert.from_torch("resnet34", sd, template(jaxcnn.create_model("resnet34")))
    r18 = template(jaxcnn.create_model("resnet18"))
    bad = dict(sd)
    bad["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    with pytest.raises(convert.WeightMismatchError, match=r"'layer1\.0\.conv1\.weight' has shape"):
        convert.from_torch("resnet18", bad, r18)
    extra = dict(sd)
    extra["extra.weight"] = torch.zeros(3)
    with pytest.raises(convert.WeightMismatchError, match="'extra.weight'"):
        convert.from_torch("resnet18", extra, r18)


def _tv(name, **kw):
    return lambda: getattr(torchvision.models, name)(weights=None, **kw).state_dict()


def _timm(name):
    def build():
        timm = pytest.importorskip("timm")
        return timm.create_model(name, pretrained=False).state_dict()

    return build


def _timm_meta(name):
    """timm's state dict as zeros of its shapes (built on the meta device: no memory, no init)."""

    def build():
        timm = pytest.importorskip("timm")
        with torch.device("meta"):
            net = timm.create_model(name)
        return {k: np.zeros(tuple(v.shape), np.float32) for k, v in net.state_dict().items()}

    return build


def _pytorchcv_shufflenet(name):
    def build():
        pcv = pytest.importorskip("pytorchcv.models.shufflenet")
        from jaxcnn.models import shufflenet_v1

        v = shufflenet_v1.VARIANTS[name]
        stem, stages = v.widths()
        return pcv.ShuffleNet(
            [[c] * r for c, r in zip(stages, v.repeats, strict=True)], stem, v.groups
        ).state_dict()

    return build


# (arch, PyTorch state dict, the tensor taken out): the error names that tensor.
MISSING = [
    (
        "googlenet_tv",
        _tv("googlenet", aux_logits=True, init_weights=False),
        "inception4e.branch3.1.bn.running_var",
    ),
    (
        "inception_v3",
        _tv("inception_v3", aux_logits=True, init_weights=False),
        "Mixed_6c.branch7x7dbl_4.conv.weight",
    ),
    (
        "inception_v3",
        _tv("inception_v3", aux_logits=True, init_weights=False),
        "AuxLogits.fc.bias",
    ),
    ("inception_v4", _timm("inception_v4"), "features.21.branch2_3b.bn.running_var"),
    ("inception_resnet_v2", _timm("inception_resnet_v2"), "block8.conv2d.weight"),
    ("se_resnet50", _timm_meta("legacy_seresnet50"), "layer3.2.se_module.fc2.weight"),
    # Block 4's SE: [expand, dw, se, project].
    ("mobilenet_v3_small", _tv("mobilenet_v3_small"), "features.4.block.2.fc1.weight"),
    (
        "shufflenet_v1_g3_x0_5",
        _pytorchcv_shufflenet("shufflenet_v1_g3_x0_5"),
        "features.stage2.unit3.dw_conv2.weight",
    ),
    ("efficientnet_b0", _tv("efficientnet_b0"), "features.2.1.block.2.fc1.bias"),
]


@pytest.mark.parametrize(
    "name, state_dict, missing", MISSING, ids=[f"{n}-{m}" for n, _, m in MISSING]
)
def test_missing_tensor_is_named(name, state_dict, missing):
    sd = dict(state_dict())
    del sd[missing]
    size = 75 if name.startswith("inception") else 32
    with pytest.raises(convert.WeightMismatchError, match=re.escape(f"no tensor {missing!r}")):
        convert.from_torch(name, sd, template(jaxcnn.create_model(name), size))


def test_googlenet_without_aux_heads_has_tensors_too_many():
    sd = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    plain = template(jaxcnn.create_model("googlenet_tv", aux_logits=False))
    with pytest.raises(convert.WeightMismatchError, match=r"'aux1\."):
        convert.from_torch("googlenet_tv", sd.state_dict(), plain)


@pytest.mark.parametrize(
    "name, options, expected, missing",
    [
        (
            "nasnet_a_mobile",
            {},
            # NASNet keeps a factorized reduction on the cell; Cadene numbers stage s's cells
            # from 6s (our cell_4, the first of stage 2, is its cell_6).
            {"conv0.conv.weight", "cell_stem_1.path_2.conv.weight", "cell_6.final_path_bn.bias"},
            "reduction_cell_1.comb_iter_4_left.bn_sep_2.running_var",  # a statistic, not a weight
        ),
        (
            "pnasnet5large",
            {"num_cells": 3, "penultimate_filters": 20 * 8, "stem_filters": 16},
            {"conv_0.bn.weight", "cell_0.conv_prev_1x1.path_2.conv.weight", "last_linear.bias"},
            "cell_1.comb_iter_4_right.conv.weight",  # the strided identity of a reduction cell
        ),
    ],
)
def test_nasnet_state_dict_names_and_missing_tensor(name, options, expected, missing):
    """timm / Cadene names both ways; a state dict short of one tensor is refused, naming it."""
    shapes = template(jaxcnn.create_model(name, **options))
    variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    sd = convert.to_torch(name, variables)
    assert expected <= set(sd)
    back = convert.from_torch(name, sd, shapes)
    assert jax.tree.structure(back) == jax.tree.structure(shapes)
    assert missing in sd
    with pytest.raises(convert.WeightMismatchError, match=re.escape(f"no tensor {missing!r}")):
        convert.from_torch(name, {k: v for k, v in sd.items() if k != missing}, shapes)


def test_pth_needs_no_pickled_code(tmp_path):
    """A .pth holding arbitrary objects is refused (weights_only=True)."""

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights"):
        convert.load_state_dict(tmp_path / "evil.pth")


@pytest.mark.parametrize(
    "name, path, message",
    [
        ("alexnet_2012", ("params", "conv1", "kernel"), "alexnet_2012 has no torchvision"),
        # The paper's GoogLeNet (torchvision's is googlenet_tv).
        ("googlenet", ("params", "conv1", "conv", "kernel"), "googlenet has no torchvision"),
        ("wrn16_8", ("params", "stem_conv", "kernel"), "no torchvision/timm counterpart"),
    ],
)
def test_no_counterpart_is_refused(name, path, message):
    with pytest.raises(NotImplementedError, match=message):
        convert.torch_name(name, path)
