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
import sys
from typing import Any

import jax
import numpy as np
from etils import epath
from flax import traverse_util

from jaxcnn import integrity, rundir
from jaxcnn.models import create_model, get_model_info
from jaxcnn.weights import convert, zoo
from jaxcnn.weights.convert import InitFromError

__all__ = [
    "InitFromError",
    "RestoreReport",
    "check_init_from",
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


def check_init_from(spec: str, arch: str) -> None:
    """The checks of an --init_from source that read no weights, made by `plan_run` before any
    device is used: a zoo entry exists and holds weights of `arch`, a weights file exists, a
    .safetensors file's header is sound (`convert.check_safetensors`). A run directory is checked
    when it is read.

    Raises:
        InitFromError: what is wrong, in one line.
    """
    path = rundir.as_path(spec)
    if path.is_dir():
        return
    if ":" in spec and not path.exists():
        key, entry = zoo.zoo_entry(spec)
        name = get_model_info(arch).name
        if entry.arch != name:
            raise InitFromError(f"{key} holds weights for {entry.arch}, not {name}")
        return
    if not path.exists():
        raise InitFromError(
            f"--init_from={spec}: no such run directory or weights file (expected a jaxcnn run dir, "
            "a .safetensors / .pth file, or torchvision:NAME / timm:NAME)"
        )
    if path.suffix == ".safetensors":
        convert.check_safetensors(path)


def load_init(spec: str, arch: str) -> dict[str, Any]:
    """Variables of `arch` (native head) from an --init_from source (see the module doc).

    Raises:
        InitFromError: a run of another architecture, a zoo name without weights, a missing file
            (the message says what to fetch and where to put it), a weights file that is
            malformed or that `torch.load(weights_only=True)` refuses.
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
    else:
        check_init_from(spec, info.name)
    model = create_model(info.name)
    size = max(info.min_image_size, 32)
    template = jax.eval_shape(
        lambda: model.init(jax.random.key(0), np.zeros((1, size, size, 3), np.float32), train=False)
    )
    return convert.from_torch(info.name, convert.load_state_dict(path), template)


def _read_converted(target: epath.Path, meta_path: epath.Path) -> tuple[Any, dict] | None:
    """(variables, meta) of a cached conversion, verified against the checksums its meta.json
    holds; None (with a warning line) when it is damaged or unreadable: it is converted again
    from the weights file, whose own sha256 is checked. Caches from before checksums load as
    they are."""
    import orbax.checkpoint as ocp

    try:
        meta = json.loads(meta_path.read_text())
        variables = ocp.StandardCheckpointer().restore(target)
        manifest = meta.pop("integrity", None)
        if manifest is not None:
            integrity.check_manifest(manifest)
            integrity.check_arrays(manifest, variables)
    except Exception as e:  # noqa: BLE001 - a damaged cache is rebuilt, whatever broke in it
        print(
            f"warning: the converted weights in {target.parent} are damaged ({rundir.describe_error(e)}); "
            "converting them again",
            file=sys.stderr,
        )
        return None
    return variables, meta


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
        cached = _read_converted(target, meta_path)
        if cached is not None:
            return model, cached[0], cached[1]
    path = zoo.weights_file(key, entry["arch"])
    variables = jax.tree.map(jnp.asarray, load_init(str(path), entry["arch"]))
    meta = dict(entry, spec=key, sha256=zoo.sha256(path))
    meta["integrity"] = integrity.make_manifest(variables, {})
    converted.mkdir(parents=True, exist_ok=True)
    if target.exists():  # a conversion interrupted before its meta.json, or a damaged one
        shutil.rmtree(target)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(target, variables)
    ckptr.wait_until_finished()
    rundir.write_json_atomic(meta_path, meta)  # last: its presence marks a complete conversion
    meta.pop("integrity")
    return model, variables, meta
