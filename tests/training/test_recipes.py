"""Today's recipe pieces through the real trainer on digits: exact resume with EMA, Mixup / CutMix,
RandAugment, random erasing and accumulation on; float16 runs; EMA weights for the commands that
read a run; profiling; the recipe configs of experiments/ (two steps each)."""

import importlib
import importlib.util
import json
import pathlib
import re

import jax
import numpy as np
import pytest
from helpers import digits_config, final_params, read_metrics

from jaxcnn import cli, features, rundir
from jaxcnn.analysis.features import load_run
from jaxcnn.training import loop as trainer

ROOT = pathlib.Path(__file__).resolve().parents[2]

RECIPE = dict(
    ema_decay=0.99,
    mixup_alpha=0.2,
    cutmix_alpha=1.0,
    label_smoothing=0.1,
    randaugment="rand-m9-n2",
    random_erasing=0.25,
    grad_accum_steps=2,
)


def _assert_trees_equal(a, b):
    for (path, x), y in zip(
        jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True
    ):
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow
def test_resume_is_exact_with_every_recipe_piece_on(tmp_path):
    cfg = digits_config(steps=16, log_every_steps=4, **RECIPE)
    full = trainer.train_and_evaluate(cfg, tmp_path / "full")
    part = trainer.train_and_evaluate(cfg, tmp_path / "resumed", should_stop=lambda s: s == 8)
    assert part.interrupted and part.step == 8  # a log step: the rows line up
    resumed = trainer.train_and_evaluate(cfg, tmp_path / "resumed")
    assert (resumed.eval_accuracy, resumed.ema_accuracy) == (full.eval_accuracy, full.ema_accuracy)
    step_a, a = final_params(tmp_path / "full")
    step_b, b = final_params(tmp_path / "resumed")
    assert step_a == step_b == 16 and "ema" in a
    _assert_trees_equal(a, b)  # parameters, BatchNorm statistics, EMA, optimizer state, rng
    rows_a, rows_b = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "resumed")
    assert [(r["step"], r["split"]) for r in rows_a] == [(r["step"], r["split"]) for r in rows_b]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-6)
    evals = [r for r in rows_a if r["split"] == "eval"]
    assert {"accuracy", "loss", "ema_accuracy", "ema_loss"} <= set(evals[-1])
    # The EMA is a different set of weights from the trained ones.
    assert not np.allclose(a["ema"]["params"]["head"]["kernel"], a["params"]["head"]["kernel"])


