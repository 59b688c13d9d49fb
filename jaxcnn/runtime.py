"""Process-level set-up for the command-line programs (never imported by library code).

Storage: run directories and data may live in a bucket (gs://...). `configure_storage` sends
`etils.epath`'s gs:// paths through fsspec / gcsfs rather than TensorFlow's own GCS client, because
that is the client the tests exercise against a local GCS emulator (TensorFlow's client has its
endpoint compiled in and cannot be pointed at one), and turns off gcsfs's directory-listing cache,
which would otherwise let one host of a pod see a stale list of another host's checkpoints.

XLA's CPU flags change training speed on CPU by 2-3x (benchmarks/RESULTS.md has the measurements):
this jaxlib routes convolutions to YNNPACK by default, which is slower here than XLA's own kernels.
"""

import os

# Measured on jaxlib 0.10.2: forward conv 2.5x and 1x1 weight-gradient 6x faster without YNNPACK.
# Unknown XLA flags abort the process, so the flag is only added on the jaxlib line it was checked on.
# jaxlib 0.12.0.1 (Python 3.12) is left out on purpose. The flag still exists there and still moves
# the 51 YNNPACK fusions of ResNet-8's jitted forward+backward (13 of them convolutions) back to
# XLA's own kernels, but that gives no consistent speed-up. Measured 2026-12-01, 20 timed steps
# after warm-up, A/B interleaved, 3 rounds, median of the medians, CPU ms per step on one core:
# batch 64x28x28x3: 97.7 without the flag, 87.3 with it (-11%); the default job's 128x28x28x1:
# 198.8 without, 222.5 with (+12%); ResNet-20 at 128x28x28x1 (1 round of 6 steps): 631 either way.
# Wall times on two busy cores were too noisy to tell them apart (per-run medians of 6 runs each:
# 56-134 ms without the flag, 50-117 ms with it).
_CPU_FLAGS = {"0.10.": "--xla_cpu_experimental_ynn_fusion_type="}


def configure_xla_cpu() -> None:
    """Adds the measured-best XLA CPU flags to XLA_FLAGS, unless the user already set that flag.

    Must run before JAX initialises its backends (before the first computation); harmless on GPU/TPU
    hosts, where the CPU flags only affect the host platform. `JAXCNN_XLA_DEFAULTS=0` in the
    environment leaves XLA_FLAGS alone (to measure XLA's own defaults).
    """
    if os.environ.get("JAXCNN_XLA_DEFAULTS", "1") == "0":
        return
    try:
        from jaxlib import version
    except ImportError:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    for prefix, flag in _CPU_FLAGS.items():
        if version.__version__.startswith(prefix) and flag.split("=")[0] not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


def configure_storage() -> None:
    """gs:// through gcsfs, without a listing cache (see the module docstring); a user's own
    `EPATH_USE_TF` wins."""
    os.environ.setdefault("EPATH_USE_TF", "false")
    try:
        import fsspec
    except ImportError:
        return
    fsspec.config.conf.setdefault("gcs", {}).setdefault("use_listings_cache", False)


def quiet_background_errors() -> None:
    """Keeps the tracebacks of background threads off a command's output (not with --debug).

    When a checkpoint cannot be read or written (a damaged file, a full disk), Orbax and
    TensorStore fail in their own threads: Orbax logs each failure with its traceback, then
    raises it again where the program waits for the save or the restore, and the program turns it
    into one line. Left alone the same failure would come out a dozen times first: Orbax's log
    records, the asyncio tasks left unawaited ("Task exception was never retrieved", "Event loop
    is closed", reported through `sys.unraisablehook`), and any other thread's uncaught
    exception. Here a background thread's failure is one warning line, and the others are
    dropped: the error that matters reaches the program itself.
    """
    import logging
    import sys
    import threading

    sys.unraisablehook = lambda unraisable: None

    def thread_failed(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        first = (str(args.exc_value).strip().splitlines() or [""])[0][:300]
        print(
            f"warning: background thread {name} failed: {args.exc_type.__name__}: {first}",
            file=sys.stderr,
        )

    threading.excepthook = thread_failed
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)

    def not_orbax_failure(record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and "/orbax/" in record.pathname)

    logging.getLogger("absl").addFilter(not_orbax_failure)
