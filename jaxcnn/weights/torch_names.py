"""The PyTorch module name of each jaxcnn module path, one rule per family.

A rule maps a jaxcnn module path (without the collection and the leaf name), e.g.
`("stage1_block1", "conv1", "conv")`, to the torchvision / timm / pytorchcv module that holds the
same tensors (`layer1.0.conv1`); `jaxcnn.weights.convert` adds the tensor name (`weight`,
`running_mean`, ...) and the layout change. The rules are keyed by the registry's `family` and
raise `KeyError` for a path the PyTorch model does not have.
"""

import re
from collections.abc import Callable
from typing import Any


def _resnet_module(info: Any, path: tuple[str, ...]) -> str:
    """torchvision / timm ResNet module name of a jaxcnn module path."""
    first = path[0]
    if first == "stem":  # stem/{conv,bn}
        return {"conv": "conv1", "bn": "bn1"}[path[1]]
    if first == "head":
        return "fc"
    m = re.fullmatch(r"stage(\d+)_block(\d+)", first)
    if not m:
        raise KeyError(path)
    prefix = f"layer{m[1]}.{int(m[2]) - 1}"
    unit, part = path[1], path[2]  # e.g. conv2/bn, downsample/conv
    if unit == "downsample":
        return f"{prefix}.downsample.{0 if part == 'conv' else 1}"
    i = unit[len("conv") :]
    return f"{prefix}.{'conv' if part == 'conv' else 'bn'}{i}"


def _alexnet_module(info: Any, path: tuple[str, ...]) -> str:
    """torchvision AlexNet: `features` and `classifier` are nn.Sequential; these are their indices."""
    if info.name != "alexnet":
        raise NotImplementedError(
            f"{info.name} has no torchvision/timm counterpart to convert from"
        )
    convs = {"conv1": 0, "conv2": 3, "conv3": 6, "conv4": 8, "conv5": 10}
    fcs = {"fc6": 1, "fc7": 4, "head": 6}
    return f"features.{convs[path[0]]}" if path[0] in convs else f"classifier.{fcs[path[0]]}"


def _vgg_module(info: Any, path: tuple[str, ...]) -> str:
    """torchvision VGG: index of each layer in `features` (conv, [bn], relu per conv; a pool per
    stage) and in `classifier` (fc6, relu, dropout, fc7, relu, dropout, head)."""
    if path[0] in ("fc6", "fc7", "head"):
        return f"classifier.{ {'fc6': 0, 'fc7': 3, 'head': 6}[path[0]] }"
    v, index = info.variant, 0
    for s, widths in enumerate(v.stages, start=1):
        for c in range(1, len(widths) + 1):
            if path[0] == f"stage{s}_conv{c}":
                return f"features.{index + (path[1] == 'bn')}"
            index += 3 if v.batch_norm else 2
        index += 1  # max pool
    raise KeyError(path)


def _densenet_module(info: Any, path: tuple[str, ...]) -> str:
    """torchvision DenseNet: everything but the classifier lives in `features`."""
    first = path[0]
    fixed = {
        "stem_conv": "features.conv0",
        "stem_norm": "features.norm0",
        "final_norm": "features.norm5",
        "head": "classifier",
    }
    if first in fixed:
        return fixed[first]
    m = re.fullmatch(r"block(\d+)_layer(\d+)", first)
    if m:
        return f"features.denseblock{m[1]}.denselayer{m[2]}.{path[1]}"
    m = re.fullmatch(r"transition(\d+)", first)
    if m:
        return f"features.transition{m[1]}.{path[1]}"
    raise KeyError(path)


def _mobilenet_v1_timm_module(info: Any, path: tuple[str, ...]) -> str:
    """timm MobileNet v1 (`mobilenetv1_100`): `conv_stem`, `bn1`, `blocks.{stage}.{block}.{conv_dw,
    bn1,conv_pw,bn2}`, `classifier`; a timm stage starts at the first block and at each stride 2."""
    first, part = path[0], path[-1]
    if first == "stem":
        return "conv_stem" if part == "conv" else "bn1"
    if first == "head":
        return "classifier"
    i = int(first[len("block") :])
    stage, index = -1, 0
    for j, (_, stride) in enumerate(info.variant.blocks[:i], start=1):
        stage, index = (stage + 1, 0) if (j == 1 or stride == 2) else (stage, index + 1)
    unit = {("dw", "conv"): "conv_dw", ("dw", "bn"): "bn1", ("pw", "conv"): "conv_pw"}
    return f"blocks.{stage}.{index}.{unit.get((path[1], part), 'bn2')}"


