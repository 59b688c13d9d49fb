"""The files of a run directory: config, metrics.jsonl and TensorBoard events, written safely."""

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yields a temporary path beside `path`; renamed onto `path` only if the block succeeds.

    A reader never sees a half-written file, and a failure leaves nothing behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Writes JSON to `path` through a temporary file and a rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunLog:
    """Appends metrics to `workdir/metrics.jsonl` and TensorBoard event files in `workdir`.

    Args:
        workdir: the run directory.
        enabled: False on every process but the first of a multi-host run.
    """

    def __init__(self, workdir: str | Path, enabled: bool = True):
        self.path = Path(workdir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter  # noqa: PLC0415

            self._tb = SummaryWriter(str(workdir))

    def truncate_after(self, step: int) -> None:
        """Drops rows logged after `step` (by an interrupted run, past its last checkpoint)."""
        if not (self.enabled and self.path.exists()):
            return
        rows = [r for r in self.path.read_text().splitlines() if r.strip()]
        keep = [r for r in rows if json.loads(r)["step"] <= step]
        if len(keep) != len(rows):
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(r + "\n" for r in keep))
            os.replace(tmp, self.path)

    def write(self, step: int, split: str, **values: float) -> None:
        """Logs one row: `{"step", "split", **values}`."""
        if not self.enabled:
            return
        row = {"step": int(step), "split": split, **{k: float(v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in values.items():
            self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
