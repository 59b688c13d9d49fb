"""The run directory: the one place that reads and writes a run's files.

A run directory (``--workdir``) holds

    config.json       the settings of the run (written once it starts; read to resume and by the
                      programs that use a trained run: features, neighbors, visualize)
    dataset.json      a folder dataset's record: class names, the files of each split, channel
                      statistics (jaxcnn.data.folder.FolderRecord; only for --dataset=folder:PATH)
    metrics.jsonl     one JSON object per line: ``step``, ``split`` (train / eval) and the metrics
    events.out.*      TensorBoard event files of the same metrics
    checkpoints/latest/<step>/{state,meta}   the last ``keep_checkpoints`` Orbax saves
    checkpoints/best/<step>/{state,meta}     the save with the best eval accuracy

Every path is an ``etils.epath.Path`` (the type Orbax itself uses), never ``pathlib`` or ``os`` on a
string, so that a run directory in a bucket (``gs://bucket/runs/x``) is handled like a local one.
Every file a reader may open is written whole or not at all: `atomic_path` writes beside the target
and renames it into place on a local disk; in an object store, which has neither rename nor append,
it writes a local temporary file and uploads it as one object (an upload is all-or-nothing).
`metrics.jsonl` and the TensorBoard event files of a bucket run are likewise kept locally and
uploaded whole at each checkpoint and at the end. Only process 0 of a multi-host job writes the
shared files; every process takes part in the Orbax saves (Orbax coordinates them).
"""

import contextlib
import errno
import json
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from jaxcnn import integrity

PathLike = str | epath.PathLike

