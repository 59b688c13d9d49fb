"""Transfer learning: initial weights from another source, frozen parts, per-part learning rates.

`--init_from` accepts
- a jaxcnn run directory (its latest checkpoint; the run's `config.json` names its architecture),
- a PyTorch weights file, `.safetensors` (read without PyTorch) or `.pth` (`weights_only=True`),
  in torchvision / timm naming for the architecture being trained,
- `torchvision:NAME` / `timm:NAME`: published weights from the model zoo (`jaxcnn.pretrained`).

The source is converted to the architecture's native head, then merged into the freshly initialised
variables leaf by leaf: a leaf with the same path and shape is loaded; a classifier of another class
count is newly initialised; a first convolution trained on RGB is summed over its input channels
for a 1-channel dataset (the response to a grey image is unchanged); anything else is reported.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import traverse_util

# Top-level module names that make up the classifier (auxiliary heads included).
HEAD_PREFIXES = ("head", "aux")


class InitFromError(ValueError):
    """An --init_from source that cannot be used for the architecture being trained."""


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


def read_run(workdir: Path) -> tuple[str, dict[str, Any]]:
    """(architecture, variables) of the latest checkpoint of a jaxcnn run directory."""
    from jaxcnn.checkpoint import Checkpointer  # noqa: PLC0415

    config = workdir / "config.json"
    if not config.exists():
        raise InitFromError(f"{workdir} is not a jaxcnn run directory (no config.json)")
    arch = json.loads(config.read_text())["arch"]
    ckpt = Checkpointer(workdir)
    try:
        if ckpt.latest_step() is None:
            raise InitFromError(f"{workdir} has no checkpoint yet")
        tree, _ = ckpt.restore()
    finally:
        ckpt.close()
    return arch, {k: tree[k] for k in ("params", "batch_stats") if k in tree}


def load_init(spec: str, arch: str) -> dict[str, Any]:
    """Variables of `arch` (native head) from an --init_from source (see the module doc).

    Raises:
        InitFromError: a run of another architecture, a zoo name without weights, a missing file
            (the message says what to fetch and where to put it).
        convert.WeightMismatchError: a weights file that does not fit the architecture.
    """
    from jaxcnn import convert  # noqa: PLC0415
    from jaxcnn.models import create_model, get_model_info  # noqa: PLC0415

    info = get_model_info(arch)
    path = Path(spec).expanduser()
    if path.is_dir():
        run_arch, variables = read_run(path)
        if get_model_info(run_arch).name != info.name:
            raise InitFromError(f"{path} trained {run_arch}, not {info.name}")
        return variables
    if ":" in spec and not path.exists():
        from jaxcnn import pretrained  # noqa: PLC0415

        path = pretrained.weights_file(spec, info.name)
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


def frozen_modules(params: dict[str, Any], freeze: str) -> set[str]:
    """Top-level module names that `--freeze` selects.

    Args:
        params: the model's parameters.
        freeze: `none`, `backbone` (everything but the classifier: `head`, `aux*`), or a comma
            list of top-level module names or their prefixes (`stem,stage1,stage2` also freezes
            `stage1_block1`, `stage1_block2`, ...).

    Raises:
        ValueError: a name that matches no module (the message lists the valid ones).
    """
    names = list(params)
    spec = (freeze or "none").strip()
    if spec == "none":
        return set()
    if spec == "backbone":
        return {n for n in names if not n.startswith(HEAD_PREFIXES)}
    chosen = set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        hits = {n for n in names if n.startswith(part)}
        if not hits:
            raise ValueError(
                f"--freeze={freeze}: {part!r} matches no top-level module; the modules are "
                f"{', '.join(names)} (or use 'backbone' / 'none')"
            )
        chosen |= hits
    return chosen


def param_labels(params: dict[str, Any], frozen: set[str], backbone_lr_mult: float) -> dict:
    """Optax multi_transform labels: `frozen`, `backbone` (scaled lr) or `train`, per leaf."""

    def label(name: str) -> str:
        if name in frozen:
            return "frozen"
        if backbone_lr_mult != 1.0 and not name.startswith(HEAD_PREFIXES):
            return "backbone"
        return "train"

    return {name: jax.tree.map(lambda _, n=name: label(n), sub) for name, sub in params.items()}


def stats_mask(batch_stats: dict[str, Any], frozen: set[str]) -> dict[str, Any]:
    """True for the BatchNorm statistics of frozen modules (kept unchanged by the train step)."""
    return {
        name: jax.tree.map(lambda _, f=name in frozen: f, sub) for name, sub in batch_stats.items()
    }
