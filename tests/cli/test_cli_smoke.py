"""One subprocess per command: `python -m jaxcnn.<command>` starts, parses its flags and runs.

A real run where it is cheap (summary, bench); `--help` where the real run is done in this process
already (features, neighbors, visualize: test_cli_runs.py; train: tests/training, and
tests/training/test_multihost.py runs `python -m jaxcnn.train` itself in two processes).
"""

import re

import pytest
from helpers import run_module

TRAIN_FLAGS = (
    "--arch",
    "--dataset",
    "--epochs",
    "--steps",
    "--batch_size",
    "--image_size",
    "--lr",
    "--optimizer",
    "--schedule",
    "--seed",
    "--config",
    "--workdir",
)


@pytest.mark.parametrize(
    "module, flags",
    [
        ("train", TRAIN_FLAGS),
        ("features", ("--tap", "--workdir", "--split", "--checkpoint")),
        ("neighbors", ("--k", "--queries", "--output", "--workdir", "--batch_size")),
        ("visualize", ("--arch", "--workdir")),
        ("predict", ("--workdir", "--checkpoint", "--weights", "--top_k", "--format", "--output")),
        ("export", ("--workdir", "--weights", "--format", "--output", "--overwrite")),
        ("prepare", ("--dataset", "--data_dir")),
    ],
)
def test_help_explains_flags(module, flags):
    out = run_module(module, "--help")  # absl prints the module docstring and its flags
    assert f"python -m jaxcnn.{module}" in out.stdout, out.stderr[-2000:]
    for flag in flags:  # in the flag listing, not only in the docstring
        assert re.search(rf"^\s+--(\[no\])?{flag[2:]}:", out.stdout, re.M), flag


def test_summary_runs():
    out = run_module("summary", "--arch=lenet5", "--channels=1", "--noxla")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "lenet5 at 32x32x1: 61,706 parameters" in out.stdout


def test_bench_runs(tmp_path):
    out = run_module(
        "bench",
        "--arch=resnet8",
        "--batch_size=4",
        "--image_size=16",
        "--steps=1",
        f"--profile={tmp_path}",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resnet8, batch 4, 16x16, float32, 1 timed steps" in out.stdout
    assert "img/s" in out.stdout and "peak host RSS" in out.stdout
    # The trace, in TensorBoard's profile-plugin layout.
    assert len(list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))) == 1


def test_prepare_runs_and_refuses_an_unknown_dataset():
    out = run_module("prepare", "--dataset=digits")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "digits is prepared in TFDS's default data dir: 1437 train / 360 test" in out.stdout
    out = run_module("prepare", "--dataset=no_such_dataset_xyz")
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .startswith("error: Unknown dataset 'no_such_dataset_xyz'")
    )