CONFIG = "config.json"
# A folder dataset's files, split, class names and statistics (jaxcnn.data.folder.FolderRecord).
DATASET = "dataset.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
# The two checkpoint series of a run: the latest saves (to resume) and the best by eval accuracy.
SERIES = ("latest", "best")
# Which weights of a checkpoint the commands that read a run use (`--weights`).
WEIGHTS = ("raw", "ema")
# Settings a resumed run must share with the run that wrote the checkpoints.
RESUME_KEYS = (
    "arch",
    "arch_options",
    "dataset",
    "image_size",
    "batch_size",
    "seed",
    "optimizer",
    "dtype",
    "ema_decay",  # the checkpoint holds an EMA or not (None in runs from before it existed)
)


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (missing, not a run, other settings, no
    checkpoint); the message says which and what to do."""


def is_url(path: PathLike) -> bool:
    """Whether `path` names an object store (gs://, s3://, ...) rather than a local file."""
    return "://" in str(path)


def as_path(path: PathLike) -> epath.Path:
    """`path` as an `epath.Path`; local paths are made absolute (Orbax needs absolute paths).

    Raises:
        RunDirError: `path` looks like a URL that lost a slash (`gs:/bucket/x`), which would
            otherwise become a local folder named `gs:`.
    """
    # A scheme of two letters or more: `C:/runs` (a Windows drive) stays a local path.
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/(?!/)", str(path)):
        raise RunDirError(f"{path} is not a URL (a URL has two slashes: gs://bucket/...)")
    p = epath.Path(path)
    return p if is_url(path) else epath.Path(p.expanduser().absolute())


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[epath.Path]:
    """Yields a temporary path beside `path`, moved onto `path` only if the block succeeds.

    A reader never sees a half-written file, and a failure leaves nothing behind. The file gets the
    usual mode of a new file (the process umask), like any file the program writes.
    """
    path = as_path(path)
    if is_url(path):
        # An object store has no rename: write locally, then upload in one request, which either
        # creates the whole object or nothing.
        with tempfile.TemporaryDirectory(prefix="jaxcnn-upload-") as local:
            tmp = epath.Path(local) / path.name
            yield tmp
            path.write_bytes(tmp.read_bytes())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: PathLike, text: str) -> None:
    """Writes `text` to `path` whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Writes `obj` as indented, key-sorted JSON to `path`, whole or not at all."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


class MetricsLog:
    """Appends metrics rows to `metrics.jsonl` and to TensorBoard event files.

    On a local disk each row is appended as it comes (so `tail -f` follows a run). In an object
    store (no append), the rows and the event files are kept in this process and uploaded whole by
    `flush`, which the trainer calls at every checkpoint: what a resume reads is then never behind
    the checkpoint it resumes from (rows logged after it are dropped on resume anyway).

    Args:
        workdir: the run directory.
        enabled: False on every process but the first of a multi-host run (they write nothing).
    """

    def __init__(self, workdir: PathLike, enabled: bool = True):
        self.workdir = as_path(workdir)
        self.path = self.workdir / METRICS
        self.enabled = enabled
        self._remote = is_url(self.workdir)
        self._rows: list[str] = []  # every row of the file, kept only for an object store
        self._tb = None
        self._tb_local: str | None = None
        if not enabled:
            return
        if self._remote and self.path.exists():
            self._rows = [r for r in self.path.read_text().splitlines() if r.strip()]

    def _writer(self):
        """The TensorBoard writer, made at the first value. tensorboardX closes an unclosed
        writer at exit, and that starts its queue's thread if it never got a value: Python 3.12
        refuses ("can't create new thread at interpreter shutdown"). A writer that got a value
        has that thread already, and a log that never writes one now has no writer at all."""
        if self._tb is None:
            from tensorboardX import SummaryWriter  # only where metrics are kept

            if self._remote:
                # TensorBoard writes to a local staging folder; `flush` uploads its files whole.
                self._tb_local = tempfile.mkdtemp(prefix="jaxcnn-tb-")
            self._tb = SummaryWriter(self._tb_local or str(self.workdir))
        return self._tb

    def truncate_after(self, step: int) -> None:
        """Drops rows logged after `step` (by an interrupted run, past its last checkpoint)."""
        if not self.enabled:
            return
        if self._remote:
            keep = [r for r in self._rows if json.loads(r)["step"] <= step]
            if len(keep) != len(self._rows):
                self._rows = keep
                write_text_atomic(self.path, "".join(r + "\n" for r in keep))
            return
        if not self.path.exists():
            return
        rows = [r for r in self.path.read_text().splitlines() if r.strip()]
        keep = [r for r in rows if json.loads(r)["step"] <= step]
        if len(keep) != len(rows):
            write_text_atomic(self.path, "".join(r + "\n" for r in keep))

    def write(self, step: int, split: str, **values: float) -> None:
        """Logs one row: `{"step", "split", **values}`."""
        if not self.enabled:
            return
        row = json.dumps(
            {"step": int(step), "split": split, **{k: float(v) for k, v in values.items()}}
        )
        if self._remote:
            self._rows.append(row)
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(row + "\n")
        for k, v in values.items():
            self._writer().add_scalar(f"{split}/{k}", float(v), int(step))

    def flush(self) -> None:
        """Makes everything logged so far durable (uploads it whole, in an object store)."""
        if self._tb is None:  # no row since the log was opened: nothing new to make durable
            return
        self._tb.flush()
        self._upload()

    def _upload(self) -> None:
        if not self._remote:
            return
        write_text_atomic(self.path, "".join(r + "\n" for r in self._rows))
        for name in sorted(os.listdir(self._tb_local)):
            with atomic_path(self.workdir / name) as tmp:
                shutil.copyfile(os.path.join(self._tb_local, name), tmp)

    def close(self) -> None:
        """Closes the event writer, then uploads (in an object store): tensorboardX's `flush` does
        not drain its queue, only `close` writes the last events. Call it: an open writer's
        thread outlives the program otherwise."""
        if self._tb is None:
            return
        try:
            self._tb.close()
            self._upload()
        finally:
            self._tb = None
            if self._tb_local:
                shutil.rmtree(self._tb_local, ignore_errors=True)


def read_metrics(workdir: PathLike) -> list[dict[str, Any]]:
    """The rows of a run's `metrics.jsonl` ([] when there is none yet)."""
    path = as_path(workdir) / METRICS
    if not path.exists():
        return []
    return [json.loads(r) for r in path.read_text().splitlines() if r.strip()]


