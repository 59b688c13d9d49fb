"""Every command refuses bad input with one line, `error: ...`, and exit status 2, writing nothing.

Run in this process (`jaxcnn.cli.invoke`: fresh flags each time); the subprocess smoke tests are in
test_cli_smoke.py. Each case runs in an empty working directory that must stay empty.
"""

import os
import types

import pytest

from jaxcnn import bench, cli, features, neighbors, summary, train, visualize


def invoke_bad(capsys, module, args):
    """Runs the command, returns its one `error:` line (checking status 2 and that no traceback or
    second error was printed)."""
    capsys.readouterr()
    status = cli.invoke(module, args)
    out, err = capsys.readouterr()
    assert status == 2, (out[-2000:], err[-2000:])
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err[-2000:]
    assert "Traceback" not in err + out
    return errors[0]


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    assert os.listdir(cwd) == [], "a refused command wrote into the working directory"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch=resnet51"], "Unknown architecture 'resnet51'. Closest: resnet56, resnet50"),
        (["--batch_size=-8"], "--batch_size must be a positive integer"),
        (["--dataset=fashion_mnist_x"], "unknown --dataset 'fashion_mnist_x'"),
        (["--arch=resnet50"], "image size 28 is too small for resnet50"),
    ],
)
def test_train_bad_input(capsys, empty_cwd, tmp_path, args, message):
    line = invoke_bad(capsys, train, [*args, f"--workdir={tmp_path}/w"])
    assert message in line
    assert not (tmp_path / "w").exists()


def test_train_batch_not_divisible_by_the_devices(capsys, empty_cwd, tmp_path, monkeypatch):
    """A batch of 12 on 8 devices. This process has one device: the mesh that the check reads is a
    stand-in of 8 (real 8-device meshes: tests/training/test_sharding.py)."""
    from jaxcnn.training import sharding

    monkeypatch.setattr(sharding, "make_mesh", lambda *a, **k: types.SimpleNamespace(size=8))
    line = invoke_bad(
        capsys, train, ["--dataset=digits", "--batch_size=12", f"--workdir={tmp_path}/w"]
    )
    assert "batch size 12 is not divisible by the 8 devices" in line
    assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.parametrize(
    "module, args, message",
    [
        (features, ["--workdir=/nonexistent/run"], "no run directory at /nonexistent/run"),
        (neighbors, ["--workdir=/nonexistent/run"], "no run directory at /nonexistent/run"),
        (visualize, ["filters", "--workdir=/nonexistent/run"], "no run directory"),
        (features, [], "--workdir is required"),
        (neighbors, ["--workdir=WORKDIR", "--k=0"], "--k must be positive"),
        (visualize, ["filter", "--arch=alexnet"], "expected one command, filters; got filter"),
        (visualize, ["filters"], "give exactly one of --workdir=RUN or --arch=NAME"),
        (features, ["--workdir=WORKDIR"], "has no config.json"),
        (summary, ["--arch=resnet51"], "resnet50"),
        (summary, [], "give exactly one of --arch=NAME or --compare=NAMES|all"),
        (summary, ["--arch=lenet5", "--plot=x.png"], "--plot needs --compare"),
        (summary, ["--arch=resnet50", "--image_size=16"], "resnet50 needs inputs of at least"),
        (bench, ["--batch_size=0"], "--batch_size must be positive, got 0"),
        (bench, ["--arch=resnet51"], "Closest"),
    ],
)
def test_run_commands_bad_input(capsys, empty_cwd, tmp_path, module, args, message):
    workdir = tmp_path / "run"  # an empty directory: not a run
    workdir.mkdir()
    args = [a.replace("WORKDIR", str(workdir)) for a in args]
    assert message in invoke_bad(capsys, module, args)
    assert os.listdir(workdir) == []
    assert not os.path.exists("/nonexistent/run")


def test_features_unknown_tap_lists_taps(capsys, empty_cwd, run_dir):
    before = sorted(os.listdir(run_dir))
    line = invoke_bad(capsys, features, [f"--workdir={run_dir}", "--tap=fc7"])
    assert "unknown tap 'fc7'; this network's taps are: logits 10, pre_logits 64" in line
    assert sorted(os.listdir(run_dir)) == before  # no features_test_fc7.npz
