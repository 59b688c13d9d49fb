"""Every failure a user can cause ends with one line, `error: ...`, never a traceback.

Hostile or malformed `--init_from` weights, a `--workdir` / `--output` that is a file or cannot be
written, an unknown flag or a bad `--config`, a dataset smaller than one batch: each stops within
seconds with status 2 and one line naming the file, flag or path, before any device is used (where
the check can be made without one) and with nothing written. `--debug` shows the traceback instead.

Most cases run in this process (`cli.invoke`) with `sharding.make_mesh` replaced by a function that
fails the test, so "no device was used" is checked, not assumed. Flag parsing through absl's
`app.run` and `--debug` run in real subprocesses (`python -m jaxcnn.COMMAND`), in cases that fail
before TensorFlow is imported, so that their stderr is all jaxcnn's.
"""

import json
import os
import re
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxcnn import cli, export, features, predict, train
from jaxcnn.weights import convert

TRAIN = ["--dataset=digits", "--arch=resnet8", "--steps=1"]
# tqdm's progress bars of a folder dataset's inspection share stderr with the error line.
PROGRESS = re.compile(r"^(checking|decoding) images:")


def the_error_line(err: str) -> str:
    """The one line of `err` (stderr), checking that it is the only one and no traceback."""
    lines = [s.strip() for s in re.split(r"[\r\n]", err) if s.strip() and not PROGRESS.match(s)]
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("error: "), err[-3000:]
    assert "Traceback" not in err
    return lines[0]


def refused(capsys, module, args) -> str:
    """Runs `module` in this process: status 2 and one `error:` line, which is returned."""
    capsys.readouterr()
    status = cli.invoke(module, args)
    out, err = capsys.readouterr()
    assert status == 2, (out[-2000:], err[-2000:])
    assert "Traceback" not in out
    return the_error_line(err)


@pytest.fixture
def no_device(monkeypatch):
    """The trainer's first use of a device (its mesh) fails the test."""
    from jaxcnn.training import sharding

    def used(*_, **__):
        raise AssertionError("a device was used before the input was refused")

    monkeypatch.setattr(sharding, "make_mesh", used)


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    return path


