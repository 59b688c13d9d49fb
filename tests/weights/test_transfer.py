"""Transfer learning: partial restores, frozen parts, backbone learning rate, the model zoo."""

import dataclasses
import hashlib
import importlib.util
import json
import typing
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxcnn
from jaxcnn.config import get_config
from jaxcnn.rundir import Checkpointer
from jaxcnn.training import finetune, optim
from jaxcnn.training import loop as trainer
from jaxcnn.weights import loading, zoo

try:  # conftest.py imports torch before TensorFlow (the other order crashes)
    import torch
    import torchvision
except ImportError:
    torch = torchvision = None


def _shapes(name, classes, channels, size=32):
    model = jaxcnn.create_model(name, num_classes=classes)
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), train=False)
    )


def test_merge_reports_loaded_adapted_initialised_ignored():
    target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), _shapes("resnet8", 5, 1))
    source = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), _shapes("resnet8", 10, 3))
    source["params"]["extra"] = {"kernel": np.ones((2, 2), np.float32)}
    merged, report = loading.merge_variables(target, source)
    assert report.adapted == ["params/stem/conv/kernel"]
    assert set(report.initialised) == {"params/head/kernel", "params/head/bias"}
    assert "params/extra/kernel" in report.ignored and "params/head/kernel" in report.ignored
    # An RGB kernel of ones summed over its 3 input channels: 3 per tap.
    np.testing.assert_array_equal(merged["params"]["stem"]["conv"]["kernel"], 3.0)
    np.testing.assert_array_equal(merged["params"]["head"]["kernel"], 0.0)  # the target's init
    np.testing.assert_array_equal(merged["params"]["stage3_block1"]["conv2"]["conv"]["kernel"], 1.0)
    assert "loaded" in str(report) and "newly initialised" in str(report)


def test_freeze_selection_and_errors():
    params = _shapes("resnet8", 10, 1)["params"]
    assert finetune.frozen_modules(params, "none") == set()
    assert finetune.frozen_modules(params, "backbone") == set(params) - {"head"}
    assert finetune.frozen_modules(params, "stem,stage1") == {"stem", "stage1_block1"}
    with pytest.raises(ValueError, match="stage9.*stem"):
        finetune.frozen_modules(params, "stage9")


def test_backbone_learning_rate_multiplier():
    """Plain SGD, lr 0.5: the head moves by -0.5 g, the backbone by -0.5 * 0.1 g, frozen by 0."""
    cfg = get_config()
    cfg.optimizer, cfg.momentum, cfg.weight_decay, cfg.backbone_lr_mult = "sgd", 0.0, 0.0, 0.1
    params = {
        "stem": {"kernel": jnp.ones(3)},
        "body": {"kernel": jnp.ones(3)},
        "head": {"b": jnp.ones(2)},
    }
    labels = finetune.param_labels(params, {"stem"}, cfg.backbone_lr_mult)
    assert labels == {
        "stem": {"kernel": "frozen"},
        "body": {"kernel": "backbone"},
        "head": {"b": "train"},
    }
    tx = optim.make_optimizer(cfg, optax.constant_schedule(0.5), labels)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 2.0), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["head"]["b"], -1.0)
    np.testing.assert_allclose(updates["body"]["kernel"], -0.1, rtol=1e-6)
    np.testing.assert_array_equal(updates["stem"]["kernel"], 0.0)


def _cfg(**kw):
    cfg = get_config()
    cfg.arch, cfg.dataset, cfg.batch_size, cfg.steps = "resnet8", "digits", 32, 8
    cfg.log_every_steps, cfg.lr, cfg.eval_every_epochs = 4, 0.05, 1
    cfg.update(kw)
    return cfg


def _final(workdir):
    ckpt = Checkpointer(workdir)
    tree, _ = ckpt.restore()
    ckpt.close()
    return tree


def test_init_from_run_with_frozen_stem_and_stage1(tmp_path, capsys):
    """Fine-tune from an earlier run: frozen modules keep their parameters and BatchNorm statistics
    bit for bit, the rest trains."""
    trainer.train_and_evaluate(_cfg(), tmp_path / "pre")
    pre = _final(tmp_path / "pre")
    trainer.train_and_evaluate(
        _cfg(init_from=str(tmp_path / "pre"), freeze="stem,stage1", seed=1), tmp_path / "fine"
    )
    assert "--init_from=" in capsys.readouterr().out
    fine = _final(tmp_path / "fine")
    for col in ("params", "batch_stats"):
        for module in fine[col]:
            same = jax.tree.leaves(
                jax.tree.map(
                    lambda a, b: bool(np.array_equal(a, b)), pre[col][module], fine[col][module]
                )
            )
            if module in ("stem", "stage1_block1"):
                assert all(same), f"frozen {col}/{module} changed"
            else:
                assert not all(same), f"{col}/{module} did not train"


def test_init_from_errors_leave_nothing_on_disk(tmp_path):
    with pytest.raises(loading.InitFromError, match="no such run directory or weights file"):
        trainer.train_and_evaluate(_cfg(init_from=str(tmp_path / "nope")), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="matches no top-level module"):
        trainer.train_and_evaluate(_cfg(freeze="layer4"), tmp_path / "run2")