def _mobilenet_module(info: Any, path: tuple[str, ...]) -> str:
    """MobileNet v1: timm's layout (`_mobilenet_v1_timm_module`). torchvision MobileNetV2:
    `features.0` stem, `features.1..17` blocks, `features.18` final."""
    if info.name.startswith("mobilenet_v1"):
        return _mobilenet_v1_timm_module(info, path)
    first, part = path[0], path[-1]  # part: "conv" or "bn"
    blocks = info.variant.blocks()
    fixed = {"stem": "features.0", "final": f"features.{len(blocks) + 1}"}
    if first in fixed:
        return f"{fixed[first]}.{0 if part == 'conv' else 1}"
    if first == "head":
        return "classifier.1"
    i = int(first[len("block") :])
    units = (["expand"] if blocks[i - 1][0] != 1 else []) + ["dw"]
    if path[1] in units:  # Conv2dNormActivation: .0 conv, .1 bn
        return f"features.{i}.conv.{units.index(path[1])}.{0 if part == 'conv' else 1}"
    k = len(units)  # the linear projection: a bare conv, then a bare BN
    return f"features.{i}.conv.{k if part == 'conv' else k + 1}"


def _shufflenet_module(info: Any, path: tuple[str, ...]) -> str:
    """torchvision ShuffleNetV2: conv1, stage{2,3,4}.{i}.branch{1,2}.{index}, conv5, fc."""
    first, part = path[0], path[-1]
    bn = part == "bn"
    fixed = {"stem": "conv1", "final": "conv5"}
    if first in fixed:
        return f"{fixed[first]}.{int(bn)}"
    if first == "head":
        return "fc"
    m = re.fullmatch(r"stage(\d+)_unit(\d+)", first)
    if not m:
        raise KeyError(path)
    # Sequential indices: branch1 = dw conv, bn, pw conv, bn, relu; branch2 = pw conv, bn, relu,
    # dw conv, bn, pw conv, bn, relu.
    index = {
        "branch1_dw": (1, 0),
        "branch1_pw": (1, 2),
        "branch2_pw1": (2, 0),
        "branch2_dw": (2, 3),
        "branch2_pw2": (2, 5),
    }[path[1]]
    return f"stage{m[1]}.{int(m[2]) - 1}.branch{index[0]}.{index[1] + bn}"


def _resnet_v2_module(info: Any, path: tuple[str, ...]) -> str:
    """timm ResNetV2 (`resnetv2_*`): stem.conv, stages.{s}.blocks.{b}.*, norm, head.fc."""
    first = path[0]
    fixed = {
        "stem_conv": "stem.conv",
        "stem_norm": "stem.norm",
        "final_norm": "norm",
        "head": "head.fc",
    }
    if first in fixed:
        return fixed[first]
    m = re.fullmatch(r"stage(\d+)_block(\d+)", first)
    if not m:
        raise KeyError(path)
    unit = "downsample.conv" if path[1] == "downsample" else path[1]
    return f"stages.{int(m[1]) - 1}.blocks.{int(m[2]) - 1}.{unit}"


def _efficientnet_module(info: Any, path: tuple[str, ...]) -> str:
    """torchvision EfficientNet: `features.0` stem, `features.{s}.{b}.block.{i}` the MBConv units
    ([expand], dw, se, project), `features.{stages + 1}` final conv, `classifier.1` head."""
    first, part = path[0], path[-1]
    n_stages = len(info.variant.stages)
    fixed = {"stem": "features.0", "final": f"features.{n_stages + 1}"}
    if first in fixed:  # Conv2dNormActivation: .0 conv, .1 bn
        return f"{fixed[first]}.{0 if part == 'conv' else 1}"
    if first == "head":
        return "classifier.1"
    m = re.fullmatch(r"stage(\d+)_block(\d+)", first)
    if not m:
        raise KeyError(path)
    spec = next(b for b in info.variant.blocks() if (b.stage, b.index) == (int(m[1]), int(m[2])))
    units = (["expand"] if spec.expanded != spec.in_channels else []) + ["dw", "se", "project"]
    prefix = f"features.{m[1]}.{int(m[2]) - 1}.block.{units.index(path[1])}"
    if path[1] == "se":  # se/fc1, se/fc2: torchvision's SqueezeExcitation has the same names
        return f"{prefix}.{part}"
    return f"{prefix}.{0 if part == 'conv' else 1}"


def _senet_module(info: Any, path: tuple[str, ...]) -> str:
    """timm legacy SENet (`legacy_seresnet*`, `legacy_seresnext*`, `legacy_senet154`):
    `layer0.{conv,bn}{i}`, `layer{s}.{b}.{conv,bn}{i}`, `.downsample.{0,1}`, `.se_module.fc{1,2}`,
    `last_linear`."""
    first, part = path[0], path[-1]
    if first == "head":
        return "last_linear"
    m = re.fullmatch(r"stem_conv(\d+)", first)
    if m:
        return f"layer0.{part}{m[1]}"
    m = re.fullmatch(r"stage(\d+)_block(\d+)", first)
    if not m:
        raise KeyError(path)
    prefix = f"layer{m[1]}.{int(m[2]) - 1}"
    unit = path[1]
    if unit == "se":
        return f"{prefix}.se_module.{part}"
    if unit == "downsample":
        return f"{prefix}.downsample.{0 if part == 'conv' else 1}"
    return f"{prefix}.{part}{unit[len('conv') :]}"


