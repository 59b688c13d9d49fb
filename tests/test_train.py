"""End-to-end training: real data, exact resume, clear errors for bad input."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxcnn.training import loop as trainer
from jaxcnn.rundir import Checkpointer
from jaxcnn.config import get_config


def digits_config(**kw):
    cfg = get_config()
    cfg.arch, cfg.dataset, cfg.batch_size, cfg.epochs = "resnet8", "digits", 32, 2
    cfg.log_every_steps, cfg.lr, cfg.augment = 10, 0.05, True
    cfg.update(kw)
    return cfg


def final_params(workdir):
    ckpt = Checkpointer(workdir)
    step = ckpt.latest_step()
    tree, _ = ckpt.restore()  # no target: the saved tree as is
    ckpt.close()
    return step, tree


def read_metrics(workdir):
    return [json.loads(r) for r in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_interrupt_and_resume_matches_uninterrupted_run(tmp_path):
    """Train -> interrupt mid-epoch -> resume ends with the same parameters, optimizer state and
    metrics as one uninterrupted run with the same seed."""
    cfg = digits_config()
    full = trainer.train_and_evaluate(cfg, tmp_path / "full")
    assert full.step == 2 * (1437 // 32) and not full.interrupted

    stop_at = 30  # mid-epoch 1 (44 steps per epoch)
    part = trainer.train_and_evaluate(cfg, tmp_path / "resumed", should_stop=lambda s: s == stop_at)
    assert part.interrupted and part.step == stop_at
    resumed = trainer.train_and_evaluate(cfg, tmp_path / "resumed")
    assert resumed.step == full.step and not resumed.interrupted
    assert resumed.eval_accuracy == full.eval_accuracy

    step_a, a = final_params(tmp_path / "full")
    step_b, b = final_params(tmp_path / "resumed")
    assert step_a == step_b == full.step
    for (path, x), y in zip(
        jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True
    ):
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))

    rows_a, rows_b = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "resumed")
    assert [(r["step"], r["split"]) for r in rows_a] == [(r["step"], r["split"]) for r in rows_b]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-6)


def test_digits_learns(tmp_path):
    """Two epochs of ResNet-8 on the 1,437 digits images: far above the 10% of chance."""
    result = trainer.train_and_evaluate(digits_config(augment=False), tmp_path)
    assert result.eval_accuracy > 0.8


@pytest.mark.slow
def test_fashion_mnist_reaches_stated_accuracy(tmp_path):
    """ResNet-8, 300 steps of batch 128 (0.64 epoch) on real Fashion-MNIST: >= 85% test accuracy."""
    cfg = get_config()  # the default job's settings, shortened
    cfg.steps = 300
    result = trainer.train_and_evaluate(cfg, tmp_path)
    assert result.eval_accuracy >= 0.85
    rows = read_metrics(tmp_path)
    assert {"step", "split", "loss", "accuracy"} <= set(rows[-1]) and rows[-1]["split"] == "eval"
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["arch"] == "resnet8"


def test_non_finite_loss_stops_before_any_checkpoint(tmp_path):
    cfg = digits_config(lr=1e30, checkpoint_every_steps=5, optimizer="sgd")
    with pytest.raises(trainer.TrainingError, match="non-finite"):
        trainer.train_and_evaluate(cfg, tmp_path)
    assert Checkpointer(tmp_path).latest_step() is None


def test_resume_with_other_settings_is_refused(tmp_path):
    cfg = digits_config(steps=3)
    trainer.train_and_evaluate(cfg, tmp_path)
    with pytest.raises(ValueError, match="arch: 'resnet8' -> 'resnet20'"):
        trainer.train_and_evaluate(digits_config(steps=3, arch="resnet20"), tmp_path)


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "jaxcnn.train", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch=resnet51"], "Unknown architecture 'resnet51'. Closest: resnet56, resnet50"),
        (["--batch_size=-8"], "--batch_size must be a positive integer"),
        (["--dataset=fashion_mnist_x"], "unknown --dataset 'fashion_mnist_x'"),
        (["--arch=resnet50"], "image size 28 is too small for resnet50"),
        (
            ["--dataset=digits", "--batch_size=12"],
            "batch size 12 is not divisible by the 8 devices",
        ),
    ],
)
def test_cli_bad_input_fails_fast(tmp_path, args, message):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = run_cli(*args, f"--workdir={tmp_path}/w", env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr
    assert not (tmp_path / "w" / "checkpoints").exists()


def test_cli_help_explains_flags():
    out = run_cli("--help")  # absl prints the module docstring and its flags (and exits 1)
    assert "python -m jaxcnn.train" in out.stdout
    for flag in (
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
    ):
        assert flag in out.stdout
