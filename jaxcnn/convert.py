"""Weights between torchvision / timm state dicts and jaxcnn variables, in both directions.

A jaxcnn leaf is addressed by its path, e.g. `("params", "stage1_block1", "conv1", "conv", "kernel")`;
each family has a rule giving the PyTorch module name of the leaf's parent (`layer1.0.conv1`) and the
leaf name maps to the PyTorch tensor name (`kernel` -> `weight`, `mean` -> `running_mean`, ...).
Layouts differ: a conv kernel is (kh, kw, in/groups, out) here and (out, in/groups, kh, kw) there;
a dense kernel is (in, out) here and (out, in) there.

Files: `.safetensors` are read with safetensors' numpy API (no PyTorch); `.pth` / `.pt` / `.bin` only
through `torch.load(weights_only=True)`, which refuses pickled code.
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from jaxcnn.models import get_model_info

# PyTorch bookkeeping tensors with no jaxcnn counterpart.
_IGNORED = re.compile(r"(^|\.)num_batches_tracked$")


class WeightMismatchError(ValueError):
    """A state dict that does not fit the architecture; the message names the first bad tensor."""


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


def _mobilenet_module(info: Any, path: tuple[str, ...]) -> str:
    """torchvision MobileNetV2: `features.0` stem, `features.1..17` blocks, `features.18` final."""
    if info.name != "mobilenet_v2":
        raise NotImplementedError(
            f"{info.name} has no torchvision/timm counterpart to convert from"
        )
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


# family -> rule giving the PyTorch module name of a jaxcnn module path. Families without a rule
# (LeNet-5, the CIFAR ResNets and DenseNets) have no torchvision/timm counterpart to convert from.
_RULES: dict[str, Callable[[Any, tuple[str, ...]], str]] = {
    "resnet": _resnet_module,
    "alexnet": _alexnet_module,
    "vgg": _vgg_module,
    "densenet": _densenet_module,
    "mobilenet": _mobilenet_module,
    "shufflenet": _shufflenet_module,
    "resnet_v2": _resnet_v2_module,
}

_LEAF = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


# Families whose PyTorch classifier is a 1x1 convolution (timm's ResNetV2 `head.fc`).
_CONV_HEAD_FAMILIES = {"resnet_v2"}


def _to_jax_layout(name: str, array: np.ndarray) -> np.ndarray:
    if name == "kernel" and array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    if name == "kernel" and array.ndim == 2:
        return array.T
    return array


def _to_torch_layout(name: str, array: np.ndarray) -> np.ndarray:
    if name == "kernel" and array.ndim == 4:
        return np.transpose(array, (3, 2, 0, 1))
    if name == "kernel" and array.ndim == 2:
        return array.T
    return array


def torch_name(arch: str, path: tuple[str, ...]) -> str:
    """PyTorch state-dict key of the jaxcnn leaf at `path` (collection first) of `arch`."""
    info = get_model_info(arch)
    if info.family not in _RULES:
        raise NotImplementedError(
            f"{info.name} has no torchvision/timm counterpart to convert from"
        )
    *module, leaf = path[1:]
    return f"{_RULES[info.family](info, tuple(module))}.{_LEAF[leaf]}"


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict as numpy arrays.

    Args:
        path: `.safetensors` (read without PyTorch) or `.pth` / `.pt` / `.bin` (needs PyTorch; loaded
            with `weights_only=True`). A checkpoint dict holding the weights under `state_dict` or
            `model` is unwrapped.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file  # noqa: PLC0415

        return dict(load_file(str(path)))
    if path.suffix in (".pth", ".pt", ".bin"):
        try:
            import torch  # noqa: PLC0415
        except ImportError as e:
            raise ImportError(
                f"reading {path.name} needs PyTorch (pip install 'jaxcnn[torch]'); "
                "a .safetensors file needs no PyTorch"
            ) from e
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
                obj = obj[key]
        return {
            k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
            for k, v in obj.items()
        }
    raise ValueError(f"unsupported weights format {path.suffix!r}: use .safetensors or .pth")


def from_torch(arch: str, state_dict: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """Converts a torchvision / timm state dict into jaxcnn variables.

    Args:
        arch: jaxcnn architecture name (selects the naming rule).
        state_dict: name -> array (numpy or torch tensors).
        template: the model's variables or their shapes, e.g.
            `jax.eval_shape(model.init, key, x, train=False)`; fixes the expected shapes.

    Returns:
        Variables (`params`, `batch_stats`) as numpy arrays in the template's dtypes.

    Raises:
        WeightMismatchError: a missing, mis-shaped or unexpected tensor (the first one is named).
    """
    sd = {
        k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
        for k, v in state_dict.items()
        if not _IGNORED.search(k)
    }
    flat = traverse_util.flatten_dict(jax.tree.map(lambda x: x, template))
    out, used = {}, set()
    # Parameters before statistics, so that a missing block is reported by a weight tensor
    # where possible.
    for path, leaf in sorted(flat.items(), key=lambda kv: kv[0][0] != "params"):
        key = torch_name(arch, path)
        if key not in sd:
            raise WeightMismatchError(
                f"{arch}: the state dict has no tensor {key!r} (needed for {'/'.join(path)}, "
                f"shape {tuple(leaf.shape)})"
            )
        raw = sd[key]
        if len(leaf.shape) == 2 and raw.ndim == 4 and raw.shape[2:] == (1, 1):
            raw = raw[:, :, 0, 0]  # a 1x1-conv classifier (timm ResNetV2) is our Dense
        value = _to_jax_layout(path[-1], raw)
        if tuple(value.shape) != tuple(leaf.shape):
            raise WeightMismatchError(
                f"{arch}: tensor {key!r} has shape {tuple(sd[key].shape)}, which does not fit "
                f"{'/'.join(path)} of shape {tuple(leaf.shape)} (in PyTorch layout "
                f"{tuple(_to_torch_layout(path[-1], np.empty(leaf.shape)).shape)})"
            )
        out[path] = value.astype(leaf.dtype)
        used.add(key)
    extra = sorted(set(sd) - used)
    if extra:
        raise WeightMismatchError(
            f"{arch}: the state dict has {len(extra)} tensor(s) that {arch} does not have, "
            f"first {extra[0]!r} (shape {tuple(sd[extra[0]].shape)})"
        )
    return traverse_util.unflatten_dict(out)


def to_torch(arch: str, variables: dict[str, Any]) -> dict[str, np.ndarray]:
    """jaxcnn variables -> a torchvision / timm style state dict of numpy arrays."""
    flat = traverse_util.flatten_dict(jax.device_get(variables))
    conv_head = get_model_info(arch).family in _CONV_HEAD_FAMILIES
    out = {}
    for p, v in flat.items():
        t = _to_torch_layout(p[-1], np.asarray(v))
        if conv_head and p[1] == "head" and p[-1] == "kernel":
            t = t[:, :, None, None]
        out[torch_name(arch, p)] = np.ascontiguousarray(t)
    return out
