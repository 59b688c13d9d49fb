"""What every command shares: its flags' home, the run flags, one-line errors, process set-up.

Each command module (`jaxcnn/train.py`, `features.py`, ...) has the same shape: a docstring with
the command and what it writes, `define_flags(flag_values)` returning a `Flags` namespace,
`main(argv, f) -> exit status`, and `if __name__ == "__main__": cli.run(define_flags, main)`
(a command that takes positional arguments says `POSITIONAL = True` and passes it to `run`).
Flags are defined into a `FlagValues` given by the caller, never at import time, so that importing
a command defines nothing and tests can run any command in-process (`invoke`) as often as they like.

A user's mistake ends with one line on stderr, `error: ...`, and exit status 2, before anything is
written: an unknown flag or a bad flag value (absl's "Did you mean" kept), a `--config` file that is
missing or has no `get_config()`, an unknown name, a bad value, a missing run directory, a
`--workdir` / `--output` that is a file or cannot be written, a weights file that is malformed,
hostile or does not fit. Every command has `--debug` (as `JAXCNN_DEBUG=1` in the environment): the
full traceback instead of the one line.
"""

import functools
import os
import re
import sys
import traceback
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


DEBUG_HELP = (
    "Show the full traceback of a failure instead of the one `error: ...` line (the same as "
    "JAXCNN_DEBUG=1 in the environment)."
)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a user's input can cause: printed as one line, exit status 2.

    `ValueError` covers the library's own (unknown architecture, bad settings, a run directory that
    does not fit, unusable initial weights, a mismatching state dict); the dataset errors are
    added here, imported only when a command has started.
    """
    errors: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError)
    # A path the user gave that the OS refuses (the checks before a command starts name the flag;
    # these are what is left, e.g. a file replaced by a directory while the command ran).
    errors += (NotADirectoryError, IsADirectoryError, PermissionError)
    data = sys.modules.get("jaxcnn.data.sources")
    if data is not None:
        errors += (data.DatasetUnavailableError,)
    return errors


def fail(message: str, status: int = 2) -> int:
    """Prints `error: message` on stderr and returns `status` (for `return cli.fail(...)`)."""
    print(f"error: {message}", file=sys.stderr)
    return status


def debugging(debug: bool = False) -> bool:
    """Whether a failure shows its traceback: `--debug` or JAXCNN_DEBUG=1."""
    return debug or os.environ.get("JAXCNN_DEBUG") == "1"


def guard(
    main: Main,
    argv: list[str],
    f: Flags,
    *,
    positional: bool = False,
    debug: bool = False,
    quiet: bool = False,
) -> int:
    """Runs `main(argv, f)` after the process set-up; a user error becomes one line and status 2.

    Args:
        main: the command's main.
        argv: the program name and the arguments left after the flags.
        f: the command's flags.
        positional: whether the command takes positional arguments (else they are refused).
        debug: re-raise a user error (its traceback) instead of the one line (`--debug`).
        quiet: keep background threads' tracebacks off the output for the rest of the process
            (`runtime.quiet_background_errors`; a command's own process, not `invoke`'s).
    """
    if len(argv) > 1 and not positional:
        return fail(f"unexpected arguments: {' '.join(argv[1:])}")
    runtime.configure_xla_cpu()  # before JAX starts its backends
    runtime.configure_storage()
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax logs every save and restore at INFO
    if quiet and debugging(debug):
        os.environ["JAXCNN_DEBUG"] = "1"  # what runs later (jaxcnn.data.tf) asks the environment
    elif quiet:
        runtime.quiet_background_errors()
    try:
        return main(argv, f)
    except user_errors() as e:
        if debugging(debug):
            raise
        return fail(one_line(str(e)))


def one_line(message: str) -> str:
    """`message` on one line: its lines joined with "; " (an error line must stay one line)."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def _debug_asked(argv: list[str]) -> bool:
    """Whether `argv` asks for --debug (read before the flags are parsed, when parsing fails)."""
    return debugging(any(a in ("--debug", "-debug", "--debug=true", "--debug=1") for a in argv))


