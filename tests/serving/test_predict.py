"""`jaxcnn.predict` and `jaxcnn.Classifier`: a run fine-tuned on a folder of digits classifies its
held-out images at its accuracy, the command and the Python API agree, bad images get one line."""

import json

import helpers
import numpy as np
import pytest
from PIL import Image

import jaxcnn
from jaxcnn import cli
from jaxcnn.serving.classifier import Classifier, Preprocess, imagenet_class_names


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """(run directory, digits folder, final val accuracy): ResNet-8 trained one epoch on the digits
    written as PNG files (the settings of the session's `run_dir`, so its compilations are reused)."""
    from jaxcnn.training import loop

    root = helpers.write_digits_folder(tmp_path_factory.mktemp("digits") / "d")
    cfg = helpers.digits_config(
        dataset=f"folder:{root}", epochs=1, augment=False, log_every_steps=44
    )
    workdir = tmp_path_factory.mktemp("folder_run")
    result = loop.train_and_evaluate(cfg, workdir)
    return workdir, root, result.eval_accuracy


def test_classifies_held_out_images_at_the_runs_accuracy(folder_run):
    workdir, root, accuracy = folder_run
    clf = jaxcnn.Classifier.from_run(workdir)
    assert clf.class_names == tuple(str(i) for i in range(10)) and clf.channels == 1
    predictions = clf.predict([root / "val"], top_k=3, batch_size=64)
    assert len(predictions) == 360
    truth = [p.source.split("/")[-2] for p in predictions]
    top1 = np.mean([p.classes[0] == t for p, t in zip(predictions, truth, strict=True)])
    # The trainer's own evaluation of the same images with the same transform.
    assert abs(top1 - accuracy) <= 1 / 360 + 1e-9, (top1, accuracy)
    p = predictions[0]
    assert len(p.classes) == 3 and p.probabilities == sorted(p.probabilities, reverse=True)
    assert 0 < sum(p.probabilities) <= 1 + 1e-6


def test_cli_and_python_api_agree(folder_run, tmp_path, capsys):
    import jaxcnn.predict as predict

    workdir, root, _ = folder_run
    images = sorted((root / "val" / "4").iterdir())[:5]
    out = tmp_path / "p.json"
    args = [f"--workdir={workdir}", "--format=json", f"--output={out}", "--top_k=2"]
    assert cli.invoke(predict, [*args, *map(str, images)]) == 0
    from_cli = json.loads(out.read_text())
    from_api = Classifier.from_run(workdir).predict(images, top_k=2)
    assert [r["source"] for r in from_cli] == [p.source for p in from_api]
    for r, p in zip(from_cli, from_api, strict=True):
        assert r["classes"] == p.classes
        np.testing.assert_allclose(r["probabilities"], p.probabilities, rtol=1e-6)
    capsys.readouterr()
    assert cli.invoke(predict, [f"--workdir={workdir}", "--format=csv", str(images[0])]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "image,rank,class,index,probability,error" and len(rows) == 1 + 5


def test_bad_images_get_one_line_each_and_the_rest_is_classified(folder_run, tmp_path, capsys):
    import jaxcnn.predict as predict

    workdir, root, _ = folder_run
    good = next((root / "val" / "1").iterdir())
    photo = tmp_path / "photo.jpg"
    Image.fromarray(helpers.sample_photo(0)).save(photo)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo.read_bytes()[:3000])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(helpers.png_header_only(50_000, 50_000))
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    status = cli.invoke(
        predict,
        [f"--workdir={workdir}", str(good), str(photo), str(truncated), str(bomb), str(notes)],
    )
    out, err = capsys.readouterr()
    assert status == 1
    assert (
        str(good) in out and str(photo) in out
    )  # a colour photo is converted to grey and classified
    errors = err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors)
    assert "truncated.jpg: cannot decode" in errors[0]
    assert "bomb.png: its header declares 2,500,000,000 pixels" in errors[1]
    assert "notes.png: not an image file" in errors[2]
    out_csv = tmp_path / "p.csv"
    args = [f"--workdir={workdir}", "--format=csv", f"--output={out_csv}", str(good), str(notes)]
    assert cli.invoke(predict, args) == 1
    rows = out_csv.read_text().splitlines()
    assert rows[-1].startswith(f"{notes},,,,,not an image file") and len(rows) == 1 + 5 + 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["x.png"], "pass either --workdir (a trained run) or --weights"),
        (
            ["--weights=resnet18", "--workdir=/nope", "x.png"],
            "--weights=resnet18 names published weights; with --workdir it takes raw or ema",
        ),
        (["--workdir=/nope"], "name one or more images"),
        (["--workdir=/nope", "x.png"], "no run directory at /nope"),
    ],
)
def test_usage_errors_are_one_line(args, message, capsys):
    import jaxcnn.predict as predict

    assert cli.invoke(predict, args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_a_run_without_a_folder_dataset_and_array_inputs(run_dir):
    """The session's ResNet-8 run on the built-in digits: class names from the dataset, arrays in."""
    from jaxcnn.data.sources import _digits_arrays

    clf = Classifier.from_run(run_dir)
    images, labels = _digits_arrays("test")
    predictions = clf.predict([im[..., 0] for im in images[:40]], top_k=1)
    assert predictions[0].source == "array[0]"
    hits = np.mean([int(p.classes[0]) == y for p, y in zip(predictions, labels[:40], strict=True)])
    assert hits > 0.7
    rgb = np.repeat(images[0], 3, axis=-1)  # an RGB array is converted to the run's grey
    assert clf.predict([rgb], top_k=1)[0].classes == predictions[0].classes
    # One image alone, and a batch array (N, H, W, C), are not taken for lists of rows.
    assert [p.classes for p in clf.predict(rgb, top_k=1)] == [predictions[0].classes]
    batch = clf.predict(images[:3], top_k=1, batch_size=2)
    assert [p.classes for p in batch] == [p.classes for p in predictions[:3]]
    with pytest.raises(ValueError, match="must be uint8"):
        clf.load(images[0].astype(np.float32))


def test_published_weights_preprocessing_matches_torchvision():
    """Resize(256) + CenterCrop(224), bilinear and antialiased, as torchvision's ImageNet
    transform on the same photograph (an independent implementation: PIL's resize)."""
    torchvision = pytest.importorskip("torchvision")
    from torchvision.transforms import v2

    photo = helpers.sample_photo(0)
    ours = Preprocess(
        224, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 256.0, "bilinear", True
    )(photo)
    tv = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])(Image.fromarray(photo))
    theirs = np.asarray(tv, np.float32) / 255.0
    assert ours.shape == theirs.shape == (224, 224, 3)
    assert np.abs(ours - theirs).mean() < 2 / 255, np.abs(ours - theirs).mean()
    del torchvision


