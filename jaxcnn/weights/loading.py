"""Initial weights for a run: from another run, a PyTorch weights file or the published zoo.

`--init_from` accepts
- a jaxcnn run directory (its latest checkpoint; the run's `config.json` names its architecture),
- a PyTorch weights file, `.safetensors` (read without PyTorch) or `.pth` (`weights_only=True`),
  in torchvision / timm naming for the architecture being trained,
- `torchvision:NAME` / `timm:NAME`: published weights from the model zoo (`jaxcnn.weights.zoo`).

The source is converted to the architecture's native head, then merged into the freshly initialised
variables leaf by leaf: a leaf with the same path and shape is loaded; a classifier of another class
count is newly initialised; a first convolution trained on RGB is summed over its input channels
for a 1-channel dataset (the response to a grey image is unchanged); anything else is reported.
"""

import dataclasses
import json
import shutil
from typing import Any

import jax
import numpy as np
from etils import epath
from flax import traverse_util

from jaxcnn import rundir
from jaxcnn.models import create_model, get_model_info
from jaxcnn.weights import convert, zoo
from jaxcnn.weights.convert import InitFromError

__all__ = [
    "InitFromError",
    "RestoreReport",
    "load_init",
    "load_pretrained",
    "merge_variables",
    "read_run",
]


@dataclasses.dataclass
class RestoreReport:
    """What a partial restore did, leaf by leaf (paths like `params/stem/conv/kernel`)."""

    loaded: list[str] = dataclasses.field(default_factory=list)
    adapted: list[str] = dataclasses.field(default_factory=list)
    initialised: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        def few(xs: list[str]) -> str:
            return ", ".join(xs[:6]) + (f", ... ({len(xs)} in all)" if len(xs) > 6 else "")

        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.adapted:
            lines.append(f"adapted (RGB kernel summed to the input channels): {few(self.adapted)}")
        if self.initialised:
            lines.append(f"newly initialised: {few(self.initialised)}")
        if self.ignored:
            lines.append(f"ignored (not in this model or another shape): {few(self.ignored)}")
        return "; ".join(lines)


def _flat(tree: Any) -> dict[str, Any]:
    return traverse_util.flatten_dict(tree, sep="/") if tree else {}


def merge_variables(
    target: dict[str, Any], source: dict[str, Any]
) -> tuple[dict[str, Any], RestoreReport]:
    """Loads `source`'s leaves into `target` where paths and shapes agree (see the module doc).

    Args:
        target: freshly initialised variables ({'params': ..., 'batch_stats': ...}).
        source: variables of the same architecture, possibly another head or input channel count.

    Returns:
        (merged variables as numpy arrays in the target's dtypes, report).
    """
    report = RestoreReport()
    tgt, src = _flat(target), _flat(source)
    out = {}
    for path, leaf in tgt.items():
        shape, dtype = tuple(leaf.shape), leaf.dtype
        value = src.get(path)
        if value is not None and tuple(np.shape(value)) == shape:
            out[path] = np.asarray(value, dtype)
            report.loaded.append(path)
        elif (
            value is not None
            and np.ndim(value) == 4
            and np.shape(value)[:2] == shape[:2]
            and np.shape(value)[3] == shape[3]
            and shape[2] == 1
        ):
            out[path] = np.asarray(value, dtype).sum(axis=2, keepdims=True)
            report.adapted.append(path)
        else:
            out[path] = np.asarray(jax.device_get(leaf))
            report.initialised.append(path)
    report.ignored = sorted(p for p in src if p not in out or p in report.initialised)
    return traverse_util.unflatten_dict(out, sep="/"), report


def read_run(workdir: rundir.PathLike) -> tuple[str, dict[str, Any]]:
    """(architecture, variables) of the latest checkpoint of a jaxcnn run directory."""
    run = rundir.RunDir(workdir)
    try:
        arch = run.read_config()["arch"]
        variables, _ = run.restore_variables("latest")
    except rundir.RunDirError as e:
        raise InitFromError(f"--init_from: {e}") from e
    return arch, variables


def load_init(spec: str, arch: str) -> dict[str, Any]:
    """Variables of `arch` (native head) from an --init_from source (see the module doc).

    Raises:
        InitFromError: a run of another architecture, a zoo name without weights, a missing file
            (the message says what to fetch and where to put it).
        convert.WeightMismatchError: a weights file that does not fit the architecture.
    """
    info = get_model_info(arch)
    path = rundir.as_path(spec)
    if path.is_dir():
        run_arch, variables = read_run(path)
        if get_model_info(run_arch).name != info.name:
            raise InitFromError(f"{path} trained {run_arch}, not {info.name}")
        return variables
    if ":" in spec and not path.exists():
        path = zoo.weights_file(spec, info.name)
    elif not path.exists():
        raise InitFromError(
            f"--init_from={spec}: no such run directory or weights file (expected a jaxcnn run dir, "
            "a .safetensors / .pth file, or torchvision:NAME / timm:NAME)"
        )
    model = create_model(info.name)
    size = max(info.min_image_size, 32)
    template = jax.eval_shape(
        lambda: model.init(jax.random.key(0), np.zeros((1, size, size, 3), np.float32), train=False)
    )
    return convert.from_torch(info.name, convert.load_state_dict(path), template)


def load_pretrained(spec: str, *, dtype: Any = None) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Model, variables and zoo entry of published weights (converted once, then cached).

    The weights file is looked for in the cache (`jaxcnn.weights.zoo.cache_dir()`, `weights/`),
    fetched when missing and allowed, and checksum-verified (`zoo.weights_file`); the converted
    variables are kept as an Orbax checkpoint in `converted/<spec>/` beside a `meta.json`, so that
    conversion happens once.

    Args:
        spec: a jaxcnn name (`resnet50`: torchvision's default weights) or a zoo key
            (`torchvision:resnet50.IMAGENET1K_V1`, `timm:inception_v4`).
        dtype: computation dtype of the returned model (default float32).

    Returns:
        (model with the weights' 1000-class head, variables, entry); `entry` holds the
        preprocessing (`input_size`, `resize_size`, `interpolation`, `mean`, `std`), the
        `labels` set, `top1` / `top5`, `url` and `sha256_prefix`.
    """
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    key, entry = zoo.zoo_entry(spec)
    model = create_model(entry["arch"], dtype=dtype or jnp.float32)
    converted = epath.Path(zoo.cache_dir()) / "converted" / key.replace(":", "_")
    meta_path = converted / "meta.json"
    target = rundir.as_path(converted / "variables")
    if meta_path.exists():
        variables = ocp.StandardCheckpointer().restore(target)
        return model, variables, json.loads(meta_path.read_text())
    path = zoo.weights_file(key, entry["arch"])
    variables = jax.tree.map(jnp.asarray, load_init(str(path), entry["arch"]))
    meta = dict(entry, spec=key, sha256=zoo.sha256(path))
    converted.mkdir(parents=True, exist_ok=True)
    if target.exists():  # a conversion interrupted before its meta.json
        shutil.rmtree(target)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(target, variables)
    ckptr.wait_until_finished()
    rundir.write_json_atomic(meta_path, meta)  # last: its presence marks a complete conversion
    return model, variables, meta
