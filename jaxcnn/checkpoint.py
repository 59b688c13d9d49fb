"""Orbax checkpoints: the latest N for resuming, and the best by validation accuracy.

`DIR/checkpoints/latest` keeps the last `keep` saves (so the newest is never deleted);
`DIR/checkpoints/best` keeps the single best by validation accuracy. Each save holds the train state's
arrays and a small JSON of host-side state (epoch, plateau schedule, best accuracy). Orbax writes
each step to a temporary directory and renames it when complete, so a crash never leaves a
half-written checkpoint that a resume would read.
"""

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath


class Checkpointer:
    """Save / restore of train states under `workdir/checkpoints`.

    Args:
        workdir: the run's directory.
        keep: how many of the latest checkpoints to keep.
    """

    def __init__(self, workdir: str | Path, keep: int = 3):
        root = Path(workdir).absolute() / "checkpoints"
        self.latest = ocp.CheckpointManager(
            root / "latest",
            options=ocp.CheckpointManagerOptions(max_to_keep=max(1, keep), create=True),
            item_names=("state", "meta"),
        )
        self.best = ocp.CheckpointManager(
            root / "best",
            options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
            item_names=("state", "meta"),
        )

    @staticmethod
    def _args(state: dict[str, Any], meta: dict[str, Any]) -> ocp.args.Composite:
        return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any], *, best: bool = False):
        """Saves `state` (a pytree of arrays) and `meta` (JSON) as `step`; also as best if asked."""
        if step not in self.latest.all_steps():
            self.latest.save(step, args=self._args(state, meta))
        if best:
            self.best.save(step, args=self._args(state, meta), force=True)

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def restore(
        self,
        target: dict[str, Any] | None = None,
        step: int | None = None,
        *,
        which: str = "latest",
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Restores a checkpoint onto the structure, dtypes and shardings of `target`.

        Args:
            target: a pytree like the saved state (concrete arrays or ShapeDtypeStructs with
                shardings), e.g. a freshly initialised state; None restores the saved tree as is,
                on this host's first device (whatever devices saved it: a run trained on a GPU
                or a pod restores on a laptop).
            step: which step (default: the newest).
            which: "latest" or "best".

        Returns:
            (state, meta).
        """
        mgr = self.latest if which == "latest" else self.best
        step = mgr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no {which} checkpoint in {mgr.directory}")
        if target is None:
            # Without a target Orbax puts each array back on the device it was saved from and
            # refuses another topology ("Topology mismatch"): read the shapes, place them here.
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            saved = ocp.StandardCheckpointHandler().metadata(
                epath.Path(mgr.directory) / str(step) / "state"
            )
            target = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved
            )
        out = mgr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        return out["state"], out["meta"]

    def wait(self) -> None:
        """Blocks until asynchronous saves have been committed to disk."""
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()