@pytest.fixture
def fake_run(tmp_path):
    """A run directory with a config.json and no checkpoint: a command that gets as far as loading
    the weights fails on it, so an error about anything else proves it came before the loading."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"arch": "resnet8", "dataset": "digits"}))
    return run


@pytest.fixture
def read_only(tmp_path):
    """A directory holding `run/config.json` that this process cannot write into: mode 0o500, or,
    as root (who ignores mode bits), a tmpfs remounted read-only."""
    where = tmp_path / "ro"
    where.mkdir()

    def fill():
        (where / "run").mkdir()
        (where / "run" / "config.json").write_text(
            json.dumps({"arch": "resnet8", "dataset": "digits"})
        )

    if os.geteuid() != 0:
        fill()
        os.chmod(where / "run", 0o500)
        os.chmod(where, 0o500)
        yield where
        os.chmod(where / "run", 0o700)
        os.chmod(where, 0o700)
        return
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True
    )
    if mount.returncode:
        pytest.skip(
            "running as root, where mode bits do not stop writes, and no read-only tmpfs can be "
            f"mounted here: {mount.stderr.decode().strip()}"
        )
    try:
        fill()
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        assert not os.access(where, os.W_OK)
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


# --- 1. --init_from weights files --------------------------------------------------------------


def _evil_pth(path, payload):
    torch = pytest.importorskip("torch")
    sentinel = path.parent / "SENTINEL"

    class Payload:
        def __reduce__(self):
            if payload == "system":
                return (os.system, (f"touch {sentinel}",))
            return (open, (str(sentinel), "w"))

    torch.save({"conv1.weight": torch.zeros(2), "x": Payload()}, path)
    assert not sentinel.exists()
    return sentinel


@pytest.mark.parametrize("payload, refused_global", [("system", "system"), ("open", "open")])
def test_a_pth_carrying_a_payload_is_refused_and_never_runs(tmp_path, payload, refused_global):
    """torch.load(weights_only=True) refuses the pickled call; the payload never runs (were the
    file read with weights_only=False, SENTINEL would exist)."""
    path = tmp_path / "weights.pth"
    sentinel = _evil_pth(path, payload)
    with pytest.raises(convert.InitFromError) as e:
        convert.load_state_dict(path)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{path} is not a plain tensor file: ")
    assert "torch.load(weights_only=True) refused it (" in message
    assert f"GLOBAL {refused_global}" in message or f".{refused_global} " in message, message
    assert message.endswith("convert it to .safetensors from a trusted copy")
    assert not sentinel.exists()


def test_train_from_a_hostile_pth_is_one_line_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "weights.pth"
    sentinel = _evil_pth(path, "system")
    workdir = tmp_path / "run"
    args = ["--dataset=digits", "--arch=resnet18", "--image_size=32", "--steps=1"]
    line = refused(capsys, train, [*args, f"--workdir={workdir}", f"--init_from={path}"])
    assert line.startswith(f"error: {path} is not a plain tensor file")
    assert not sentinel.exists()
    assert not workdir.exists()


def _safetensors(header: dict, data: bytes = b"", length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _good() -> bytes:
    from safetensors.numpy import save

    return save({"conv1.weight": np.ones((2, 3), np.float32)})


MALFORMED = {
    "truncated": (lambda: _good()[: len(_good()) - 10], "lies at bytes 0-24 of a data section"),
    "four bytes": (lambda: b"\x01\x02\x03\x04", "fewer than its 8-byte header length"),
    "header longer than the file": (
        lambda: struct.pack("<Q", 10_000) + b"{}",
        "its header claims 10000 bytes but the file has 2",
    ),
    "header over 100 MB": (
        lambda: struct.pack("<Q", 2**40) + b"{}",
        "more than safetensors' limit of 100000000",
    ),
    "header not JSON": (lambda: struct.pack("<Q", 4) + b"\xff{[a", "its header is not JSON"),
    "10^12 elements": (
        lambda: _safetensors(
            {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}},
            b"\0" * 16,
        ),
        "tensor 'w' (shape [1000000, 1000000], F32) lies at bytes 0-4000000000000",
    ),
    "offsets not matching the shape": (
        lambda: _safetensors(
            {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 16]}},
            b"\0" * 16,
        ),
        "needs 4000000000000 bytes, its data_offsets span 16",
    ),
    "unknown dtype": (
        lambda: _safetensors({"w": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 2]}}, b"ab"),
        "tensor 'w' has an unknown dtype 'Q7'",
    ),
    "bfloat16": (
        lambda: _safetensors({"w": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}, b"a"),
        "tensor 'w' is BF16, which numpy cannot hold",
    ),
    # Sizes that agree, and bytes no tensor covers: safetensors' own check, made one line.
    "bytes past the tensors": (lambda: _good() + b"\0" * 8, "file not fully covered"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_safetensors_file_is_one_line(tmp_path, case):
    make, expected = MALFORMED[case]
    path = tmp_path / "weights.safetensors"
    path.write_bytes(make())
    with pytest.raises(convert.InitFromError) as e:
        convert.load_state_dict(path)
    message = str(e.value)
    assert "\n" not in message
    assert str(path) in message
    assert expected in message, message


def test_a_good_safetensors_file_still_loads(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(_good())
    out = convert.load_state_dict(path)
    np.testing.assert_array_equal(out["conv1.weight"], np.ones((2, 3), np.float32))


@pytest.mark.parametrize("case", ["truncated", "10^12 elements"])
def test_train_refuses_a_malformed_safetensors_before_any_device(tmp_path, capsys, no_device, case):
    make, expected = MALFORMED[case]
    path = tmp_path / "weights.safetensors"
    path.write_bytes(make())
    workdir = tmp_path / "run"
    line = refused(capsys, train, [*TRAIN, f"--workdir={workdir}", f"--init_from={path}"])
    assert line.startswith(f"error: {path} is not a valid .safetensors file: ")
    assert expected in line
    assert not workdir.exists()


LOAD_UNDER_A_LIMIT = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from jaxcnn.weights import convert

    # 3 GiB of address space: the import needs well under 1; 4 TB cannot be had, nor 1 GiB twice.
    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.RLIM_INFINITY))
    try:  # the control: the limit really stops the allocation the header asks for
        np.empty((10**6, 10**6), np.float32)
        control = "allocated"
    except MemoryError:
        control = "MemoryError"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        convert.load_state_dict(sys.argv[1])
        error = None
    except BaseException as e:
        error = f"{type(e).__name__}: {e}"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"control": control, "error": error, "grown_kib": grown}))
    """
)


