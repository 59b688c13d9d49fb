"""Driver processes for tests/training/test_faults.py (a script, not a test module).

    python fault_driver.py kill --fault=KIND --series=latest --step=N --nth=K --record=PATH \
        -- <jaxcnn.train flags>
    python fault_driver.py soak --workdir=DIR --config=JSON --out=PATH

`kill` runs the real trainer command (`jaxcnn.train`'s own flags and main, in this process) after
wrapping a few Orbax internals so that the process SIGKILLs itself at one chosen point of one
chosen save; nothing of the save is faked, it is cut short. Just before dying it writes a JSON
record (what it hit, the step the loop had reached, the checkpoint folders on disk) to `--record`.
The faults:

    before_rename  the step's temporary directory is complete (commit_success.txt written) but not
                   yet renamed into place (orbax's AtomicRenameTemporaryPath.finalize)
    after_rename   right after that rename, before anything else of the save's finalization
    mid_arrays     while the `state` item's arrays are written: after the K-th array's TensorStore
                   write finished (its data file is on disk, the others are not all written)
    arrays_written after every array of the item is written, before the item's _METADATA, its
                   rename and the step's finalization
    mid_delete     while the retention policy (keep_checkpoints) deletes old step N: after K files
                   or folders of it were unlinked
    best_gap       in the `best` save of step N, after the `latest` save of the same step has
                   committed and before the best one is renamed into place
    latest_gap     the other way round: `best` of step N committed, `latest` of N not renamed yet

With `--fault=none` nothing is hit (a run that ends normally or is killed from outside).

`soak` runs `jaxcnn.training.loop.train_and_evaluate(cfg, workdir, should_stop=...)` with `cfg` =
the default config updated by `--config` and samples, after every step, the host RSS, the open
file descriptors, the threads, the checkpoint folders on disk and the XLA compilations so far
(`CompileCounter`); it writes them to `--out` as JSON.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time

TMP_SUFFIX = ".orbax-checkpoint-tmp"
FAULTS = (
    "none",
    "before_rename",
    "after_rename",
    "mid_arrays",
    "arrays_written",
    "mid_delete",
    "best_gap",
    "latest_gap",
)
# The faults between the `latest` and the `best` save of one step, and the series whose rename
# each stops (once the other series' save of that step has committed).
GAPS = {"best_gap": "best", "latest_gap": "latest"}


def checkpoint_listing(workdir: str) -> dict[str, list[str]]:
    """The entries of checkpoints/{latest,best} (sorted names; [] when the folder is missing)."""
    out = {}
    for series in ("latest", "best"):
        d = os.path.join(workdir, "checkpoints", series)
        out[series] = sorted(os.listdir(d)) if os.path.isdir(d) else []
    return out


class Progress:
    """The last step the training loop reported (through its `should_stop` callback)."""

    step = 0


def _track_progress() -> None:
    """Wraps `loop.train_and_evaluate` so that its `should_stop` also records the step reached
    (the command's own callback, SIGINT / SIGTERM, still decides)."""
    from jaxcnn.training import loop

    original = loop.train_and_evaluate

    def wrapped(cfg, workdir, *, should_stop=None):
        def stop(step):
            Progress.step = step
            return bool(should_stop and should_stop(step))

        return original(cfg, workdir, should_stop=stop)

    loop.train_and_evaluate = wrapped


class Killer:
    """Installs the wrappers of one fault and dies when it is reached."""

    def __init__(self, args, workdir: str):
        self.fault, self.step, self.nth = args.fault, args.step, args.nth
        self.series = GAPS.get(args.fault, args.series)
        self.record, self.workdir = args.record, workdir
        self.count = 0

    def die(self, **detail) -> None:
        record = {
            "fault": self.fault,
            "series": self.series,
            "step": self.step,
            "progress": Progress.step,
            "thread": threading.current_thread().name,
            "on_disk": checkpoint_listing(self.workdir),
            **detail,
        }
        with open(self.record, "w") as f:
            json.dump(record, f)
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached: SIGKILL cannot be caught

    def is_target(self, path) -> bool:
        """Whether `path` is the step folder (or its temporary folder) of the target save."""
        name = os.path.basename(str(path))
        parent = os.path.basename(os.path.dirname(str(path)))
        return parent == self.series and name in (
            str(self.step),
            f"{self.step}{TMP_SUFFIX}",
        )

    def in_target(self, path: str) -> bool:
        """Whether `path` lies inside the target save's temporary folder."""
        marker = os.path.join(self.series, f"{self.step}{TMP_SUFFIX}") + os.sep
        return marker in path

    def install(self) -> None:
        if self.fault in ("before_rename", "after_rename", *GAPS):
            self._wrap_rename()
        elif self.fault in ("mid_arrays", "arrays_written"):
            self._wrap_array_writes()
        elif self.fault == "mid_delete":
            self._wrap_delete()

    def _wrap_rename(self) -> None:
        """The step folder's rename in AtomicRenameTemporaryPath.finalize goes through
        `atomicity.async_path.rename`: a stand-in module object for `atomicity` alone."""
        from orbax.checkpoint._src.path import async_path, atomicity

        killer = self

        class AsyncPath:
            def __getattr__(self, name):
                return getattr(async_path, name)

            async def rename(self, src, dst):
                target = killer.is_target(dst)
                if target and killer.fault in GAPS:
                    # Wait for the other series' save of the same step to commit, then die.
                    other = "latest" if killer.fault == "best_gap" else "best"
                    done = os.path.join(killer.workdir, "checkpoints", other, str(killer.step))
                    deadline = time.monotonic() + 30
                    while not os.path.isdir(done) and time.monotonic() < deadline:
                        await asyncio.sleep(0.005)
                    killer.die(other_committed=os.path.isdir(done), src=str(src))
                if target and killer.fault == "before_rename":
                    killer.die(src=str(src), tmp_files=sorted(os.listdir(src)))
                out = await async_path.rename(src, dst)
                if target and killer.fault == "after_rename":
                    killer.die(dst=str(dst))
                return out

        atomicity.async_path = AsyncPath()

    def _wrap_array_writes(self) -> None:
        """The arrays of an item are written by `jax_array_handlers._async_serialize_replica_slices`
        (one batch), one `serialization.async_serialize_from_host` call per array; both are looked
        up on their modules at call time, so wrappers there see every write."""
        from orbax.checkpoint._src.serialization import jax_array_handlers, serialization

        killer = self
        original_write = serialization.async_serialize_from_host
        original_batch = jax_array_handlers._async_serialize_replica_slices

        async def write(rslices, tensorstore_spec, **kw):
            out = await original_write(rslices, tensorstore_spec, **kw)
            path = json.dumps(tensorstore_spec.get("kvstore", {}))  # its path, however nested
            if killer.fault == "mid_arrays" and killer.in_target(path):
                killer.count += 1
                if killer.count == killer.nth:
                    killer.die(arrays_written=killer.count, kvstore=path)
            return out

        async def batch(values, infos, args, **kw):
            out = await original_batch(values, infos, args, **kw)
            parent = str(infos[0].parent_dir) + os.sep if infos else ""
            if killer.fault == "arrays_written" and killer.in_target(parent):
                killer.die(arrays_written=len(infos), parent_dir=parent)
            return out

        serialization.async_serialize_from_host = write
        jax_array_handlers._async_serialize_replica_slices = batch

    def _wrap_delete(self) -> None:
        """Old steps are removed by `deleter.PathDeleter.delete` (shutil.rmtree with 2 or 3 cores,
        Orbax's parallel deleter, os.unlink per file then rmtree, with more): os.unlink /
        os.remove / os.rmdir count the entries removed while the target step is deleted, and the
        K-th kills."""
        from orbax.checkpoint._src.path import deleter

        killer = self
        original = deleter.PathDeleter.delete
        lock = threading.Lock()

        def counting(fn):
            def op(*a, **kw):
                out = fn(*a, **kw)
                with lock:
                    killer.count += 1
                    if killer.count == killer.nth:
                        killer.die(entries_removed=killer.count)
                return out

            return op

        def delete(self, path, **kw):
            if not killer.is_target(path) or kw.get("destination") is not None:
                return original(self, path, **kw)
            saved = os.unlink, os.remove, os.rmdir
            os.unlink, os.remove, os.rmdir = (counting(f) for f in saved)
            try:
                return original(self, path, **kw)
            finally:
                os.unlink, os.remove, os.rmdir = saved

        deleter.PathDeleter.delete = delete


def kill_main(args, train_argv: list[str]) -> int:
    from jaxcnn import cli, runtime

    runtime.configure_xla_cpu()  # as `python -m jaxcnn.train` does, before JAX starts
    runtime.configure_storage()
    from jaxcnn import train

    workdir = next(a.split("=", 1)[1] for a in train_argv if a.startswith("--workdir="))
    _track_progress()
    Killer(args, workdir).install()
    return cli.invoke(train, train_argv)


class CompileCounter(logging.Handler):
    """Counts XLA compilations two ways: JAX's monitoring event for a backend compilation
    (`/jax/core/compile/backend_compile_duration`, recorded around every compile, a persistent
    cache hit included) and, with `jax_log_compiles` on, JAX's "Finished XLA compilation of ..."
    log lines; the two lists must agree."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        super().__init__(logging.WARNING)
        self.events: list[str] = []
        self.logged: list[str] = []

    def on_event(self, event: str, duration: float, **kw) -> None:
        if event == self.EVENT:
            self.events.append(str(kw.get("fun_name", "?")))

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Finished XLA compilation of "):
            self.logged.append(message.split(" of ", 1)[1].split(" in ", 1)[0])


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def soak_main(args) -> int:
    from jaxcnn import runtime

    runtime.configure_xla_cpu()
    runtime.configure_storage()
    import jax

    counter = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter.on_event)
    jax.config.update("jax_log_compiles", True)
    jax_logger = logging.getLogger("jax")
    jax_logger.addHandler(counter)
    jax_logger.setLevel(logging.WARNING)
    jax_logger.propagate = False  # counted, not printed

    from jaxcnn.config import get_config
    from jaxcnn.training import loop

    cfg = get_config()
    cfg.update(json.loads(args.config))
    samples = []

    def sample(step: int) -> bool:
        listing = checkpoint_listing(args.workdir)
        samples.append(
            {
                "step": step,
                "time": time.perf_counter(),
                "rss": rss_bytes(),
                "fds": len(os.listdir("/proc/self/fd")),
                "threads": threading.active_count(),
                "compiles": len(counter.events),
                "compiles_logged": len(counter.logged),
                "latest": [n for n in listing["latest"] if n.isdigit()],
                "best": [n for n in listing["best"] if n.isdigit()],
                "tmp": [f"{s}/{n}" for s, ns in listing.items() for n in ns if TMP_SUFFIX in n],
            }
        )
        return False

    t0 = time.perf_counter()
    result = loop.train_and_evaluate(cfg, args.workdir, should_stop=sample)
    with open(args.out, "w") as f:
        json.dump(
            {
                "samples": samples,
                "compiled": counter.events,
                "compiled_logged": counter.logged,
                "step": result.step,
                "eval_accuracy": result.eval_accuracy,
                "seconds": time.perf_counter() - t0,
            },
            f,
        )
    return 0


def main() -> int:
    argv = sys.argv[1:]
    rest = []
    if "--" in argv:
        argv, rest = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    kill = sub.add_parser("kill")
    kill.add_argument("--fault", choices=FAULTS, default="none")
    kill.add_argument("--series", choices=("latest", "best"), default="latest")
    kill.add_argument("--step", type=int, default=0, help="the save (or deleted step) to hit")
    kill.add_argument("--nth", type=int, default=1, help="mid_arrays / mid_delete: after K")
    kill.add_argument("--record", default=os.devnull)
    soak = sub.add_parser("soak")
    soak.add_argument("--workdir", required=True)
    soak.add_argument("--config", required=True, help="config overrides, as JSON")
    soak.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.mode == "kill":
        return kill_main(args, rest)
    return soak_main(args)


if __name__ == "__main__":
    sys.exit(main())