def _move_tree(src: epath.Path, dest: epath.Path) -> None:
    """Moves the directory `src` to `dest`: a rename on a disk; in an object store, which has no
    rename (nor folders), a copy of every object and then the deletion of the originals, the
    commit marker first (a move cut short leaves a copy and an uncommitted original, never a
    second committed checkpoint)."""
    if not is_url(src):
        dest.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dest)
        return
    files, todo = [], [src]
    while todo:  # not rglob: epath refuses `**` on GCS
        for p in todo.pop().iterdir():
            (todo if p.is_dir() else files).append(p)
    for f in files:
        target = dest / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        f.copy(target)
    files.sort(key=lambda f: f.name != COMMIT_MARKER)
    for f in files:
        f.unlink()
    with contextlib.suppress(OSError):
        src.rmtree(missing_ok=True)


class CheckpointDamagedError(RunDirError):
    """A checkpoint that cannot be trusted: a file or item missing, unreadable, truncated, or
    arrays / metadata that do not match their checksums. Never loaded.

    Attributes:
        step: the step of the checkpoint.
        directory: its directory.
        detail: what is wrong (which item, file or array).
    """

    def __init__(self, step: int, directory: PathLike, detail: str):
        self.step, self.directory, self.detail = step, str(directory), detail
        super().__init__(f"checkpoint step {step} in {directory} is damaged: {detail}")


# The item a checkpoint's checksums are saved under (jaxcnn.integrity); its meta says it has one.
INTEGRITY = "integrity"
# Where the trainer moves a damaged checkpoint when it falls back to an older one: out of the
# series (Orbax would otherwise count it as the newest step and refuse to save before it), kept.
DAMAGED = "damaged"
# Orbax's commit marker: a step directory without it was never finished.
COMMIT_MARKER = "commit_success.txt"
# Orbax's record of a step (its items and their handlers), written with every save.
STEP_METADATA = "_CHECKPOINT_METADATA"


