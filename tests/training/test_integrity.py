"""Checkpoint integrity: damage of every kind to the newest checkpoint is detected, never loaded,
and a resume falls back to the newest intact one (jaxcnn.integrity, rundir.Checkpointer)."""

import json
import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import integrity, rundir
from tests.helpers import digits_config


def _state(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    params = {
        "stem": {"conv": {"kernel": jnp.asarray(rng.standard_normal((3, 3, 16, 64)), jnp.float32)}},
        "head": {"bias": jnp.asarray(rng.standard_normal(10), jnp.float32)},
    }
    opt = optax.sgd(0.1, momentum=0.9)
    opt_state = jax.tree.map(lambda x: x + 1.0, opt.init(params))  # named tuples, non-zero
    return {"step": jnp.int32(seed), "params": params, "opt_state": opt_state}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A run directory with checkpoints at steps 10 and 20 (different arrays), written once."""
    root = tmp_path_factory.mktemp("pristine")
    ckpt = rundir.Checkpointer(root, keep=3)
    for step in (10, 20):
        ckpt.save(step, _state(step), {"epoch": step / 10, "note": "x" * 40})
    ckpt.wait()
    ckpt.close()
    return root


def _copy(pristine, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(pristine, root)
    return root


def _files(step_dir) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), step_dir) for d, _, fs in os.walk(step_dir) for f in fs
    )


def _restore(root, step=None):
    ckpt = rundir.Checkpointer(root, create=False)
    try:
        return ckpt.restore(None, step)
    finally:
        ckpt.close()


def _equal_trees(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )


def _expected(step: int) -> dict:
    """The state as restored without a target (named tuples come back as containers)."""
    s = _state(step)
    return {k: s[k] for k in sorted(s)}


def test_crc32c_is_the_castagnoli_checksum():
    # The standard check value of CRC-32C (RFC 3720, appendix B.4): "123456789" -> 0xE3069283.
    assert integrity.crc32c(np.frombuffer(b"123456789", np.uint8)) == 0xE3069283
    # Bytes in C order, whatever the array's strides.
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert integrity.crc32c(a.T) == integrity.crc32c(np.ascontiguousarray(a.T))
    assert integrity.crc32c(a.T) != integrity.crc32c(a)


def test_an_intact_checkpoint_restores_bit_for_bit(pristine):
    for step in (10, 20):
        state, meta = _restore(pristine, step)
        assert _equal_trees(state, _expected(step))
        assert meta == {"epoch": step / 10, "note": "x" * 40}  # no checkpointer keys leak out


MODES = ("delete", "empty", "truncate", "flip64")


def _damage(path: str, mode: str) -> None:
    data = bytearray(pathlib.Path(path).read_bytes())
    if mode == "delete":
        os.remove(path)
        return
    if mode == "empty":
        data = bytearray()
    elif mode == "truncate":
        data = data[: len(data) // 2]
    else:  # 64 bytes flipped, spread over the file (as in the report that led to checksums)
        for i in np.linspace(0, len(data) - 1, num=min(64, len(data))).astype(int):
            data[i] ^= 0xFF
    pathlib.Path(path).write_bytes(bytes(data))


# Files whose damage must be detected, and how: the commit markers are empty-content flags (only
# their presence counts), every metadata file and the arrays in any way.
MUST_DETECT = {
    "commit_success.txt": ("delete",),
    "meta/commit_success.txt": ("delete",),
    "integrity/commit_success.txt": ("delete",),
    "state/commit_success.txt": ("delete",),
    "_CHECKPOINT_METADATA": MODES,
    "meta/metadata": MODES,
    "integrity/metadata": MODES,
    "state/_METADATA": MODES,
    "state/manifest.ocdbt": MODES,
}


def test_every_kind_of_damage_to_every_file_is_detected_or_harmless(pristine, tmp_path):
    """Each file of the newest checkpoint, deleted / emptied / truncated / 64 bytes flipped: the
    restore either raises CheckpointDamagedError naming the step and its directory, or gives back
    exactly what was saved (Orbax keeps some files it does not read back). Never other data."""
    names = _files(pristine / "checkpoints/latest/20")
    data_files = [n for n in names if n.startswith("state/d/")]
    assert data_files and set(MUST_DETECT) <= set(names), names
    detected, harmless = [], []
    for name in names:
        for mode in MODES:
            case = tmp_path / f"{len(detected) + len(harmless)}"
            root = _copy(pristine, case)
            step_dir = root / "checkpoints/latest/20"
            _damage(str(step_dir / name), mode)
            try:
                state, meta = _restore(root)
            except rundir.CheckpointDamagedError as e:
                assert e.step == 20 and str(step_dir) in str(e), str(e)
                assert "checkpoint step 20 in" in str(e) and "\n" not in str(e)
                detected.append((name, mode))
            else:
                assert _equal_trees(state, _expected(20)), (name, mode)
                assert meta["epoch"] == 2.0
                harmless.append((name, mode))
            shutil.rmtree(case)
    must = MUST_DETECT | {name: MODES for name in data_files}
    missed = [(n, m) for n, modes in must.items() for m in modes if (n, m) not in detected]
    assert not missed, missed


def test_damage_that_keeps_every_file_readable_is_caught_by_the_checksums(pristine, tmp_path):
    """Valid files with other contents: edited metadata values, the arrays of another save."""
    root = _copy(pristine, tmp_path)
    step_dir = root / "checkpoints/latest/20"
    meta_file = step_dir / "meta/metadata"
    meta = json.loads(meta_file.read_text())
    meta["epoch"] = 1.5
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(rundir.CheckpointDamagedError, match="metadata .meta. does not match"):
        _restore(root)

    root = _copy(pristine, tmp_path / "b")
    step_dir = root / "checkpoints/latest/20"
    shutil.rmtree(step_dir / "state")
    shutil.copytree(root / "checkpoints/latest/10/state", step_dir / "state")
    with pytest.raises(rundir.CheckpointDamagedError, match="does not match its checksum"):
        _restore(root)

    root = _copy(pristine, tmp_path / "c")
    manifest_file = root / "checkpoints/latest/20/integrity/metadata"
    manifest = json.loads(manifest_file.read_text())
    manifest["arrays"]["params/head/bias"]["crc32c"] ^= 1
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(rundir.CheckpointDamagedError, match="manifest does not match its own"):
        _restore(root)

    root = _copy(pristine, tmp_path / "d")
    for item in ("state", "meta", "integrity"):
        case = _copy(pristine, tmp_path / f"item-{item}")
        shutil.rmtree(case / "checkpoints/latest/20" / item)
        with pytest.raises(rundir.CheckpointDamagedError, match=item):
            _restore(case)


def test_a_declared_huge_array_is_refused_before_anything_is_read(pristine, tmp_path, monkeypatch):
    """Metadata that declares a 10^12-element array: refused by the layout check, before Orbax
    is asked for a single array (so nothing is allocated)."""
    root = _copy(pristine, tmp_path)
    ckpt = rundir.Checkpointer(root, create=False)
    real = ckpt._state_metadata

    def huge(step, which):
        saved = real(step, which)
        saved["params"]["head"]["bias"] = jax.ShapeDtypeStruct((10**6, 10**6), np.float32)
        return saved

    monkeypatch.setattr(ckpt, "_state_metadata", huge)
    calls = []
    orig_restore = ckpt.latest.restore

    def spy(step, args=None):
        calls.append(sorted(args.keys()))
        return orig_restore(step, args=args)

    monkeypatch.setattr(ckpt.latest, "restore", spy)
    with pytest.raises(rundir.CheckpointDamagedError, match=r"params/head/bias is recorded as"):
        ckpt.restore(None, 20)
    assert all("state" not in c for c in calls), calls  # only the small JSON items were read
    ckpt.close()


def test_fallback_skips_damaged_checkpoints_and_stops_when_none_is_intact(pristine, tmp_path):
    root = _copy(pristine, tmp_path)
    data = [n for n in _files(root / "checkpoints/latest/20") if n.startswith("state/d/")]
    _damage(str(root / "checkpoints/latest/20" / data[0]), "flip64")
    ckpt = rundir.Checkpointer(root, create=False)
    seen = []
    state, meta, step = ckpt.restore_newest_intact(None, on_damaged=seen.append)
    assert step == 10 and _equal_trees(state, _expected(10)) and meta["epoch"] == 1.0
    assert [e.step for e in seen] == [20]
    # Set aside, not deleted; the series then starts at 10.
    (where,) = ckpt.set_aside(seen)
    assert where == root / "checkpoints/damaged/latest-20" and where.is_dir()
    assert ckpt.latest_step() == 10 and ckpt.candidate_steps() == [10]
    ckpt.close()

    os.remove(root / "checkpoints/latest/10/commit_success.txt")
    ckpt = rundir.Checkpointer(root, create=False)
    with pytest.raises(rundir.CheckpointDamagedError, match=r"no older checkpoint .* intact"):
        ckpt.restore_newest_intact(None)
    ckpt.close()


def test_checkpoints_without_checksums_still_restore(tmp_path):
    """Checkpoints of jaxcnn before 0.3 carry no checksums: they restore (checked for
    completeness and readability); a checkpoint that says it has checksums but lost them does not."""
    ckpt = rundir.Checkpointer(tmp_path, checksums=False)
    ckpt.save(5, _state(5), {"epoch": 0.5})
    ckpt.wait()
    ckpt.close()
    assert not (tmp_path / "checkpoints/latest/5/integrity").exists()
    state, meta = _restore(tmp_path)
    assert _equal_trees(state, _expected(5)) and meta == {"epoch": 0.5}


def test_readers_skip_a_damaged_newest_checkpoint_with_a_warning(pristine, tmp_path, capsys):
    root = _copy(pristine, tmp_path)
    rundir.write_json_atomic(root / "config.json", {"arch": "resnet8", "dataset": "digits"})
    os.remove(root / "checkpoints/latest/20/state/manifest.ocdbt")
    variables, step = rundir.RunDir(root).restore_variables("latest")
    assert step == 10
    np.testing.assert_array_equal(
        variables["params"]["head"]["bias"], _state(10)["params"]["head"]["bias"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: checkpoint step 20 in"), err
    assert (root / "checkpoints/latest/20").is_dir()  # a reader moves nothing


@pytest.mark.slow
def test_a_resume_falls_back_past_a_damaged_checkpoint_and_ends_bit_identical(tmp_path, capsys):
    """The trainer, resumed on a run whose newest checkpoint has flipped bytes in an array file:
    says so in one line, moves it to checkpoints/damaged/, resumes from the one before, and ends
    with exactly the parameters of an uninterrupted run."""
    from jaxcnn.training import loop

    cfg = digits_config(steps=12, checkpoint_every_steps=4)
    full = loop.train_and_evaluate(cfg, tmp_path / "full")
    stop_at = 9  # saves at 4 and 8, and at the interruption
    part = loop.train_and_evaluate(cfg, tmp_path / "run", should_stop=lambda s: s == stop_at)
    assert part.interrupted
    step_dir = tmp_path / f"run/checkpoints/latest/{stop_at}"
    data = [n for n in _files(step_dir) if n.startswith("state/d/")]
    biggest = max(data, key=lambda n: os.path.getsize(step_dir / n))
    _damage(str(step_dir / biggest), "flip64")
    capsys.readouterr()
    resumed = loop.train_and_evaluate(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    assert f"checkpoint step {stop_at} in" in out and "is damaged" in out
    assert "falling back to step 8" in out and "Resuming" in out and "from step 8" in out
    assert (tmp_path / f"run/checkpoints/damaged/latest-{stop_at}").is_dir()
    assert resumed.step == full.step and resumed.eval_accuracy == full.eval_accuracy
    a, _ = _restore(tmp_path / "full")
    b, _ = _restore(tmp_path / "run")
    assert _equal_trees(a, b)
    rows = rundir.read_metrics(tmp_path / "run")
    keys = [(r["step"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys))  # the rows after step 8 were logged once, anew


def test_a_resume_with_no_intact_checkpoint_stops_and_moves_nothing(tmp_path):
    """Every checkpoint of the run lost its commit marker: the trainer stops with one
    CheckpointDamagedError naming the newest, the steps it tried and what to do, and moves none."""
    from jaxcnn.training import loop

    cfg = digits_config(steps=4, checkpoint_every_steps=2)
    loop.train_and_evaluate(cfg, tmp_path)
    latest = tmp_path / "checkpoints/latest"
    steps = sorted(int(p.name) for p in latest.iterdir() if p.name.isdigit())
    assert steps == [2, 4]
    for step in steps:
        os.remove(latest / str(step) / "commit_success.txt")
    with pytest.raises(rundir.CheckpointDamagedError) as e:
        loop.train_and_evaluate(digits_config(steps=6, checkpoint_every_steps=2), tmp_path)
    message = str(e.value)
    assert message.startswith(f"checkpoint step 4 in {latest / '4'} is damaged: it has no commit")
    assert "no checkpoint of this run is intact (steps 4, 2 tried, none moved)" in message
    assert "\n" not in message
    assert not (tmp_path / "checkpoints/damaged").exists()
    assert sorted(int(p.name) for p in latest.iterdir() if p.name.isdigit()) == steps