def test_a_forged_header_is_refused_without_allocating(tmp_path):
    """A header declaring a 10^12-element float32 tensor (4 TB) in a 1 GiB (sparse) file: refused
    from the header, in a process whose address space (3 GiB) could neither hold that tensor nor
    read the whole file twice over, and whose peak RSS does not grow by more than 64 MiB."""
    path = tmp_path / "forged.safetensors"
    header = {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}
    with open(path, "wb") as f:
        f.write(_safetensors(header))
        f.truncate(2**30)  # a sparse gigabyte of data section
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_UNDER_A_LIMIT, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["control"] == "MemoryError"
    assert result["error"].startswith("InitFromError: "), result
    assert "lies at bytes 0-4000000000000" in result["error"]
    assert result["grown_kib"] < 64 * 1024, result


# --- 2. --workdir and --output that are files or cannot be written ---------------------------


def test_train_workdir_under_a_file(capsys, no_device, a_file):
    workdir = a_file / "run"
    line = refused(capsys, train, [*TRAIN, f"--workdir={workdir}"])
    assert line == (
        f"error: --workdir={workdir} cannot be created: {a_file} is a file, not a directory; "
        "name a directory you can write to"
    )
    assert a_file.read_text() == "mine"


def test_train_default_workdir_when_runs_is_a_file(tmp_path, capsys, no_device, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("not a folder")
    line = refused(capsys, train, TRAIN)
    cwd = os.getcwd()  # the default is relative: said as given, its parent made absolute
    assert line.startswith(
        f"error: the default --workdir=runs/resnet8-digits cannot be created: {cwd}/runs is a "
        "file, not a directory"
    )
    assert sorted(os.listdir(tmp_path)) == ["runs"]


def test_train_workdir_whose_checkpoints_is_a_file(tmp_path, capsys, no_device):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("x")
    line = refused(capsys, train, [*TRAIN, f"--workdir={tmp_path / 'run'}"])
    assert line.startswith(f"error: {tmp_path}/run/checkpoints is a file where a run keeps")
    assert os.listdir(tmp_path / "run") == ["checkpoints"]


@pytest.mark.parametrize("module, extra", [(features, []), (predict, ["x.jpg"]), (export, None)])
def test_run_readers_workdir_naming_a_file(tmp_path, capsys, a_file, module, extra):
    if extra is None:
        extra = ["--format=stablehlo", f"--output={tmp_path / 'out'}"]
    line = refused(capsys, module, [f"--workdir={a_file}", *extra])
    assert line == (
        f"error: --workdir={a_file} is a file, not a run directory (train one with "
        "`python -m jaxcnn.train`)"
    )
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


@pytest.mark.parametrize(
    "module, output, extra, kind",
    [
        (features, "x.npz", [], "written"),
        (predict, "p.csv", ["x.jpg"], "written"),
        (export, "model", ["--format=stablehlo"], "created"),
    ],
)
def test_run_readers_output_under_a_file(
    tmp_path, capsys, fake_run, a_file, module, output, extra, kind
):
    """Refused before the run's weights are read (the fake run has none)."""
    target = a_file / output
    line = refused(capsys, module, [f"--workdir={fake_run}", f"--output={target}", *extra])
    assert line.startswith(
        f"error: --output={target} cannot be {kind}: {a_file} is a file, not a directory; "
    )
    assert os.listdir(fake_run) == ["config.json"]


def test_train_workdir_not_writable(capsys, no_device, read_only):
    line = refused(capsys, train, [*TRAIN, f"--workdir={read_only / 'new'}"])
    assert line.startswith(f"error: --workdir={read_only / 'new'} cannot be created: {read_only} ")
    assert line.endswith("; name a directory you can write to")
    line = refused(capsys, train, [*TRAIN, f"--workdir={read_only}"])
    assert line.startswith(f"error: --workdir={read_only} cannot be written: {read_only} ")
    assert sorted(os.listdir(read_only)) == ["run"]


def test_run_readers_output_not_writable(capsys, read_only, tmp_path):
    run = read_only / "run"
    line = refused(capsys, features, [f"--workdir={run}"])  # the default output is in the run
    assert line.startswith(f"error: --workdir={run} cannot be written: {run} ")
    assert line.endswith("; pass --output=FILE.npz to write the features elsewhere")
    line = refused(capsys, predict, [f"--workdir={run}", f"--output={run}/p.csv", "x.jpg"])
    assert line.startswith(f"error: --output={run}/p.csv cannot be written: {run} ")
    args = [f"--workdir={run}", "--format=stablehlo", f"--output={read_only}/model"]
    line = refused(capsys, export, args)
    assert line.startswith(f"error: --output={read_only}/model cannot be created: {read_only} ")
    assert os.listdir(run) == ["config.json"]


# --- 3. and 4. flags and --config ----------------------------------------------------------------


def _run(module, *args, cwd=None):
    """`python -m jaxcnn.MODULE args` in a fresh process; the cases given to it fail before
    TensorFlow is imported (whose start-up logging would add lines to stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", f"jaxcnn.{module}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "JAXCNN_DEBUG": ""},
    )
    return proc


@pytest.mark.parametrize(
    "module, args, expected",
    [
        ("train", ["--no_such_flag=1"], "unknown flag --no_such_flag; --help lists the flags"),
        (
            "train",
            ["--batch_sise=8"],
            "unknown flag --batch_sise (did you mean --batch_size?); --help lists the flags",
        ),
        (
            "features",
            ["--steps=3"],
            "unknown flag --steps; --help lists the flags",
        ),
        (
            "train",
            ["--steps=abc"],
            "flag --steps=abc: invalid literal for int() with base 10: 'abc'; --help lists the flags",
        ),
        (
            "train",
            ["--config=missing.py"],
            "--config=missing.py: no such file; give a Python file defining get_config() "
            "(e.g. jaxcnn/config.py)",
        ),
        (
            "train",
            ["--config=no_get_config.py"],
            "--config=no_get_config.py defines no get_config(); a config file is a Python file "
            "whose get_config() returns the settings (see jaxcnn/config.py)",
        ),
        (
            "train",
            ["--config.lrr=0.1"],
            "--config.lrr: the config has no key 'lrr' (did you mean --config.lr?); "
            "--config.KEY=VALUE overrides a key of the config file (jaxcnn/config.py lists them)",
        ),
    ],
)
def test_flag_errors_through_absl_are_one_line(tmp_path, module, args, expected):
    (tmp_path / "no_get_config.py").write_text("BATCH = 8\n")
    proc = _run(module, *args, "--workdir=w", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert the_error_line(proc.stderr) == f"error: {expected}"
    assert proc.stdout == ""
    assert sorted(os.listdir(tmp_path)) == ["no_get_config.py"]


@pytest.mark.parametrize("case", ["workdir under a file", "truncated safetensors"])
def test_train_refuses_in_a_second_before_tensorflow_starts(tmp_path, case):
    """The run directory and a weights file are checked before TensorFlow is imported: stderr
    holds the error line and nothing else."""
    (tmp_path / "notes.txt").write_text("mine")
    args = [f"--workdir={tmp_path / 'notes.txt' / 'run'}"]
    expected = f"error: --workdir={tmp_path}/notes.txt/run cannot be created: "
    if case == "truncated safetensors":
        (tmp_path / "w.safetensors").write_bytes(_good()[:-10])
        args = [f"--workdir={tmp_path / 'run'}", f"--init_from={tmp_path / 'w.safetensors'}"]
        expected = f"error: {tmp_path}/w.safetensors is not a valid .safetensors file: "
    proc = _run("train", *TRAIN, *args)
    assert proc.returncode == 2
    assert the_error_line(proc.stderr).startswith(expected)
    assert sorted(os.listdir(tmp_path)) in (["notes.txt"], ["notes.txt", "w.safetensors"])


@pytest.mark.parametrize(
    "module",
    ["bench", "export", "features", "neighbors", "predict", "prepare", "summary", "visualize"],
)
def test_every_command_refuses_an_unknown_flag_in_one_line(capsys, module):
    import importlib

    line = refused(capsys, importlib.import_module(f"jaxcnn.{module}"), ["--no_such_flag=1"])
    assert line == "error: unknown flag --no_such_flag; --help lists the flags"


def test_config_files_in_process(tmp_path, capsys, no_device, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.py").write_text("")
    (tmp_path / "broken.py").write_text("def get_config(:\n")
    (tmp_path / "raises.py").write_text("def get_config():\n    raise ValueError('no GPU here')\n")
    for arg, expected in [
        ("missing.py", "--config=missing.py: no such file; "),
        ("empty.py", "--config=empty.py defines no get_config(); "),
        ("broken.py", "--config=broken.py: invalid syntax (line 1); fix the file"),
        ("raises.py", "--config=raises.py: get_config() failed: ValueError: no GPU here"),
        (str(tmp_path), f"--config={tmp_path}: is a directory, not a config file; "),
    ]:
        line = refused(capsys, train, [*TRAIN, f"--config={arg}", "--workdir=w"])
        assert line.startswith(f"error: {expected}"), line
    line = refused(capsys, train, [*TRAIN, "--config.nokey=1", "--workdir=w"])
    assert line.startswith("error: --config.nokey: the config has no key 'nokey'; ")
    assert sorted(os.listdir(tmp_path)) == ["broken.py", "empty.py", "raises.py"]


# --- 5. a dataset split smaller than one batch ----------------------------------------------------


def test_digits_train_split_smaller_than_the_batch(tmp_path, capsys, no_device):
    workdir = tmp_path / "run"
    line = refused(capsys, train, [*TRAIN, "--batch_size=4096", f"--workdir={workdir}"])
    assert line == (
        "error: --batch_size=4096 is larger than the digits train split (1437 examples), and a "
        "training step takes one whole batch; pass --batch_size=1437 or less"
    )
    assert not workdir.exists()


def _image_folder(root, counts):
    from PIL import Image

    for split, classes in counts.items():
        for c, n in classes.items():
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (40 * i, 100, 0)).save(root / split / c / f"{i}.png")
    return root


def test_folder_dataset_smaller_than_the_batch(tmp_path, capsys, no_device):
    folder = _image_folder(tmp_path / "images", {"train": {"a": 2, "b": 1}, "val": {"a": 1}})
    workdir = tmp_path / "run"
    args = [f"--dataset=folder:{folder}", "--arch=resnet8", "--steps=1", "--batch_size=64"]
    line = refused(capsys, train, [*args, f"--workdir={workdir}"])
    assert line == (
        f"error: --batch_size=64 is larger than the folder:{folder} train split (3 examples), and "
        "a training step takes one whole batch; pass --batch_size=3 or less"
    )
    assert not workdir.exists()


def test_an_eval_split_smaller_than_the_batch_is_fine(tmp_path):
    """Evaluation pads its last batch: only the train split must hold one global batch."""
    from jaxcnn.config import get_config
    from jaxcnn.training.plan import plan_run

    folder = _image_folder(tmp_path / "images", {"train": {"a": 2, "b": 2}, "val": {"a": 1}})
    cfg = get_config()
    cfg.arch, cfg.dataset, cfg.batch_size, cfg.steps = "resnet8", f"folder:{folder}", 4, 1
    plan = plan_run(cfg, tmp_path / "run")
    assert (plan.dataset.num_train, plan.dataset.num_eval, plan.steps_per_epoch) == (4, 1, 1)
    assert not (tmp_path / "run").exists()


# --- 6. --debug -------------------------------------------------------------------------------


def test_debug_flag_shows_the_traceback(tmp_path):
    missing = tmp_path / "nope"
    plain = _run("features", f"--workdir={missing}")
    assert plain.returncode == 2
    assert the_error_line(plain.stderr) == (
        f"error: no run directory at {missing} (train one with `python -m jaxcnn.train`)"
    )
    debug = _run("features", f"--workdir={missing}", "--debug")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("jaxcnn.rundir.RunDirError: no run")
    flag = _run("train", "--no_such_flag=1", "--debug")
    assert flag.returncode == 1 and "Traceback (most recent call last)" in flag.stderr
    assert flag.stderr.strip().splitlines()[-1] == (
        "jaxcnn.cli.UsageError: unknown flag --no_such_flag; --help lists the flags"
    )


def test_debug_flag_in_process(tmp_path):
    from jaxcnn import rundir

    with pytest.raises(rundir.RunDirError):
        cli.invoke(features, [f"--workdir={tmp_path / 'nope'}", "--debug"])
    with pytest.raises(cli.UsageError, match="unknown flag --no_such_flag"):
        cli.invoke(train, ["--no_such_flag=1", "--debug"])


def test_help_lists_debug(tmp_path):
    proc = _run("predict", "--help")
    assert "--[no]debug: Show the full traceback of a failure" in proc.stdout + proc.stderr