def test_ema_weights_for_the_commands_that_read_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    trainer.train_and_evaluate(digits_config(steps=6, ema_decay=0.9), run)
    _, tree = final_params(run)
    raw, ema = load_run(run), load_run(run, weights="ema")
    _assert_trees_equal(raw.variables["params"], tree["params"])
    _assert_trees_equal(ema.variables["params"], tree["ema"]["params"])
    _assert_trees_equal(ema.variables["batch_stats"], tree["ema"]["batch_stats"])
    args = [f"--workdir={run}", "--split=test", "--weights=ema", f"--output={tmp_path}/f.npz"]
    assert cli.invoke(features, args) == 0
    with np.load(tmp_path / "f.npz") as z:
        assert z["features"].shape == (360, 64)
    # predict with the EMA: the probabilities are the EMA network's, not the trained one's.
    from PIL import Image
    from sklearn.datasets import load_digits

    from jaxcnn import predict
    from jaxcnn.serving.classifier import Classifier

    image = (load_digits().images[0] * 255 / 16).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "digit.png")
    capsys.readouterr()
    args = [f"--workdir={run}", "--weights=ema", "--format=json", str(tmp_path / "digit.png")]
    assert cli.invoke(predict, args) == 0
    shown = json.loads(capsys.readouterr().out)[0]["probabilities"]
    p_ema = Classifier.from_run(run, weights="ema").predict(tmp_path / "digit.png", 10)[0]
    p_raw = Classifier.from_run(run).predict(tmp_path / "digit.png", 10)[0]
    assert shown[0] == pytest.approx(p_ema.probabilities[0], abs=1e-6)
    assert not np.allclose(sorted(p_ema.probabilities), sorted(p_raw.probabilities))
    # A run without EMA: one line saying so, no traceback.
    plain = tmp_path / "plain"
    trainer.train_and_evaluate(digits_config(steps=2), plain)
    capsys.readouterr()
    assert cli.invoke(features, [f"--workdir={plain}", "--weights=ema"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "keeps no EMA" in err[0] and "--weights=raw" in err[0]
    with pytest.raises(rundir.RunDirError, match="keeps no EMA"):
        load_run(plain, weights="ema")


def test_float16_run_resumes_exactly_and_tracks_float32(tmp_path):
    cfg = digits_config(steps=12, dtype="float16", log_every_steps=2)
    full = trainer.train_and_evaluate(cfg, tmp_path / "full")
    part = trainer.train_and_evaluate(cfg, tmp_path / "part", should_stop=lambda s: s == 6)
    assert part.interrupted
    _, tree = final_params(tmp_path / "part")
    assert float(tree["loss_scale"]["scale"]) == 2.0**15  # no overflow: the scale it started at
    assert tree["params"]["head"]["kernel"].dtype == np.float32  # float32 master weights
    resumed = trainer.train_and_evaluate(cfg, tmp_path / "part")
    _assert_trees_equal(final_params(tmp_path / "full")[1], final_params(tmp_path / "part")[1])
    assert resumed.eval_loss == full.eval_loss
    rows = [r for r in read_metrics(tmp_path / "full") if r["split"] == "train"]
    assert all(r["loss_scale"] == 2.0**15 for r in rows) and not any("skipped" in r for r in rows)
    f32 = trainer.train_and_evaluate(digits_config(steps=12), tmp_path / "f32")
    assert full.eval_loss == pytest.approx(f32.eval_loss, rel=0.02)  # float16 arithmetic only


def test_float16_divergence_is_skipped_then_stops_with_the_float32_message(tmp_path, capsys):
    cfg = digits_config(
        steps=30,
        dtype="float16",
        lr=1e30,
        log_every_steps=1,
        checkpoint_every_steps=1,
        max_skipped_steps=3,
    )
    with pytest.raises(trainer.TrainingError, match=r"\(the last of 4 in a row\)") as error:
        trainer.train_and_evaluate(cfg, tmp_path)
    fatal = int(re.search(r"non-finite loss or gradient at step (\d+)", str(error.value)).group(1))
    out = capsys.readouterr().out
    assert "skipped 1 step(s) with a non-finite" in out and "loss scale now" in out
    # Every step is saved, the skipped ones too, with the last good weights: nothing non-finite
    # reached a checkpoint, and nothing at or after the fatal step was saved.
    ckpt = rundir.Checkpointer(tmp_path)
    steps = ckpt.latest.all_steps()
    assert steps and max(steps) == fatal - 1
    for step in steps:
        tree, meta = ckpt.restore(step=step)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(tree) if x.dtype.kind == "f")
    assert meta["skip_streak"] == 3 and meta["skipped_steps"] >= 3  # the last save's
    ckpt.close()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_float32_and_bfloat16_stop_at_the_first_non_finite_step(tmp_path, dtype):
    cfg = digits_config(steps=10, dtype=dtype, lr=1e30, log_every_steps=1)
    with pytest.raises(trainer.TrainingError, match=r"at step \d+: training stopped") as error:
        trainer.train_and_evaluate(cfg, tmp_path)
    assert "in a row" not in str(error.value)  # the first one stops the run


def test_profile_steps_write_a_trace_into_the_run(tmp_path):
    trainer.train_and_evaluate(digits_config(steps=4, profile_steps="2,3"), tmp_path)
    traces = list((tmp_path / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (dict(ema_decay=1.5), "ema_decay must be between 0 and 1"),
        (dict(mixup_alpha=-1.0), "mixup_alpha"),
        (dict(mixup_alpha=0.2, batch_size=33), "must be even"),
        (dict(grad_accum_steps=5), "does not split into --config.grad_accum_steps=5"),
        (dict(max_skipped_steps=-1), "max_skipped_steps must be >= 0"),
        (dict(profile_steps="20,10"), "profile_steps must be FIRST,LAST"),
        (dict(randaugment="rand-x"), "randaugment"),
    ],
)
def test_bad_recipe_settings_are_one_line_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        trainer.validate(digits_config(**bad))


def _recipe(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_torchvision_recipe_is_the_published_one():
    """torchvision's ResNet-50 "new recipe" (references/classification/README.md, v2 weights)."""
    cfg = _recipe("torchvision_recipe")
    trainer.validate(cfg)
    assert (cfg.arch, cfg.epochs, cfg.batch_size, cfg.optimizer) == ("resnet50", 600, 1024, "sgd")
    assert (cfg.lr, cfg.warmup_epochs, cfg.schedule, cfg.weight_decay) == (0.5, 5, "cosine", 2e-5)
    assert (cfg.label_smoothing, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.random_erasing) == (
        0.1,
        0.2,
        1.0,
        0.1,
    )
    assert cfg.ema_decay is not None and cfg.augment


def test_timm_a1_recipe_is_the_published_one():
    """timm's "ResNet strikes back" A1 (Wightman et al. 2021, Table 1)."""
    cfg = _recipe("timm_a1")
    trainer.validate(cfg)
    assert (cfg.arch, cfg.epochs, cfg.batch_size, cfg.optimizer) == ("resnet50", 600, 2048, "lamb")
    assert (cfg.lr, cfg.weight_decay, cfg.warmup_epochs) == (5e-3, 0.01, 5)
    assert (cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mixup_switch_prob) == (0.2, 1.0, 0.5)
    assert cfg.randaugment.startswith("rand-m7")


@pytest.mark.parametrize("name", ["torchvision_recipe", "timm_a1"])
def test_recipe_configs_run_two_steps_on_digits(tmp_path, name):
    """Every setting of the recipe but its network, data and length: ResNet-8 on digits."""
    cfg = _recipe(name)
    cfg.update(arch="resnet8", dataset="digits", image_size=None, batch_size=32, steps=2, epochs=2)
    cfg.warmup_epochs = 0.02
    result = trainer.train_and_evaluate(cfg, tmp_path)
    assert result.step == 2 and result.eval_accuracy is not None
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["mixup_alpha"] == cfg.mixup_alpha and saved["optimizer"] == cfg.optimizer


def test_fine_tuning_with_an_ema_starts_the_average_from_the_source_weights(tmp_path):
    source = tmp_path / "source"
    trainer.train_and_evaluate(digits_config(steps=3), source)
    cfg = digits_config(steps=2, ema_decay=0.9, init_from=str(source))
    result = trainer.train_and_evaluate(cfg, tmp_path / "tuned")
    assert result.step == 2 and result.ema_accuracy is not None


def test_a_float16_checkpoint_without_a_loss_scale_resumes_with_a_fresh_one(tmp_path, capsys):
    """float16 runs from before loss scaling existed saved no `loss_scale`."""
    cfg = digits_config(steps=4, dtype="float16")
    trainer.train_and_evaluate(cfg, tmp_path / "new", should_stop=lambda s: s == 2)
    tree, meta = rundir.Checkpointer(tmp_path / "new").restore()
    del tree["loss_scale"]
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_bytes((tmp_path / "new" / "config.json").read_bytes())
    ckpt = rundir.Checkpointer(old)
    ckpt.save(2, tree, meta)
    ckpt.wait()
    ckpt.close()
    capsys.readouterr()
    result = trainer.train_and_evaluate(cfg, old)
    assert result.step == 4
    assert "no float16 loss scale (an older run): starting at 2**15" in capsys.readouterr().out
    assert "loss_scale" in final_params(old)[1]


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("predict", ["--weights=ema", "x.png"], "--weights=ema reads a trained run"),
        ("visualize", ["filters", "--arch=resnet8", "--weights=ema"], "reads a trained run"),
    ],
)
def test_ema_weights_without_a_run_are_one_line_errors(module, args, message, capsys):
    command = importlib.import_module(f"jaxcnn.{module}")
    assert cli.invoke(command, args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
