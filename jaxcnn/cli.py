"""What every command shares: its flags' home, the run flags, one-line errors, process set-up.

Each command module (`jaxcnn/train.py`, `features.py`, ...) has the same shape: a docstring with
the command and what it writes, `define_flags(flag_values)` returning a `Flags` namespace,
`main(argv, f) -> exit status`, and `if __name__ == "__main__": cli.run(define_flags, main)`
(a command that takes positional arguments says `POSITIONAL = True` and passes it to `run`).
Flags are defined into a `FlagValues` given by the caller, never at import time, so that importing
a command defines nothing and tests can run any command in-process (`invoke`) as often as they like.

A user's mistake (an unknown name, a bad value, a missing run directory, a weights file that does
not fit) ends with one line on stderr, `error: ...`, and exit status 2; `JAXCNN_DEBUG=1` shows the
traceback instead.
"""

import functools
import os
import sys
import types
from collections.abc import Callable
from typing import Any

from absl import app, flags

from jaxcnn import runtime

Flags = types.SimpleNamespace
Define = Callable[[flags.FlagValues], Flags]
Main = Callable[[list[str], Flags], int]


class UsageError(ValueError):
    """A command line that cannot be run as given; the message says what is wrong and what to do."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a user's input can cause: printed as one line, exit status 2.

    `ValueError` covers the library's own (unknown architecture, bad settings, a run directory that
    does not fit, unusable initial weights, a mismatching state dict); the dataset errors are
    added here, imported only when a command has started.
    """
    errors: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError)
    data = sys.modules.get("jaxcnn.data.sources")
    if data is not None:
        errors += (data.DatasetUnavailableError,)
    return errors


def fail(message: str, status: int = 2) -> int:
    """Prints `error: message` on stderr and returns `status` (for `return cli.fail(...)`)."""
    print(f"error: {message}", file=sys.stderr)
    return status


def guard(main: Main, argv: list[str], f: Flags, *, positional: bool = False) -> int:
    """Runs `main(argv, f)` after the process set-up; a user error becomes one line and status 2.

    Args:
        main: the command's main.
        argv: the program name and the arguments left after the flags.
        f: the command's flags.
        positional: whether the command takes positional arguments (else they are refused).
    """
    if len(argv) > 1 and not positional:
        return fail(f"unexpected arguments: {' '.join(argv[1:])}")
    runtime.configure_xla_cpu()  # before JAX starts its backends
    runtime.configure_storage()
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax logs every save and restore at INFO
    try:
        return main(argv, f)
    except user_errors() as e:
        if os.environ.get("JAXCNN_DEBUG") == "1":
            raise
        return fail(str(e))


def run(define: Define, main: Main, *, positional: bool = False) -> None:
    """The `__main__` of a command: absl parses the flags, `guard` runs `main`, the process exits."""
    f = define(flags.FLAGS)
    # absl's --help lists the flags the main module defined; those a shared helper defined
    # (define_run_flags: --workdir, --checkpoint, ...) count as cli.py's and would be missing.
    for holder in vars(f).values():
        if isinstance(holder, flags.FlagHolder):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[holder.name])
    app.run(lambda argv: sys.exit(guard(main, argv, f, positional=positional)))


def invoke(command: Any, argv: list[str]) -> int:
    """Runs a command module in this process with fresh flags (for tests): its exit status.

    Args:
        command: a command module (`jaxcnn.features`, ...).
        argv: the arguments after the program name.
    """
    fv = flags.FlagValues()
    f = command.define_flags(fv)
    try:
        rest = fv([command.__name__, *argv])
    except flags.Error as e:
        return fail(str(e))
    return guard(command.main, rest, f, positional=getattr(command, "POSITIONAL", False))


def definers(fv: flags.FlagValues) -> Flags:
    """`flags.DEFINE_string` / `_integer` / `_float` / `_bool` / `_enum` with `flag_values=fv`
    bound: `d = definers(fv); d.integer("k", 8, "Neighbours per query.")`."""
    kinds = {"string": flags.DEFINE_string, "integer": flags.DEFINE_integer}
    kinds |= {"float": flags.DEFINE_float, "bool": flags.DEFINE_bool, "enum": flags.DEFINE_enum}
    return Flags(**{k: functools.partial(fn, flag_values=fv) for k, fn in kinds.items()})


def define_run_flags(
    fv: flags.FlagValues, *, batch_size: bool = True, weights: bool = True
) -> dict[str, Any]:
    """The flags of the commands that read a trained run: --workdir, --checkpoint, --data_dir,
    (unless `weights=False`) --weights=raw|ema and (unless `batch_size=False`) --batch_size.
    Returns them by name, for a `Flags` namespace."""
    d = definers(fv)
    out = {
        "workdir": d.string("workdir", None, "Run directory written by jaxcnn.train."),
        "checkpoint": d.enum(
            "checkpoint", "latest", ["latest", "best"], "Which weights: latest or best."
        ),
        "data_dir": d.string("data_dir", None, "TFDS data dir (default: the run's)."),
    }
    if weights:
        out["weights"] = d.enum("weights", "raw", ["raw", "ema"], WEIGHTS_HELP)
    if batch_size:
        out["batch_size"] = d.integer("batch_size", 256, "Images per forward pass.")
    return out


WEIGHTS_HELP = (
    "Which weights of the checkpoint: raw (the trained ones) or ema (their moving average, "
    "kept by runs trained with --config.ema_decay)."
)


def split_weights(workdir: str | None, weights: str | None) -> tuple[str | None, str]:
    """(published weights, which weights of the run) of predict's / export's `--weights`, which
    names published weights (torchvision:NAME, ...) without `--workdir` and raw | ema with it.

    Raises:
        UsageError: neither or both of a run and published weights.
    """
    run_choice = weights in (None, "raw", "ema")
    if workdir and not run_choice:
        raise UsageError(
            f"--weights={weights} names published weights; with --workdir it takes raw or ema"
        )
    if not workdir and weights in ("raw", "ema"):
        raise UsageError(f"--weights={weights} reads a trained run: give --workdir too")
    if not workdir and run_choice:
        raise UsageError(
            "pass either --workdir (a trained run) or --weights (published weights: "
            "torchvision:NAME, timm:NAME)"
        )
    return (None, weights or "raw") if workdir else (weights, "raw")


def check_positive(f: Flags, *names: str) -> None:
    """UsageError naming the first of `names` whose flag is set and not positive."""
    for name in names:
        value = getattr(f, name).value
        if value is not None and value <= 0:
            raise UsageError(f"--{name} must be positive, got {value}")


def require_run(workdir: str | None) -> dict[str, Any]:
    """The config of the run at `--workdir`, read before JAX and TensorFlow start (UsageError if
    there is none)."""
    from jaxcnn import rundir

    if not workdir:
        raise UsageError("--workdir is required (a run directory of jaxcnn.train)")
    return rundir.RunDir(workdir).read_config()
