"""Weights between torchvision / timm state dicts and jaxcnn variables, in both directions.

A jaxcnn leaf is addressed by its path, e.g. `("params", "stage1_block1", "conv1", "conv", "kernel")`;
each family has a rule giving the PyTorch module name of the leaf's parent (`layer1.0.conv1`) and the
leaf name maps to the PyTorch tensor name (`kernel` -> `weight`, `mean` -> `running_mean`, ...).
Layouts differ: a conv kernel is (kh, kw, in/groups, out) here and (out, in/groups, kh, kw) there;
a dense kernel is (in, out) here and (out, in) there.

Files: `.safetensors` are read with safetensors' numpy API (no PyTorch), after `check_safetensors`
has read the header alone and checked every size in it against the file (a hostile header cannot
make the reader allocate what the file does not hold); `.pth` / `.pt` / `.bin` only through
`torch.load(weights_only=True)`, which refuses pickled code. A file that fails either way is an
`InitFromError` of one line.
"""

import json
import math
import pickle
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


# safetensors' own limit on the JSON header (safetensors/src/tensor.rs, MAX_HEADER_SIZE).
SAFETENSORS_MAX_HEADER = 100_000_000

# Bytes per element of the safetensors dtypes that safetensors' numpy reader reads.
SAFETENSORS_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}
# Dtypes of the format that numpy cannot hold (no bfloat16 or float8 in numpy).
_SAFETENSORS_NOT_NUMPY = ("BF16", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4")

_REDO = "re-download or re-export it"


def _size(path: Any) -> int:
    """Bytes in the file at `path` (an `epath.Path`, local or in a bucket)."""
    stat = path.stat()
    return int(getattr(stat, "length", None) or getattr(stat, "st_size", 0))


def check_safetensors(path: rundir.PathLike) -> dict[str, Any]:
    """The header of a .safetensors file, read alone (8 bytes of length, then the JSON) and checked
    against the file before any tensor is read: a header length within the file and within
    safetensors' 100 MB limit, a JSON object, and for every tensor a dtype numpy reads, a shape of
    non-negative integers and `data_offsets` inside the file spanning exactly
    prod(shape) * itemsize bytes. Nothing the size of a tensor is allocated.

    Raises:
        InitFromError: the first thing that is wrong, in one line.
    """
    path = rundir.as_path(path)
    bad = f"{path} is not a valid .safetensors file"
    size = _size(path)
    if size < 8:
        raise InitFromError(f"{bad}: {size} bytes, fewer than its 8-byte header length; {_REDO}")
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > SAFETENSORS_MAX_HEADER:
            raise InitFromError(
                f"{bad}: its header claims {n} bytes, more than safetensors' limit of "
                f"{SAFETENSORS_MAX_HEADER}; {_REDO}"
            )
        if n > size - 8:
            raise InitFromError(
                f"{bad}: its header claims {n} bytes but the file has {size - 8} after the length "
                f"(truncated?); {_REDO}"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InitFromError(f"{bad}: its header is not JSON ({e}); {_REDO}") from None
    if not isinstance(header, dict):
        raise InitFromError(f"{bad}: its header is not a JSON object; {_REDO}")
    data = size - 8 - n
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        what = f"{bad}: tensor {name!r}"
        if not isinstance(spec, dict) or not {"dtype", "shape", "data_offsets"} <= set(spec):
            raise InitFromError(f"{what} lacks dtype, shape or data_offsets; {_REDO}")
        dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
        if dtype in _SAFETENSORS_NOT_NUMPY:
            raise InitFromError(
                f"{path}: tensor {name!r} is {dtype}, which numpy cannot hold; save the weights "
                "as float32 (in PyTorch: {k: v.float() for k, v in state_dict.items()})"
            )
        if dtype not in SAFETENSORS_ITEMSIZE:
            raise InitFromError(f"{what} has an unknown dtype {dtype!r}; {_REDO}")
        if not (
            isinstance(shape, list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise InitFromError(f"{what} has a bad shape {shape!r}; {_REDO}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise InitFromError(f"{what} has bad data_offsets {offsets!r}; {_REDO}")
        begin, end = offsets
        if end > data:
            raise InitFromError(
                f"{what} (shape {shape}, {dtype}) lies at bytes {begin}-{end} of a data section "
                f"of {data} bytes (truncated or forged header); {_REDO}"
            )
        need = math.prod(shape) * SAFETENSORS_ITEMSIZE[dtype]
        if end - begin != need:
            raise InitFromError(
                f"{what} (shape {shape}, {dtype}) needs {need} bytes, its data_offsets span "
                f"{end - begin}; {_REDO}"
            )
    return header


def _torch_reason(e: BaseException) -> str:
    """The line of a torch.load refusal that says what was refused ("Unsupported global: GLOBAL
    posix.system ..."), without PyTorch's advice on how to load it anyway."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(e).splitlines()]
    skip = ("Weights only load failed", "(1)", "(2)", "Check the documentation")
    useful = [line for line in lines if line and not line.startswith(skip)]
    reason = (useful or [line for line in lines if line] or [type(e).__name__])[0]
    reason = reason.removeprefix("WeightsUnpickler error: ")
    return reason.split(". ")[0].rstrip(".")


def _load_torch(path: Any) -> dict[str, np.ndarray]:
    """A .pth / .pt / .bin state dict through `torch.load(weights_only=True)`, any refusal or
    malformation an InitFromError."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"reading {path.name} needs PyTorch (pip install 'jaxcnn[torch]'); "
            "a .safetensors file needs no PyTorch"
        ) from e
    try:
        with path.open("rb") as f:
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise InitFromError(
                f"{path} is not a readable PyTorch file ({_torch_reason(e)}); {_REDO}"
            ) from e
        raise InitFromError(
            f"{path} is not a plain tensor file: torch.load(weights_only=True) refused it "
            f"({_torch_reason(e)}); convert it to .safetensors from a trusted copy"
        ) from e
    except (OSError, MemoryError):  # the disk's or the machine's, not the file's content
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt file fails in many ways inside torch
        raise InitFromError(
            f"{path} is not a readable PyTorch file ({type(e).__name__}: {_torch_reason(e)}); "
            f"{_REDO}"
        ) from e
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise InitFromError(
            f"{path} holds a {type(obj).__name__}, not a state dict (a dict of tensors)"
        )
    out = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise InitFromError(
                f"{path}: entry {k!r} of the state dict is a {type(v).__name__}, not a tensor"
            )
        out[k] = v.detach().float().numpy() if v.is_floating_point() else v.numpy()
    return out


def load_state_dict(path: rundir.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict as numpy arrays.

    Args:
        path: a local file or a URL (gs://...): `.safetensors` (read without PyTorch) or
            `.pth` / `.pt` / `.bin` (needs PyTorch; loaded with `weights_only=True`). A
            checkpoint dict holding the weights under `state_dict` or `model` is unwrapped.

    Raises:
        FileNotFoundError: no such file.
        InitFromError: a file that is malformed (a truncated or forged .safetensors header is
            refused before anything is allocated), that `torch.load(weights_only=True)` refuses
            (pickled code), or that holds no state dict.
    """
    path = rundir.as_path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load, load_file

        check_safetensors(path)
        try:
            if rundir.is_url(path):
                return dict(load(path.read_bytes()))
            return dict(load_file(str(path)))
        except SafetensorError as e:  # what the header check leaves: gaps, overlaps
            raise InitFromError(
                f"{path} is not a valid .safetensors file ({one_line(e)}); {_REDO}"
            ) from e
    if path.suffix in (".pth", ".pt", ".bin"):
        return _load_torch(path)
    raise ValueError(f"unsupported weights format {path.suffix!r}: use .safetensors or .pth")


def one_line(e: BaseException) -> str:
    """`str(e)` with its lines joined by "; "."""
    return "; ".join(line.strip() for line in str(e).splitlines() if line.strip())


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