def flag_error(e: flags.Error) -> str:
    """The one line of a flag that absl refused: an unknown flag (with absl's suggestions) or a bad
    value, and where the flags are listed."""
    if isinstance(e, flags.UnrecognizedFlagError):
        close = re.search(r"Did you mean: (.+?) \?$", str(e))
        mean = ", ".join(f"--{n.strip()}" for n in close.group(1).split(",")) if close else ""
        return (
            f"unknown flag --{e.flagname}" + (f" (did you mean {mean}?)" if mean else "") + "; "
            "--help lists the flags"
        )
    return f"{one_line(str(e))}; --help lists the flags"


def _config_flag_frame(e: BaseException) -> tuple[str, str] | None:
    """(flag name, path) when `e` was raised while ml_collections loaded a config file given by a
    flag (`--config=FILE`: the file's own code, or a missing `get_config`); None otherwise."""
    for frame, _ in traceback.walk_tb(e.__traceback__):
        code = frame.f_code
        if code.co_name == "parse" and "config_flags" in code.co_filename:
            parser, path = frame.f_locals.get("self"), frame.f_locals.get("path")
            if isinstance(path, str) and hasattr(parser, "name"):
                return parser.name, path
    return None


def config_error(e: BaseException) -> str | None:
    """The one line of a `--config` failure (a config file that does not load, an override of a
    key the config lacks), None when `e` did not come from ml_collections' config flags."""
    # config_flags re-raises a TypeError / ValueError of the file's code with the traceback in
    # the message, and absl wraps that again: the original is further down the chain.
    chain, cause = [], e
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for err in reversed(chain):
        where = _config_flag_frame(err)
        if where is None:
            continue
        name, path = where
        path = path.split(":", 1)[0]
        if isinstance(err, SyntaxError):
            return f"--{name}={path}: {err.msg} (line {err.lineno}); fix the file"
        if isinstance(err, AttributeError) and "get_config" in str(err):
            return (
                f"--{name}={path} defines no get_config(); a config file is a Python file whose "
                "get_config() returns the settings (see jaxcnn/config.py)"
            )
        first = (str(err).strip().splitlines() or [""])[0]
        return f"--{name}={path}: get_config() failed: {type(err).__name__}: {first}"
    if isinstance(e, flags.Error):  # a bad value of --config.KEY=VALUE: absl's message says it
        return None
    frames = [f.f_code.co_filename for f, _ in traceback.walk_tb(e.__traceback__)]
    if not any("config_flags" in f for f in frames):
        return None
    for err in chain:
        if isinstance(err, KeyError):
            # An override --config.KEY=VALUE of a key the config does not have; ConfigDict's
            # message is the key's repr and, when one is close, 'Did you mean "lr" instead of ...'.
            text = str(err.args[0]) if err.args else ""
            key = (text.splitlines() or ["?"])[0].strip("'\"")
            close = re.search(r'Did you mean "([^"]+)"', text)
            mean = f" (did you mean --config.{close.group(1)}?)" if close else ""
            return (
                f"--config.{key}: the config has no key {key!r}{mean}; --config.KEY=VALUE "
                "overrides a key of the config file (jaxcnn/config.py lists them)"
            )
    return None


def _failed_config(fv: flags.FlagValues) -> str | None:
    """The one line of a config-file flag whose file could not be read (ml_collections keeps that
    error until the config is first used), None when every config loaded."""
    try:
        from ml_collections.config_flags import config_flags as cf
    except ImportError:
        return None
    error_type = getattr(cf, "_ErrorConfig", None)
    for name in fv:
        flag = fv[name]
        if error_type is None or not isinstance(flag.value, error_type):
            continue
        given = getattr(flag, "config_filename", None) or flag.serialize().split("=", 1)[-1]
        path = str(given).split(":", 1)[0]
        if not os.path.exists(path):
            why = "no such file"
        elif os.path.isdir(path):
            why = "is a directory, not a config file"
        else:
            why = one_line(str(object.__getattribute__(flag.value, "_error"))).split("; ")[-1]
        return (
            f"--{name}={path}: {why}; give a Python file defining get_config() "
            "(e.g. jaxcnn/config.py)"
        )
    return None