def test_zoo_offline_message_and_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXCNN_CACHE", str(tmp_path))
    monkeypatch.setenv("JAXCNN_OFFLINE", "1")
    key, entry = zoo.zoo_entry("resnet50")
    assert key == "torchvision:resnet50" and entry["url"].startswith(
        "https://download.pytorch.org/"
    )
    assert entry["top1"] > 75 and entry["input_size"] == 224
    path = tmp_path / "weights" / entry["url"].rsplit("/", 1)[-1]
    with pytest.raises(loading.InitFromError, match=f"fetch {entry['url']} and save it as {path}"):
        zoo.weights_file(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the weights")
    with pytest.raises(loading.InitFromError, match="does not match the published checksum"):
        zoo.weights_file(key)
    with pytest.raises(loading.InitFromError, match="not resnet18"):
        zoo.weights_file(key, "resnet18")
    with pytest.raises(loading.InitFromError, match="Closest"):
        zoo.zoo_entry("torchvision:resnet5")


def test_load_pretrained_converts_once_and_caches(tmp_path, monkeypatch, capsys):
    """A torchvision ShuffleNet V2 state dict placed in the cache (as if downloaded) loads, equals a
    direct conversion, and the second call reads the cached Orbax checkpoint; a damaged cache is
    converted again."""
    if torch is None:
        pytest.skip("needs the torch extra")

    from jaxcnn.weights import convert

    monkeypatch.setenv("JAXCNN_CACHE", str(tmp_path))
    monkeypatch.setenv("JAXCNN_OFFLINE", "1")
    torch.manual_seed(0)
    sd = {k: v.numpy() for k, v in torchvision.models.shufflenet_v2_x0_5().state_dict().items()}
    key, entry = zoo.zoo_entry("shufflenet_v2_x0_5")
    path = tmp_path / "weights" / entry["url"].rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True)
    # A .pth as torchvision publishes it; its checksum stands in for the published one.
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(zoo.ZOO, key, dataclasses.replace(entry, sha256_prefix=digest[:10]))
    model, variables, meta = loading.load_pretrained("shufflenet_v2_x0_5")
    assert meta["sha256"] == digest and (tmp_path / "converted").exists()
    template = _shapes("shufflenet_v2_x0_5", 1000, 3, 64)
    expected = convert.from_torch("shufflenet_v2_x0_5", sd, template)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    path.unlink()  # the second load needs only the converted cache
    _, again, _ = loading.load_pretrained("shufflenet_v2_x0_5")
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)

    # A damaged cache (64 bytes flipped in its largest array file) is never used: it is converted
    # again from the weights file, with a warning.
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
    files = list((tmp_path / "converted").rglob("variables/d/*"))
    biggest = max(files, key=lambda f: f.stat().st_size)
    raw = bytearray(biggest.read_bytes())
    for i in np.linspace(0, len(raw) - 1, 64).astype(int):
        raw[i] ^= 0xFF
    biggest.write_bytes(bytes(raw))
    capsys.readouterr()
    _, third, _ = loading.load_pretrained("shufflenet_v2_x0_5")
    assert "are damaged" in capsys.readouterr().err
    for a, b in zip(jax.tree.leaves(third), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_zoo_json_entries_are_typed_and_registered():
    """Every zoo.json record loads into a ZooEntry whose fields have their declared types, for an
    architecture jaxcnn registers; entries read like the dicts they were (`entry["arch"]`)."""
    hints = typing.get_type_hints(zoo.ZooEntry)
    models = set(jaxcnn.list_models())
    assert len(zoo.ZOO) >= 100 and list(zoo.ZOO) == sorted(zoo.ZOO)
    for key, entry in zoo.ZOO.items():
        assert isinstance(entry, zoo.ZooEntry) and key.split(":", 1)[0] in ("torchvision", "timm")
        assert entry.arch in models, key
        for field in dataclasses.fields(entry):
            value = getattr(entry, field.name)
            assert _is_instance(value, hints[field.name]), (key, field.name, value)
        assert entry.interpolation in ("bilinear", "bicubic") and entry.labels == "imagenet1k"
        assert entry.sha256_prefix or "huggingface.co/" in entry.url, key
        assert "None" not in entry.source, key
        assert entry["arch"] == entry.arch and dict(entry)["url"] == entry.url
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.arch = "resnet18"
    with pytest.raises(ValueError, match="unknown"):
        zoo.ZooEntry.from_json({**dict(entry), "extra": 1})


def _is_instance(value, hint) -> bool:
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return (
            isinstance(value, tuple)
            and len(value) == len(args)
            and all(isinstance(v, a) for v, a in zip(value, args, strict=True))
        )
    return isinstance(value, typing.get_args(hint) or hint)


def test_zoo_json_is_the_generator_output():
    """tools/make_zoo.py, run on the installed torchvision and timm, writes the committed zoo.json
    (skipped without them, or with other versions than the ones zoo.json was made from)."""
    script = Path(jaxcnn.__file__).resolve().parents[1] / "tools" / "make_zoo.py"
    if torch is None or importlib.util.find_spec("timm") is None or not script.exists():
        pytest.skip("needs the torch extra (torchvision, timm) and a source checkout")
    spec = importlib.util.spec_from_file_location("make_zoo", script)
    make_zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_zoo)
    committed = Path(zoo.__file__).with_name("zoo.json").read_text("utf-8")
    made_from = json.loads(committed)["sources"]
    if make_zoo.versions() != made_from:
        pytest.skip(f"zoo.json was made from {made_from}, installed: {make_zoo.versions()}")
    assert make_zoo.render(make_zoo.build(), made_from) == committed, (
        "zoo.json is stale: run python tools/make_zoo.py"
    )
