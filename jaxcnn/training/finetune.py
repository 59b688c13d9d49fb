"""Fine-tuning labels: which parameters are frozen, which learn at the backbone's rate.

`--freeze=none|backbone|stem,stage1,...` picks top-level modules; `frozen_modules` resolves it,
`param_labels` turns it into the per-leaf labels of an Optax `multi_transform`
(`jaxcnn.training.optim.make_optimizer`), `stats_mask` into the BatchNorm statistics that the train
step keeps unchanged.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

# Top-level module names that make up the classifier (auxiliary heads included).
HEAD_PREFIXES = ("head", "aux")


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


@dataclasses.dataclass(frozen=True)
class FineTuning:
    """What `--freeze` and `--backbone_lr_mult` mean for one network.

    Attributes:
        frozen: the frozen top-level modules (empty: none).
        labels: per-leaf labels for `make_optimizer` (None: every parameter alike).
        frozen_stats: a `batch_stats`-shaped tree of bools, True for statistics the train step
            keeps (None: none frozen).
    """

    frozen: frozenset[str] = frozenset()
    labels: Any = None
    frozen_stats: Any = None


def fine_tuning(
    model: Any, input_shape: tuple[int, ...], freeze: str = "none", backbone_lr_mult: float = 1.0
) -> FineTuning:
    """Resolves `freeze` / `backbone_lr_mult` against `model`'s parameter tree (traced, no compute).

    Raises:
        ValueError: a `freeze` name that matches no module (the message lists the valid ones).
    """
    if (freeze or "none") == "none" and backbone_lr_mult == 1.0:
        return FineTuning()
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros(input_shape), train=False)
    )
    frozen = frozen_modules(shapes["params"], freeze)
    return FineTuning(
        frozen=frozenset(frozen),
        labels=param_labels(shapes["params"], frozen, backbone_lr_mult),
        frozen_stats=stats_mask(shapes.get("batch_stats", {}), frozen) if frozen else None,
    )