def _nearest_existing(path: str) -> str:
    """`path` or its nearest ancestor that exists (a file there stops the walk too)."""
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def _unwritable(directory: str) -> str | None:
    """Why files cannot be made in the existing `directory`, None when they can. Checked with
    `os.access`: as root only a read-only file system refuses (root ignores the mode bits)."""
    if not os.path.isdir(directory):
        return f"{directory} is a file, not a directory"
    if os.access(directory, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return f"{directory} is on a read-only file system"
    return f"{directory} is not writable by this user"


def check_writable_dir(path: Any, flag: str, todo: str | None = None) -> None:
    """RunDirError when the directory `path` (given as `flag`, e.g. `--workdir`) cannot be made or
    written: it is a file, an ancestor of it is a file, or the directory that would hold it is
    read-only or not this user's. Nothing is created; a URL (gs://...) is not checked. `todo`
    replaces the advice at the end of the line."""
    given = str(path)
    if "://" in given:
        return
    local = os.path.abspath(os.path.expanduser(given))
    if os.path.lexists(local) and not os.path.isdir(local):
        raise RunDirError(
            f"{flag}={given} is a file, not a directory; {todo or 'name a directory'}"
        )
    why = _unwritable(_nearest_existing(local))
    if why is not None:
        verb = "written" if os.path.isdir(local) else "created"
        raise RunDirError(
            f"{flag}={given} cannot be {verb}: {why}; {todo or 'name a directory you can write to'}"
        )


def check_writable_file(path: Any, flag: str, todo: str | None = None) -> None:
    """RunDirError when the file `path` (given as `flag`, e.g. `--output`) cannot be written: it is
    a directory, or the directory that would hold it cannot be made or written (see
    `check_writable_dir`). `todo` replaces the advice at the end of the line."""
    given = str(path)
    if "://" in given:
        return
    local = os.path.abspath(os.path.expanduser(given))
    if os.path.isdir(local):
        raise RunDirError(f"{flag}={given} is a directory; {todo or 'name a file'}")
    why = _unwritable(_nearest_existing(os.path.dirname(local)))
    if why is not None:
        raise RunDirError(
            f"{flag}={given} cannot be written: {why}; {todo or 'name a file you can write'}"
        )


def no_space_left(e: BaseException) -> str | None:
    """The path a write failed on when `e` (or an exception it was raised from) is a full disk
    (ENOSPC, also as TensorStore reports it from Orbax's writer threads); None for any other error.
    A checkpoint's temporary directory is named as its step directory."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e)
        if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or (
            "No space left on device" in text or "os_error_code='28'" in text
        ):
            if isinstance(e, OSError) and e.filename:
                path = str(e.filename)
            else:
                files = re.findall(r'file "([^"]+)"', text) or re.findall(
                    r'Failed writing: "([^"]+)"', text
                )
                path = files[0] if files else ""
            return re.sub(r"\.orbax-checkpoint-tmp.*$", "", path)
        e = e.__cause__ or e.__context__
    return None


def describe_error(e: BaseException) -> str:
    """One line of an Orbax / TensorStore error: for a file it could not read, the status, the
    file and the innermost cause (`DATA_LOSS reading .../state/d/0a1b...: Error decoding b-tree
    node`), not the whole TensorStore spec it appends."""
    text = (str(e).strip() or type(e).__name__).split(" [tensorstore_spec")[0]
    files = re.findall(r'file "([^"]+)"', text)
    if files:
        code = re.match(r"([A-Z_]+): ", text)
        cause = text.split(f'file "{files[-1]}"', 1)[1].lstrip(": ") or "unreadable"
        text = f"{code.group(1) + ' ' if code else ''}reading {files[-1]}: {cause}"
    line = text.splitlines()[0]
    return line if len(line) <= 400 else line[:397] + "..."


class Checkpointer:
    """Orbax save / restore of train states under `workdir/checkpoints/{latest,best}`.

    `latest` keeps the last `keep` saves (so the newest is never deleted), `best` the single best by
    validation accuracy. Each save holds the train state's arrays (`state`), a small JSON of
    host-side state (`meta`: epoch, plateau schedule, best accuracy) and the checksums of both
    (`integrity`, see jaxcnn.integrity). Orbax writes each step into a temporary directory and
    renames it when complete, so a crash never leaves a half-written checkpoint that a resume
    would read; every restore verifies the checksums before the state is used, so a checkpoint
    damaged afterwards is a `CheckpointDamagedError`, never loaded.

    Args:
        workdir: the run directory.
        keep: how many of the latest checkpoints to keep.
        create: create the directories (False to read a finished run without writing into it).
        checksums: write and verify checksums (False only to measure what they cost).
    """

    def __init__(
        self, workdir: PathLike, keep: int = 3, *, create: bool = True, checksums: bool = True
    ):
        self.root = as_path(workdir) / CHECKPOINTS
        self.checksums = checksums
        self.keep = max(1, keep)
        self._managers = {
            name: ocp.CheckpointManager(
                self.root / name,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=max(1, keep) if name == "latest" else 1,
                    create=create,
                    # The temporary directories of saves a kill -9 interrupted are removed when
                    # the run starts again; only on a local disk, where they are recognisable
                    # by name (in a bucket Orbax would count any step without a commit file,
                    # even one copied in by hand, as temporary: google/orbax#394).
                    cleanup_tmp_directories=create and not is_url(workdir),
                    # The two managers save the same step at an eval: without distinct barrier
                    # names their multi-process barriers collide ("Barrier ... is already
                    # ongoing") and a two-process run aborts at its first evaluation.
                    multiprocessing_options=ocp.options.MultiprocessingOptions(
                        barrier_sync_key_prefix=name
                    ),
                ),
                item_names=("state", "meta", INTEGRITY),
            )
            for name in SERIES
        }

    @property
    def latest(self) -> ocp.CheckpointManager:
        return self._managers["latest"]

    @property
    def best(self) -> ocp.CheckpointManager:
        return self._managers["best"]

    def _args(self, state: dict[str, Any], meta: dict[str, Any]) -> ocp.args.Composite:
        items = {"state": ocp.args.StandardSave(state)}
        if self.checksums:
            meta = meta | {INTEGRITY: integrity.FORMAT}
            items[INTEGRITY] = ocp.args.JsonSave(integrity.make_manifest(state, meta))
        return ocp.args.Composite(**items, meta=ocp.args.JsonSave(meta))

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any], *, best: bool = False):
        """Saves `state` (a pytree of arrays) and `meta` (JSON) as `step`; also as best if asked.

        The checksums are computed here, on the host copy of the arrays, before Orbax's
        asynchronous write starts."""
        args = None
        if step not in self.latest.all_steps():
            args = self._args(state, meta)
            self.latest.save(step, args=args)
        # A run resumed before an evaluation it had already saved as best (killed between the
        # two saves of that step) saves the same state again: Orbax refuses to overwrite a step.
        if best and step not in self.best.all_steps():
            self.best.save(step, args=args or self._args(state, meta), force=True)

    def step_dir(self, step: int, which: str = "latest") -> epath.Path:
        return epath.Path(self._managers[which].directory) / str(step)

    def saved_keys(self, step: int, which: str = "latest") -> set[str]:
        """The top-level keys of the state saved at `step` (read from its metadata, no arrays)."""
        return set(self._state_metadata(step, which).keys())

    def _state_metadata(self, step: int, which: str) -> Any:
        directory = self.step_dir(step, which)
        try:
            return ocp.StandardCheckpointHandler().metadata(directory / "state")
        except Exception as e:  # noqa: BLE001 - whatever Orbax raises on a damaged file
            raise CheckpointDamagedError(
                step, directory, f"its array metadata (state/) cannot be read: {describe_error(e)}"
            ) from e

    def latest_step(self, which: str = "latest") -> int | None:
        """The newest committed step of a series (None when it has no checkpoint)."""
        return self._managers[which].latest_step()

    def candidate_steps(self, which: str = "latest") -> list[int]:
        """Every step directory of a series, newest first: the committed ones and any that lost
        its commit marker (which a restore reports as damaged rather than skipping silently)."""
        series = epath.Path(self._managers[which].directory)
        found = set(self._managers[which].all_steps())
        if series.is_dir():
            found |= {int(p.name) for p in series.iterdir() if p.name.isdigit() and p.is_dir()}
        return sorted(found, reverse=True)

    def restore(
        self,
        target: dict[str, Any] | None = None,
        step: int | None = None,
        *,
        which: str = "latest",
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Restores a checkpoint onto the structure, dtypes and shardings of `target`, verified.

        Args:
            target: a pytree like the saved state (concrete arrays or ShapeDtypeStructs with
                shardings), e.g. a freshly initialised state; None restores the saved tree as
                is, on this host's first device (whatever devices saved it: a run trained on a
                GPU or a pod restores on a laptop).
            step: which step (default: the newest committed one).
            which: "latest" or "best".

        Returns:
            (state, meta).

        Raises:
            FileNotFoundError: the series has no checkpoint.
            CheckpointDamagedError: the checkpoint is incomplete, unreadable or does not match
                its checksums (checkpoints from before jaxcnn 0.3 have none: they are checked
                for completeness and readability only).
        """
        mgr = self._managers[which]
        step = mgr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no {which} checkpoint in {mgr.directory}")
        directory = self.step_dir(step, which)

        def damaged(detail: str) -> CheckpointDamagedError:
            return CheckpointDamagedError(step, directory, detail)

        if not directory.is_dir():
            raise damaged("its directory is missing")
        if not (directory / COMMIT_MARKER).exists():
            raise damaged(f"it has no commit marker ({COMMIT_MARKER}): its save never finished")
        try:  # Orbax only logs a damaged step record and goes on: here it is damage
            json.loads((directory / STEP_METADATA).read_text())
        except FileNotFoundError as e:
            raise damaged(f"its {STEP_METADATA} is missing") from e
        except (ValueError, UnicodeDecodeError) as e:
            raise damaged(f"its {STEP_METADATA} is not valid JSON: {describe_error(e)}") from e
        items = ["state", "meta"]
        for item in items:
            if not (directory / item).is_dir():
                raise damaged(f"its {item}/ item is missing")
        meta = self._read_json_item(step, which, "meta")
        manifest = None
        if meta.get(INTEGRITY) is not None:
            items.append(INTEGRITY)
            if not (directory / INTEGRITY).is_dir():
                raise damaged(f"its checksums ({INTEGRITY}/) are missing")
            manifest = self._read_json_item(step, which, INTEGRITY)
        for item in items:
            if not (directory / item / COMMIT_MARKER).exists():
                raise damaged(f"its {item}/ item has no commit marker ({COMMIT_MARKER})")
        saved = self._state_metadata(step, which)
        try:
            if manifest is not None:
                integrity.check_manifest(manifest)
                integrity.check_meta(manifest, meta)
                # Shapes first: a metadata file that declares a huge array is refused here,
                # before Orbax allocates it.
                integrity.check_layout(manifest, saved)
        except integrity.IntegrityError as e:
            raise damaged(str(e)) from e
        if target is None:
            # Without a target Orbax puts each array back on the device it was saved from and
            # refuses another topology ("Topology mismatch"): read the shapes, place them here.
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            target = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved
            )
        try:
            state = mgr.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(target)),
            )["state"]
        except Exception as e:  # noqa: BLE001 - tensorstore / Orbax errors of a damaged file
            raise damaged(f"its arrays (state/) cannot be read: {describe_error(e)}") from e
        if manifest is not None:
            try:
                integrity.check_arrays(manifest, state)
            except integrity.IntegrityError as e:
                raise damaged(str(e)) from e
        meta.pop(INTEGRITY, None)  # the format marker is the checkpointer's, not the caller's
        return state, meta

    def _read_json_item(self, step: int, which: str, item: str) -> dict[str, Any]:
        directory = self.step_dir(step, which)
        try:
            out = self._managers[which].restore(
                step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()})
            )[item]
        except Exception as e:  # noqa: BLE001 - a truncated or garbled JSON file
            raise CheckpointDamagedError(
                step, directory, f"its {item}/ item cannot be read: {describe_error(e)}"
            ) from e
        if not isinstance(out, dict):
            raise CheckpointDamagedError(step, directory, f"its {item}/ item is not a JSON object")
        return dict(out)

    def read_meta(self, step: int | None = None, which: str = "latest") -> dict[str, Any]:
        """The JSON metadata of a save (no arrays read), checked against its checksum."""
        mgr = self._managers[which]
        step = mgr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no {which} checkpoint in {mgr.directory}")
        meta = self._read_json_item(step, which, "meta")
        if meta.get(INTEGRITY) is not None:
            manifest = self._read_json_item(step, which, INTEGRITY)
            try:
                integrity.check_manifest(manifest)
                integrity.check_meta(manifest, meta)
            except integrity.IntegrityError as e:
                raise CheckpointDamagedError(step, self.step_dir(step, which), str(e)) from e
        meta.pop(INTEGRITY, None)
        return meta

    def restore_newest_intact(
        self,
        target: dict[str, Any] | None = None,
        *,
        which: str = "latest",
        on_damaged: Callable[[CheckpointDamagedError], None] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], int] | None:
        """(state, meta, step) of the newest checkpoint of a series that verifies, or None when
        the series has none. Each damaged one on the way is passed to `on_damaged` (which may
        report it or move it aside) and skipped.

        Raises:
            CheckpointDamagedError: every checkpoint of the series is damaged (the newest one's
                error, saying how many were tried).
        """
        steps = self.candidate_steps(which)
        first = None
        for step in steps:
            try:
                state, meta = self.restore(target, step, which=which)
                return state, meta, step
            except CheckpointDamagedError as e:
                first = first or e
                if on_damaged is not None:
                    on_damaged(e)
        if first is None:
            return None
        raise CheckpointDamagedError(
            first.step,
            first.directory,
            f"{first.detail}; and no older checkpoint of {self.root / which} is intact "
            f"({len(steps)} tried)",
        )

    def set_aside(
        self, errors: list[CheckpointDamagedError], which: str = "latest"
    ) -> list[epath.Path]:
        """Moves damaged checkpoints out of their series into `checkpoints/damaged/` (kept for a
        post-mortem, never deleted): Orbax would otherwise count one as the newest step, and a
        resumed run could not save the steps before it. Process 0 moves them while the others
        wait (every process must call this, with the same errors). Returns where each went."""
        if not errors:
            return []
        multi = jax.process_count() > 1
        if multi:  # every process has finished reading before anything moves
            ocp.multihost.sync_global_processes(f"jaxcnn_set_aside_start_{which}", timeout=300)
        dest_dir = self.root / DAMAGED
        out = []
        for error in errors:
            dest = dest_dir / f"{which}-{error.step}"
            n = 1
            while dest.exists():
                n += 1
                dest = dest_dir / f"{which}-{error.step}.{n}"
            if jax.process_index() == 0:
                _move_tree(epath.Path(error.directory), dest)
            out.append(dest)
        if multi:
            ocp.multihost.sync_global_processes(f"jaxcnn_set_aside_end_{which}", timeout=300)
        self._managers[which].reload()
        return out

    def enforce_retention(self) -> None:
        """Deletes the oldest latest-series checkpoints beyond `keep` (Orbax does so only after a
        save: a run killed between a commit and that deletion, then resumed at its end, would
        keep one more for good). Never the newest; a no-op when within the limit."""
        steps = sorted(self.latest.all_steps())
        for step in steps[: max(0, len(steps) - self.keep)]:
            self.latest.delete(step)

    def wait(self) -> None:
        """Blocks until asynchronous saves have been committed."""
        for mgr in self._managers.values():
            mgr.wait_until_finished()

    def close(self) -> None:
        for mgr in self._managers.values():
            mgr.close()