def _mobilenet_v3_module(info: Any, path: tuple[str, ...]) -> str:
    """torchvision MobileNetV3: `features.0` stem, `features.{i}.block.{k}` the bneck units
    ([expand], dw, [se], project), `features.{n + 1}` final conv, `classifier.{0,3}` last / head."""
    first, part = path[0], path[-1]
    blocks = info.variant.blocks
    fixed = {"stem": "features.0", "final": f"features.{len(blocks) + 1}"}
    if first in fixed:  # Conv2dNormActivation: .0 conv, .1 bn
        return f"{fixed[first]}.{0 if part == 'conv' else 1}"
    if first in ("last", "head"):
        return f"classifier.{0 if first == 'last' else 3}"
    i = int(first[len("block") :])
    row = blocks[i - 1]
    # The expansion conv exists when the width changes; only the first Large row (16 -> 16) lacks
    # one, at every width multiplier (both widths round alike).
    in_channels = info.variant.stem if i == 1 else blocks[i - 2].out
    units = (["expand"] if row.expanded != in_channels else []) + ["dw"]
    units += (["se"] if row.se else []) + ["project"]
    prefix = f"features.{i}.block.{units.index(path[1])}"
    if path[1] == "se":  # se/fc1, se/fc2: torchvision's SqueezeExcitation has the same names
        return f"{prefix}.{part}"
    return f"{prefix}.{0 if part == 'conv' else 1}"


def _nasnet_module(info: Any, path: tuple[str, ...]) -> str:
    """timm NASNet-A / PNASNet-5 (Cadene's layout): cells keep timm's names. NASNet keeps a cell's
    factorized reduction (`path_1`, `path_2`, `final_path_bn`) on the cell itself, PNASNet inside
    `conv_prev_1x1`; Cadene's NASNet-A Mobile numbers stage s's cells from 6s, as the Large does."""
    first, rest = path[0], list(path[1:])
    if first == "conv0":
        return f"{'conv_0' if info.family == 'pnasnet' else 'conv0'}.{rest[0]}"
    if first == "head":
        return "last_linear"
    m = re.fullmatch(r"cell_(\d+)", first)
    if info.family == "nasnet" and m:
        n = info.variant.cells_per_stage
        if n > 6:
            raise NotImplementedError(
                f"{info.name}: no PyTorch NASNet has more than 6 cells a stage"
            )
        first = f"cell_{6 * (int(m[1]) // n) + int(m[1]) % n}"
    if rest[0] == "conv_prev_1x1" and rest[1] in ("path_1", "path_2", "final_path_bn"):
        inner = [rest[1]] if rest[1] == "final_path_bn" else [rest[1], "conv"]
        rest = inner if info.family == "nasnet" else ["conv_prev_1x1", *inner]
    return ".".join([first, *rest])


def _shufflenet_v1_module(info: Any, path: tuple[str, ...]) -> str:
    """pytorchcv ShuffleNet (`shufflenet_g{g}_w{...}`): `features.init_block.{conv,bn}`,
    `features.stage{s - 1}.unit{u}.{compress_conv1,compress_bn1,dw_conv2,dw_bn2,expand_conv3,
    expand_bn3}`, `output`."""
    first, part = path[0], path[-1]
    if first == "stem":
        return f"features.init_block.{part}"
    if first == "head":
        return "output"
    m = re.fullmatch(r"stage(\d+)_unit(\d+)", first)
    if not m:
        raise KeyError(path)
    name, index = {"pw1": ("compress", 1), "dw": ("dw", 2), "pw2": ("expand", 3)}[path[1]]
    return f"features.stage{int(m[1]) - 1}.unit{m[2]}.{name}_{part}{index}"


def _inception_unit(block: str, unit: str) -> str:
    """timm name of a unit inside an Inception block (see `_inception_v4_module`)."""
    if unit == "branch3":  # the conv after the average pool of nn.Sequential(pool, conv)
        return "branch3.1"
    if unit == "project":  # the residual blocks' linear 1x1 conv
        return "conv2d"
    if block.startswith("inception_c"):  # timm's InceptionC: attributes, not Sequential indices
        return unit
    return re.sub(r"^branch(\d)_(\d+)$", r"branch\1.\2", unit)  # branch1_2 -> branch1.2


