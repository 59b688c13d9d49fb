"""Run directories in a bucket: training, a SIGKILL and a resume, --init_from, and the commands that
read a run, all against a real GCS server (fake-gcs-server on localhost, speaking Google's JSON
API) through the same clients as on a TPU VM: gcsfs for the run's files and TensorStore for the
checkpoint arrays. Nothing of jaxcnn is mocked.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import GcsEmulator, final_params

from jaxcnn import cli, features, neighbors, rundir, train, visualize

BUCKET = "test-bucket"
TRAIN = [
    "--dataset=digits",
    "--arch=resnet8",
    "--batch_size=32",
    "--steps=120",
    "--lr=0.05",
    "--config.checkpoint_every_steps=20",
    "--config.log_every_steps=10",
]


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    server = GcsEmulator(str(tmp_path_factory.mktemp("gcs")))
    server.make_bucket(BUCKET)
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


def _train(workdir, *extra, cwd=None):
    return subprocess.Popen(
        [sys.executable, "-m", "jaxcnn.train", *TRAIN, f"--workdir={workdir}", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


@pytest.mark.slow
def test_bucket_run_survives_sigkill_and_resumes_bit_identical(gcs, tmp_path):
    """SIGKILL once the first checkpoint is in the bucket; the same command then resumes from the
    bucket and ends with parameters bit-identical to an uninterrupted run on a local disk."""
    run = f"gs://{BUCKET}/killed"
    proc = _train(run, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while "killed/checkpoints/latest/20/commit_success.txt" not in gcs.objects(BUCKET, "killed/"):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint in the bucket after 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    resumed = _train(run, cwd=tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert f"Resuming {run} from step" in out + err
    reference = _train(tmp_path / "reference", cwd=tmp_path)
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-3000:]

    step, got = final_params(run)
    ref_step, want = final_params(tmp_path / "reference")
    assert step == ref_step == 120
    for a, b in zip(jax_leaves(got), jax_leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    # No local folder named after the URL; the run's files are objects in the bucket.
    assert not (tmp_path / "gs:").exists()
    names = gcs.objects(BUCKET, "killed/")
    assert "killed/config.json" in names and "killed/metrics.jsonl" in names
    assert any(n.startswith("killed/events.out.tfevents.") for n in names)
    rows = rundir.read_metrics(run)
    for split in ("train", "eval"):
        steps = [r["step"] for r in rows if r["split"] == split]
        assert steps == sorted(set(steps)), f"{split} rows repeated or out of order: {steps}"
    assert [r["step"] for r in rows if r["split"] == "eval"] == [44, 88, 120]
    # The TensorBoard files in the bucket hold the last values too (written when the writer
    # closes, then uploaded).
    tags = set()
    for name in (n for n in names if "events.out.tfevents." in n):
        local = tmp_path / name.rsplit("/", 1)[1]
        local.write_bytes(rundir.as_path(f"gs://{BUCKET}/{name}").read_bytes())
        tags |= {(v.tag, e.step) for e in _events(local) for v in e.summary.value}
    assert ("eval/accuracy", 120) in tags and ("train/loss", 120) in tags


def _events(path):
    """The TensorBoard `Event` records of an event file (read with TensorFlow's own reader)."""
    from tensorflow.core.util import event_pb2

    from jaxcnn.data.tf import tf

    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        yield event_pb2.Event.FromString(record)


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_init_from_and_the_run_readers_on_a_bucket_run(gcs, capsys):
    """--init_from=gs://RUN, and features / neighbors / visualize read a run in the bucket and
    write their outputs into it."""
    src, dst = f"gs://{BUCKET}/source", f"gs://{BUCKET}/finetuned"
    common = ["--dataset=digits", "--arch=resnet8", "--batch_size=32", "--lr=0.05"]
    assert cli.invoke(train, [*common, "--steps=44", f"--workdir={src}"]) == 0
    assert cli.invoke(train, [*common, "--steps=2", f"--workdir={dst}", f"--init_from={src}"]) == 0
    assert f"--init_from={src}: " in capsys.readouterr().out

    assert cli.invoke(features, [f"--workdir={src}", "--split=test"]) == 0
    assert cli.invoke(neighbors, [f"--workdir={src}", "--k=4"]) == 0
    assert cli.invoke(visualize, ["filters", f"--workdir={src}"]) == 0
    names = gcs.objects(BUCKET, "source/")
    made = [n for n in names if n.startswith("source/features_test_") and n.endswith(".npz")]
    assert made and "source/filters.png" in names
    assert any(n.startswith("source/neighbors_") and n.endswith(".png") for n in names)
    with rundir.as_path(f"gs://{BUCKET}/{made[0]}").open("rb") as f:
        npz = np.load(f)
        assert npz["features"].shape[0] == 360 and npz["labels"].shape == (360,)
    cfg = json.loads(rundir.as_path(f"{dst}/config.json").read_text())
    assert cfg["init_from"] == src


def test_weights_file_in_a_bucket(gcs):
    """A .safetensors file in a bucket reads as a local one does (what --init_from=gs://... uses)."""
    from safetensors.numpy import save

    from jaxcnn.weights import convert

    arrays = {"conv1.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)}
    rundir.as_path(f"gs://{BUCKET}/weights/w.safetensors").write_bytes(save(arrays))
    got = convert.load_state_dict(f"gs://{BUCKET}/weights/w.safetensors")
    np.testing.assert_array_equal(got["conv1.weight"], arrays["conv1.weight"])
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        convert.load_state_dict(f"gs://{BUCKET}/weights/missing.safetensors")


def test_a_damaged_checkpoint_in_a_bucket_is_detected_and_moved_aside(gcs):
    """In a bucket too: 64 flipped bytes in the newest checkpoint's largest array object are
    detected, the older checkpoint restores, and the damaged one is moved (copied, then deleted)
    to checkpoints/damaged/ whole."""
    import jax
    import jax.numpy as jnp
    from etils import epath

    root = f"gs://{BUCKET}/damaged"
    state = {"w": jnp.arange(4096.0).reshape(64, 64), "step": jnp.int32(0)}
    ckpt = rundir.Checkpointer(root, keep=3)
    for step in (10, 20):
        ckpt.save(step, jax.tree.map(lambda x, s=step: x + s, state), {"epoch": step / 10})
    ckpt.wait()
    ckpt.close()
    names = [o for o in gcs.objects(BUCKET, "damaged/checkpoints/latest/20/state/d/")]
    assert names, gcs.objects(BUCKET, "damaged/")
    biggest = max(names, key=lambda o: len(epath.Path(f"gs://{BUCKET}/{o}").read_bytes()))
    obj = epath.Path(f"gs://{BUCKET}/{biggest}")
    raw = bytearray(obj.read_bytes())
    for i in np.linspace(0, len(raw) - 1, 64).astype(int):
        raw[i] ^= 0xFF
    obj.write_bytes(bytes(raw))
    before = sorted(
        o.split("latest/20/", 1)[1] for o in gcs.objects(BUCKET, "damaged/checkpoints/latest/20/")
    )

    ckpt = rundir.Checkpointer(root, keep=3)
    seen = []
    tree, meta, step = ckpt.restore_newest_intact(None, on_damaged=seen.append)
    assert step == 10 and meta == {"epoch": 1.0} and [e.step for e in seen] == [20]
    np.testing.assert_array_equal(tree["w"], np.arange(4096.0).reshape(64, 64) + 10)
    (where,) = ckpt.set_aside(seen)
    assert str(where) == f"{root}/checkpoints/damaged/latest-20"
    assert ckpt.latest_step() == 10
    ckpt.close()
    assert not gcs.objects(BUCKET, "damaged/checkpoints/latest/20/")
    after = sorted(
        o.split("latest-20/", 1)[1]
        for o in gcs.objects(BUCKET, "damaged/checkpoints/damaged/latest-20/")
    )
    assert after == before
