"""Run-directory mistakes end in one line and status 2, before any device is used."""

import json

from jaxcnn import cli, features, train


def test_train_workdir_naming_a_file(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    status = cli.invoke(train, [f"--workdir={f}", "--dataset=digits", "--steps=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err == [f"error: --workdir={f} is a file, not a directory; name a directory"]
    assert f.read_text() == "mine"


def test_train_workdir_url_missing_a_slash(tmp_path, capsys, monkeypatch):
    """`gs:/bucket/run` (one slash) is refused, not made into a local folder named `gs:`."""
    monkeypatch.chdir(tmp_path)
    status = cli.invoke(train, ["--workdir=gs:/bucket/run", "--dataset=digits", "--steps=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err == ["error: gs:/bucket/run is not a URL (a URL has two slashes: gs://bucket/...)"]
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_a_run_with_other_settings(tmp_path, capsys):
    (tmp_path / "config.json").write_text(
        json.dumps({"arch": "resnet20", "dataset": "digits", "batch_size": 32})
    )
    status = cli.invoke(train, [f"--workdir={tmp_path}", "--dataset=digits", "--arch=resnet8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "holds a run with other settings (arch: 'resnet20' -> 'resnet8'" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # nothing written


def test_features_on_a_run_without_checkpoints(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"arch": "resnet8", "dataset": "digits"}))
    assert cli.invoke(features, [f"--workdir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: no latest checkpoint in {tmp_path}/checkpoints/latest"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_debug_switch_shows_the_traceback(tmp_path, monkeypatch):
    import pytest

    from jaxcnn import rundir

    monkeypatch.setenv("JAXCNN_DEBUG", "1")
    with pytest.raises(rundir.RunDirError):
        cli.invoke(features, [f"--workdir={tmp_path / 'nope'}"])
