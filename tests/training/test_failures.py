"""Failures a run meets from outside, injected for real: a disk that fills up during a run (a
small tmpfs mounted by the test), a batch that comes in with NaN in it."""

import json
import subprocess

import jax
import numpy as np
import pytest

from jaxcnn import data
from jaxcnn.training import loop
from tests.helpers import digits_config, final_params, run_module


@pytest.fixture
def small_disk(tmp_path):
    """A 2.6 MB tmpfs: room for a few ResNet-8 checkpoints, not for ten."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2600k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


RUN = ["--dataset=digits", "--steps=40", "--config.checkpoint_every_steps=4"]


@pytest.mark.slow
def test_a_full_disk_ends_in_one_line_and_the_committed_checkpoints_resume(small_disk, tmp_path):
    """The disk fills during a save: the trainer exits non-zero with one line naming the path
    and the newest committed step, no traceback; once there is room again, the same command
    resumes from that step and ends exactly where an uninterrupted run ends."""
    workdir = small_disk / "run"
    args = [*RUN, "--config.keep_checkpoints=10", f"--workdir={workdir}"]
    r = run_module("train", *args)
    assert r.returncode != 0, r.stdout[-2000:]
    err = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr[-3000:]
    line = errors[0]
    assert line.startswith(f"error: no space left on device writing {workdir}"), line
    committed = sorted(
        int(p.name) for p in (workdir / "checkpoints/latest").iterdir() if p.name.isdigit()
    )
    assert committed, "the disk filled before the first checkpoint: make the tmpfs larger"
    assert f"the newest committed checkpoint, step {committed[-1]}, is intact" in line

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    r2 = run_module("train", *args)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert f"from step {committed[-1]}." in r2.stdout, r2.stdout[-2000:]
    assert "is damaged" not in r2.stdout  # every committed checkpoint was whole
    assert not list((workdir / "checkpoints/latest").glob("*.orbax-checkpoint-tmp*"))

    ref = tmp_path / "ref"
    r3 = run_module("train", *RUN, "--config.keep_checkpoints=10", f"--workdir={ref}")
    assert r3.returncode == 0, r3.stderr[-2000:]
    step_a, a = final_params(ref)
    step_b, b = final_params(workdir)
    assert step_a == step_b == 40
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    rows = [json.loads(r) for r in (workdir / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys))


def test_a_batch_with_nan_stops_the_run_saying_the_data_is_damaged(tmp_path, monkeypatch):
    """One batch of the real pipeline gets a NaN pixel at step 3: the run stops at that step with
    a message that blames the data, and nothing after step 2 is checkpointed."""
    real = data.train_batches

    def poisoned(*args, **kwargs):
        for step, batch in enumerate(real(*args, **kwargs), start=kwargs.get("start_step", 0) + 1):
            if step == 3:
                batch = dict(batch, image=np.array(batch["image"], np.float32))
                batch["image"][0, 0, 0, 0] = np.nan
            yield batch

    monkeypatch.setattr(data, "train_batches", poisoned)
    cfg = digits_config(steps=6, checkpoint_every_steps=2, log_every_steps=1)
    with pytest.raises(loop.TrainingError, match="the batch of step 3 came in non-finite") as e:
        loop.train_and_evaluate(cfg, tmp_path)
    assert "nothing after step 2 was checkpointed" in str(e.value)
    from jaxcnn.rundir import Checkpointer

    ckpt = Checkpointer(tmp_path, create=False)
    assert ckpt.latest.all_steps() == [2]
    ckpt.close()


def test_a_non_finite_step_from_the_training_blames_the_training():
    rows = [{"finite": True, "input_finite": True}, {"finite": False, "input_finite": True}]
    with pytest.raises(loop.TrainingError, match="non-finite loss or gradient at step 8"):
        loop.check_finite(rows, step=8)
    rows[1]["input_finite"] = False
    with pytest.raises(loop.TrainingError, match="the batch of step 8 came in non-finite"):
        loop.check_finite(rows, step=8)
