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
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from jaxcnn import rundir
from jaxcnn.models import get_model_info
from jaxcnn.weights.torch_names import MODULE_RULES

# PyTorch bookkeeping tensors with no jaxcnn counterpart.
_IGNORED = re.compile(r"(^|\.)num_batches_tracked$")


class InitFromError(ValueError):
    """Initial weights that cannot be used for the architecture being trained (a missing file, a
    run of another architecture, a zoo entry that is not there); the message says what to do."""


class WeightMismatchError(ValueError):
    """A state dict that does not fit the architecture; the message names the first bad tensor."""


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
    if info.family not in MODULE_RULES:
        raise NotImplementedError(
            f"{info.name} has no torchvision/timm counterpart to convert from"
        )
    *module, leaf = path[1:]
    return f"{MODULE_RULES[info.family](info, tuple(module))}.{_LEAF[leaf]}"


def load_state_dict(path: rundir.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict as numpy arrays.

    Args:
        path: a local file or a URL (gs://...): `.safetensors` (read without PyTorch) or
            `.pth` / `.pt` / `.bin` (needs PyTorch; loaded with `weights_only=True`). A
            checkpoint dict holding the weights under `state_dict` or `model` is unwrapped.
    """
    path = rundir.as_path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load, load_file

        if rundir.is_url(path):
            return dict(load(path.read_bytes()))
        return dict(load_file(str(path)))
    if path.suffix in (".pth", ".pt", ".bin"):
        try:
            import torch
        except ImportError as e:
            raise ImportError(
                f"reading {path.name} needs PyTorch (pip install 'jaxcnn[torch]'); "
                "a .safetensors file needs no PyTorch"
            ) from e
        with path.open("rb") as f:
            obj = torch.load(f, map_location="cpu", weights_only=True)
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
