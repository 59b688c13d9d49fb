"""End-to-end training: real data, exact resume, clear errors for bad input.

The command line's bad-input cases: tests/cli; each family's short run:
tests/training/test_learns_digits.py.
"""

import json
import os

import jax
import numpy as np
import pytest
from helpers import digits_config, final_params, read_metrics

from jaxcnn.config import get_config
from jaxcnn.rundir import Checkpointer
from jaxcnn.training import loop as trainer


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


def test_rows_of_a_run_killed_before_its_first_checkpoint_are_dropped(tmp_path):
    """A run killed before it saved anything leaves metrics rows behind; the rerun starts at step 0
    and logs those steps anew, without duplicates."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "split": "train", "loss": 9.0}) + "\n" for s in (5, 10))
    )
    trainer.train_and_evaluate(digits_config(steps=10, log_every_steps=5), run)
    rows = read_metrics(run)
    assert [(r["step"], r["split"]) for r in rows] == [(5, "train"), (10, "train"), (10, "eval")]
    assert all(r["loss"] != 9.0 for r in rows)