def test_imagenet_class_names():
    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) >= 998
    # Indices every ImageNet user knows.
    assert (names[0], names[1], names[207], names[281], names[999]) == (
        "tench",
        "goldfish",
        "golden retriever",
        "tabby",
        "toilet tissue",
    )


def test_neighbors_of_a_folder_run_name_the_users_files(folder_run, tmp_path, capsys):
    import jaxcnn.neighbors as neighbors

    workdir, root, _ = folder_run
    out = tmp_path / "n.png"
    args = [f"--workdir={workdir}", "--queries=2", "--k=3", f"--output={out}", "--batch_size=128"]
    assert cli.invoke(neighbors, args) == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if "->" in line]
    assert len(lines) == 2
    for line in lines:
        query, near = line.split(" -> ")
        assert query.startswith("val/") and (root / query).is_file()
        files = near.split(", ")
        assert len(files) == 3 and all(
            f.startswith("train/") and (root / f).is_file() for f in files
        )
    assert Image.open(out).size[0] > 0


@pytest.mark.slow
def test_published_weights_through_the_cache(tmp_path, monkeypatch, capsys):
    """`--weights=torchvision:resnet18` end to end, with torchvision's own (randomly initialised,
    BatchNorm statistics randomised) ResNet-18 put in the weights cache as a converted entry:
    the zoo's preprocessing and the ImageNet names are used, and the probabilities equal
    PyTorch's on the same pixels."""
    torch = pytest.importorskip("torch")
    import orbax.checkpoint as ocp
    import torchvision

    import jaxcnn.predict as predict
    from jaxcnn.weights import zoo

    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    helpers.randomize_bn(net)
    _, variables = helpers.convert_torch("resnet18", helpers.torch_state_dict(net), 64)
    monkeypatch.setenv("JAXCNN_CACHE", str(tmp_path / "cache"))
    key, entry = zoo.zoo_entry("torchvision:resnet18")
    converted = zoo.cache_dir() / "converted" / key.replace(":", "_")
    ckptr = ocp.StandardCheckpointer()
    ckptr.save((converted / "variables").absolute(), variables)
    ckptr.wait_until_finished()
    (converted / "meta.json").write_text(json.dumps(dict(entry, spec=key)))

    clf = Classifier.from_weights("torchvision:resnet18")
    assert clf.class_names == imagenet_class_names()
    assert (clf.image_size, clf.preprocess.resize_size) == (
        entry["input_size"],
        entry["resize_size"],
    )
    photo = tmp_path / "china.jpg"
    Image.fromarray(helpers.sample_photo(0)).save(photo, quality=95)
    pixels = clf.preprocess(clf.load(photo))[None]
    ours = clf.probabilities(pixels, batch_size=1)[0]
    x = (pixels - np.asarray(entry["mean"], np.float32)) / np.asarray(entry["std"], np.float32)
    with torch.no_grad():
        theirs = torch.softmax(net(torch.from_numpy(x).permute(0, 3, 1, 2)), -1)[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    assert cli.invoke(predict, ["--weights=torchvision:resnet18", "--top_k=3", str(photo)]) == 0
    line = capsys.readouterr().out.strip()
    best = imagenet_class_names()[int(np.argmax(theirs))]
    assert line.startswith(f"{photo}\t{best} ")