def parse_flags(fv: flags.FlagValues, argv: list[str]) -> list[str]:
    """`fv(argv)` (the arguments left after the flags), every refusal a `UsageError` of one line:
    an unknown flag, a bad value, a `--config` file that does not load."""
    try:
        rest = fv(argv)
    except flags.Error as e:
        raise UsageError(config_error(e) or flag_error(e)) from e
    except Exception as e:  # noqa: BLE001 - only ml_collections' config loading gets here
        line = config_error(e)
        if line is None:
            raise
        raise UsageError(line) from e
    line = _failed_config(fv)
    if line is not None:
        raise UsageError(line)
    return rest


def define_flags(define: Define, fv: flags.FlagValues) -> Flags:
    """`define(fv)`; a `--config.KEY=VALUE` override that fails is a `UsageError` of one line
    (ml_collections applies the overrides, read from sys.argv, while the flag is defined)."""
    try:
        return define(fv)
    except Exception as e:  # noqa: BLE001 - only ml_collections' config loading is caught
        line = config_error(e)
        if line is None:
            raise
        raise UsageError(line) from e


def define_debug(fv: flags.FlagValues) -> flags.FlagHolder:
    """`--debug` (every command has it: `run` and `invoke` define it)."""
    return flags.DEFINE_bool("debug", False, DEBUG_HELP, flag_values=fv)


def run(define: Define, main: Main, *, positional: bool = False) -> None:
    """The `__main__` of a command: absl parses the flags, `guard` runs `main`, the process exits.

    A refused flag (unknown, bad value, a `--config` that does not load) is one line and status 2,
    like any user error, instead of absl's two lines and status 1.
    """
    try:
        f = define_flags(define, flags.FLAGS)
    except UsageError as e:
        if _debug_asked(sys.argv):
            raise
        sys.exit(fail(str(e)))
    debug = define_debug(flags.FLAGS)
    # absl's --help lists the flags the main module defined; those a shared helper defined
    # (define_run_flags: --workdir, --checkpoint, ...; --debug) count as cli.py's and would be
    # missing.
    for holder in [*vars(f).values(), debug]:
        if isinstance(holder, flags.FlagHolder):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[holder.name])

    def parser(argv: list[str]) -> list[str]:
        try:
            return parse_flags(flags.FLAGS, argv)
        except UsageError as e:
            if _debug_asked(argv):
                raise
            sys.exit(fail(str(e)))

    app.run(
        lambda argv: sys.exit(
            guard(main, argv, f, positional=positional, debug=debug.value, quiet=True)
        ),
        flags_parser=parser,
    )


def invoke(command: Any, argv: list[str]) -> int:
    """Runs a command module in this process with fresh flags (for tests): its exit status.

    Args:
        command: a command module (`jaxcnn.features`, ...).
        argv: the arguments after the program name.
    """
    fv = flags.FlagValues()
    full = [command.__name__, *argv]
    # ml_collections' config flags read sys.argv itself (which file, which --config.KEY
    # overrides): it holds this command line while the flags are defined and parsed.
    saved, sys.argv = sys.argv, full
    modules = set(sys.modules)
    try:
        f = define_flags(command.define_flags, fv)
        debug = define_debug(fv)
        rest = parse_flags(fv, full)
    except UsageError as e:
        if _debug_asked(argv):
            raise
        return fail(str(e))
    finally:
        sys.argv = saved
        # They load a config file as the module `<flag>_config` with importlib's load_module,
        # which runs the file inside the module of that name already loaded: the next call would
        # see what this one's file defined (a file without get_config() would get this one's).
        for name in set(sys.modules) - modules:
            if name.endswith("_config") and "." not in name:
                del sys.modules[name]
    return guard(
        command.main,
        rest,
        f,
        positional=getattr(command, "POSITIONAL", False),
        debug=debug.value,
    )


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
    run = rundir.RunDir(workdir)
    if run.path.exists() and not run.path.is_dir():
        raise UsageError(
            f"--workdir={workdir} is a file, not a run directory (train one with "
            "`python -m jaxcnn.train`)"
        )
    return run.read_config()