class RunDir:
    """A run directory: its config, metrics and checkpoints (see the module docstring).

    Args:
        workdir: the directory (local path or URL); nothing is created until something is written.
    """

    def __init__(self, workdir: PathLike):
        self.path = as_path(workdir)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def config_path(self) -> epath.Path:
        return self.path / CONFIG

    def check_not_a_file(self) -> None:
        """RunDirError when the workdir names an existing file, which cannot hold a run."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--workdir={self.path} is a file, not a directory; name a directory")

    def read_config(self) -> dict[str, Any]:
        """The run's `config.json`; RunDirError when the directory or the file is missing or bad."""
        if not self.path.is_dir():
            raise RunDirError(
                f"no run directory at {self.path} (train one with `python -m jaxcnn.train`)"
            )
        if not self.config_path.exists():
            raise RunDirError(
                f"{self.path} is not a run directory: it has no {CONFIG} (written by "
                "`python -m jaxcnn.train`)"
            )
        try:
            cfg = json.loads(self.config_path.read_text())
        except json.JSONDecodeError as e:
            raise RunDirError(f"{self.config_path} is not valid JSON: {e}") from e
        missing = [k for k in ("arch", "dataset") if not cfg.get(k)]
        if missing:
            raise RunDirError(f"{self.config_path} lacks {', '.join(missing)}")
        return cfg

    def read_dataset(self) -> dict[str, Any] | None:
        """The run's `dataset.json` (a folder dataset's record), None when it has none."""
        path = self.path / DATASET
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise RunDirError(
                f"{path} is not valid JSON ({e}); restore it or use a new --workdir"
            ) from e

    def write_dataset(self, record: dict[str, Any]) -> None:
        """Writes `dataset.json` (whole or not at all)."""
        write_json_atomic(self.path / DATASET, record)

    def write_config(self, cfg: dict[str, Any]) -> None:
        """Writes `config.json` (whole or not at all)."""
        write_json_atomic(self.config_path, cfg)

    def check_resumable(self, cfg: dict[str, Any]) -> None:
        """RunDirError when the directory holds a run whose `RESUME_KEYS` settings differ."""
        if not self.config_path.exists():
            return
        saved = json.loads(self.config_path.read_text())
        diff = [k for k in RESUME_KEYS if saved.get(k) != cfg.get(k)]
        if diff:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {cfg.get(k)!r}" for k in diff)
            raise RunDirError(
                f"{self.path} holds a run with other settings ({detail}); resume it with the same "
                "settings or use a new --workdir"
            )

    def has_checkpoint(self, which: str = "latest") -> bool:
        """Whether the series holds a finished save (checked without creating anything)."""
        series = self.path / CHECKPOINTS / which
        return series.is_dir() and any(p.name.isdigit() for p in series.iterdir())

    def checkpointer(self, keep: int = 3, *, create: bool = True) -> Checkpointer:
        return Checkpointer(self.path, keep, create=create)

    def metrics(self, enabled: bool = True) -> MetricsLog:
        return MetricsLog(self.path, enabled)

    def checkpoint_meta(self, which: str = "latest") -> dict[str, Any]:
        """The JSON metadata of the newest intact save of a series (no arrays are read): its
        step, epoch, and since jaxcnn 0.2 its `data` (dataset, class names, input size,
        statistics). Checked against its checksum.

        Raises:
            RunDirError: the series has no checkpoint.
            CheckpointDamagedError: no save of the series has intact metadata.
        """
        self._check_series(which)
        ckpt = self.checkpointer(create=False)
        try:
            first = None
            for step in ckpt.candidate_steps(which):
                try:
                    return ckpt.read_meta(step, which)
                except CheckpointDamagedError as e:
                    first = first or e
            raise first or RunDirError(f"no {which} checkpoint in {self.path / CHECKPOINTS}")
        finally:
            ckpt.close()

    def _check_series(self, which: str) -> None:
        if which not in SERIES:
            raise RunDirError(f"unknown checkpoint {which!r}; valid: {', '.join(SERIES)}")
        if not self.has_checkpoint(which):
            raise RunDirError(f"no {which} checkpoint in {self.path / CHECKPOINTS / which}")

    def restore_variables(
        self,
        which: str = "latest",
        weights: str = "raw",
        *,
        on_damaged: Callable[[CheckpointDamagedError], None] | None = None,
    ) -> tuple[dict[str, Any], int]:
        """(`{"params", "batch_stats"}` of the newest intact save of a series, its step), on
        this host, verified against the checkpoint's checksums.

        A damaged newest save is skipped for the one before it (never loaded, never moved:
        reading a run changes nothing in it), with a line on stderr saying so, or a call of
        `on_damaged`.

        Args:
            which: the series, "latest" or "best".
            weights: "raw", the trained weights, or "ema", their moving average (runs trained
                with `--config.ema_decay`).
            on_damaged: called with each damaged checkpoint skipped (default: a warning line).

        Raises:
            RunDirError: the series has no checkpoint, or no EMA when `weights="ema"`.
            CheckpointDamagedError: no checkpoint of the series is intact.
        """
        self._check_series(which)
        if weights not in WEIGHTS:
            raise RunDirError(f"unknown --weights {weights!r}; valid: {', '.join(WEIGHTS)}")
        ckpt = self.checkpointer(create=False)
        try:
            tree, _, step = ckpt.restore_newest_intact(
                None, which=which, on_damaged=on_damaged or warn_damaged
            )
        finally:
            ckpt.close()
        if weights == "ema":
            if "ema" not in tree:
                raise RunDirError(
                    f"the run in {self.path} keeps no EMA of its weights (it was trained without "
                    "--config.ema_decay); use --weights=raw"
                )
            tree = tree["ema"]
        variables = {"params": tree["params"]}
        if tree.get("batch_stats"):
            variables["batch_stats"] = tree["batch_stats"]
        return variables, int(step)


def warn_damaged(error: CheckpointDamagedError) -> None:
    """The line a reader of a run prints for a damaged checkpoint it skips."""
    print(f"warning: {error}; skipped, trying an older one", file=sys.stderr)
