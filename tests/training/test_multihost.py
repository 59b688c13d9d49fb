"""Two processes on localhost with jax.distributed: one global mesh, each reading its own share."""

import json
import os
import subprocess
import sys

import pytest
from helpers import free_port


@pytest.mark.slow
def test_two_process_training(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device per process
    common = [
        sys.executable,
        "-m",
        "jaxcnn.train",
        "--distributed",
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
        "--dataset=digits",
        "--arch=resnet8",
        "--batch_size=32",
        "--steps=50",
        "--lr=0.05",
        f"--workdir={tmp_path}/run",
    ]
    procs = [
        subprocess.Popen(
            [*common, f"--process_id={i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    # Process 0 reports; the eval inside checks that the two shares covered all 360 test images once.
    assert "Final test accuracy of resnet8 on digits after 50 steps" in outs[0][0]
    assert "Final test accuracy" not in outs[1][0]
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["split"] == "eval" and rows[-1]["accuracy"] > 0.3  # chance is 0.1
    # Saved after the eval at the end of epoch 1 (step 44 = 1437 // 32) and at the last step.
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints" / "latest")) == ["44", "50"]
