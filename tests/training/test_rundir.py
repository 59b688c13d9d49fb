"""The run directory's contract: atomic files with the usual mode, config checks, metrics rows."""

import json
import os
import stat

import pytest

from jaxcnn import rundir


def usual_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_atomic_path_writes_whole_files_with_the_usual_mode(tmp_path):
    target = tmp_path / "sub" / "config.json"
    rundir.write_json_atomic(target, {"b": 1, "a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    # config.json was written 0600 by a mkstemp-based writer in 0.1.
    assert stat.S_IMODE(target.stat().st_mode) == usual_mode()
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), rundir.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_read_config_says_what_is_missing(tmp_path):
    with pytest.raises(rundir.RunDirError, match="no run directory at"):
        rundir.RunDir(tmp_path / "nope").read_config()
    with pytest.raises(rundir.RunDirError, match="has no config.json"):
        rundir.RunDir(tmp_path).read_config()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(rundir.RunDirError, match="is not valid JSON"):
        rundir.RunDir(tmp_path).read_config()
    (tmp_path / "config.json").write_text('{"arch": "resnet8"}')
    with pytest.raises(rundir.RunDirError, match="lacks dataset"):
        rundir.RunDir(tmp_path).read_config()


def test_check_resumable_names_each_differing_setting(tmp_path):
    run = rundir.RunDir(tmp_path)
    saved = {"arch": "resnet8", "dataset": "digits", "batch_size": 32, "lr": 0.1, "seed": 0}
    run.write_config(saved)
    run.check_resumable(dict(saved, lr=0.05))  # the learning rate may change on resume
    with pytest.raises(rundir.RunDirError, match=r"batch_size: 32 -> 64, seed: 0 -> 1"):
        run.check_resumable(dict(saved, batch_size=64, seed=1))


def test_a_file_is_not_a_run_directory(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(rundir.RunDirError, match="is a file, not a directory"):
        rundir.RunDir(tmp_path / "f").check_not_a_file()
    rundir.RunDir(tmp_path / "new").check_not_a_file()  # not there yet: fine


def test_metrics_rows_and_truncation(tmp_path):
    log = rundir.MetricsLog(tmp_path)
    for step in (10, 20, 30):
        log.write(step, "train", loss=1.0 / step)
    log.write(30, "eval", accuracy=0.5)
    log.truncate_after(20)  # a resume from step 20 drops what an interrupted run logged after it
    log.close()
    rows = rundir.read_metrics(tmp_path)
    assert [(r["step"], r["split"]) for r in rows] == [(10, "train"), (20, "train")]
    assert rows[0]["loss"] == pytest.approx(0.1)
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())


def test_disabled_metrics_write_nothing(tmp_path):
    log = rundir.MetricsLog(tmp_path / "run", enabled=False)
    log.write(1, "train", loss=1.0)
    log.close()
    assert not (tmp_path / "run").exists()


def test_restore_variables_without_a_checkpoint(tmp_path):
    with pytest.raises(rundir.RunDirError, match="no best checkpoint"):
        rundir.RunDir(tmp_path).restore_variables("best")
    with pytest.raises(rundir.RunDirError, match="unknown checkpoint 'newest'"):
        rundir.RunDir(tmp_path).restore_variables("newest")
    assert list(tmp_path.iterdir()) == []  # asking created nothing


@pytest.mark.parametrize(
    ("path", "refused"),
    [("gs:/b/run", True), ("s3:/b/run", True), ("gs://b/run", False), ("C:/runs", False)]
    + [("runs/a:b", False)],
)
def test_as_path_refuses_a_url_that_lost_a_slash(path, refused):
    """`gs:/b/run` would become a local folder named `gs:`; a drive letter or a colon in a
    folder name is a local path."""
    if refused:
        with pytest.raises(rundir.RunDirError, match="not a URL"):
            rundir.as_path(path)
    else:
        assert str(rundir.as_path(path)).endswith(path.split("://")[-1])