def _inception_v4_module(info: Any, path: tuple[str, ...]) -> str:
    """timm InceptionV4: the trunk is the nn.Sequential `features` (stem convs, Mixed_3a/4a/5a, then
    the A, Reduction-A, B, Reduction-B, C blocks in order); the classifier is `last_linear`."""
    first = path[0]
    if first == "head":
        return "last_linear"
    n_a, n_b, n_c = info.variant.depths
    order = [
        *(f"stem_conv{i}" for i in (1, 2, 3)),
        "mixed_3a",
        "mixed_4a",
        "mixed_5a",
        *(f"inception_a{i}" for i in range(1, n_a + 1)),
        "reduction_a",
        *(f"inception_b{i}" for i in range(1, n_b + 1)),
        "reduction_b",
        *(f"inception_c{i}" for i in range(1, n_c + 1)),
    ]
    if first not in order:
        raise KeyError(path)
    return ".".join((f"features.{order.index(first)}", _inception_unit(first, path[1]), *path[2:]))


def _inception_resnet_v2_module(info: Any, path: tuple[str, ...]) -> str:
    """timm InceptionResnetV2: TF-slim names (conv2d_1a ..., mixed_5b, repeat.{i} (A blocks),
    mixed_6a, repeat_1.{i} (B), mixed_7a, repeat_2.{i} (C) and the last C block `block8`)."""
    first = path[0]
    fixed = {
        "stem_conv1": "conv2d_1a",
        "stem_conv2": "conv2d_2a",
        "stem_conv3": "conv2d_2b",
        "stem_conv4": "conv2d_3b",
        "stem_conv5": "conv2d_4a",
        "mixed_5b": "mixed_5b",
        "reduction_a": "mixed_6a",
        "reduction_b": "mixed_7a",
        "final_conv": "conv2d_7b",
        "head": "classif",
    }
    m = re.fullmatch(r"inception_resnet_([abc])(\d+)", first)
    if first in fixed:
        module = fixed[first]
    elif m and m[1] == "c" and int(m[2]) == info.variant.depths[2]:
        module = "block8"  # TF-slim's extra linear block after repeat_2
    elif m:
        module = f"{ {'a': 'repeat', 'b': 'repeat_1', 'c': 'repeat_2'}[m[1]] }.{int(m[2]) - 1}"
    else:
        raise KeyError(path)
    return ".".join((module, *(_inception_unit(first, p) for p in path[1:2]), *path[2:]))


# family -> rule giving the PyTorch module name of a jaxcnn module path. Families without a rule
# (LeNet-5, the CIFAR ResNets, DenseNets and Wide ResNets) have no torchvision/timm counterpart to
# convert from.
def _googlenet_module(info: Any, path: tuple[str, ...]) -> str:
    """torchvision GoogLeNet: conv1-3, inception{3a..5b}.branch{1..4}[.i], aux{1,2}, fc."""
    if info.name != "googlenet_tv":
        raise NotImplementedError(
            f"{info.name} has no torchvision/timm counterpart to convert from (googlenet_tv has)"
        )
    first = path[0]
    if first == "head":
        return "fc"
    if first.startswith("aux"):  # aux{i}/conv/{conv,bn}, aux{i}/fc, aux{i}/head
        return f"{first}." + {"conv": f"conv.{path[-1]}", "fc": "fc1", "head": "fc2"}[path[1]]
    if first.startswith("inception"):
        branch = {
            "conv1x1": "branch1",
            "conv3x3_reduce": "branch2.0",
            "conv3x3": "branch2.1",
            "conv5x5_reduce": "branch3.0",
            "conv5x5": "branch3.1",
            "pool_proj": "branch4.1",
        }[path[1]]
        return f"{first}.{branch}.{path[2]}"
    return ".".join(path)  # conv{1,2,3}/{conv,bn}


def _inception_v3_module(info: Any, path: tuple[str, ...]) -> str:
    """torchvision / timm Inception-v3: the same module names; the classifiers are `fc`."""
    return ".".join("fc" if p == "head" else p for p in path)


MODULE_RULES: dict[str, Callable[[Any, tuple[str, ...]], str]] = {
    "resnet": _resnet_module,
    "alexnet": _alexnet_module,
    "vgg": _vgg_module,
    "densenet": _densenet_module,
    "mobilenet": _mobilenet_module,
    "shufflenet": _shufflenet_module,
    "resnet_v2": _resnet_v2_module,
    "efficientnet": _efficientnet_module,
    "senet": _senet_module,
    "mobilenet_v3": _mobilenet_v3_module,
    "shufflenet_v1": _shufflenet_v1_module,
    "nasnet": _nasnet_module,
    "pnasnet": _nasnet_module,
    "googlenet": _googlenet_module,
    "inception_v3": _inception_v3_module,
    "inception_v4": _inception_v4_module,
    "inception_resnet_v2": _inception_resnet_v2_module,
}
