"""Folder datasets (`--dataset=folder:PATH`): layouts, the held-out split, bad input, conversions,
and training from a folder against training from the same images as a built-in dataset."""

import json
import subprocess
import sys
import textwrap

import helpers
import numpy as np
import pytest
from PIL import Image

from jaxcnn.data import folder


def _tree(root, files):
    """Creates `files` ({relative path: bytes or a PIL image}) under `root`; returns `root`."""
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            content.save(p)
    return root


def _img(value=128, size=(6, 5), mode="L"):
    return Image.new(mode, size, value)


# ---------------------------------------------------------------------------------------------------
# Layouts and their errors (no decoding, no JAX).


def test_both_layouts_and_sorted_class_names(tmp_path):
    flat = _tree(tmp_path / "flat", {"b/1.png": _img(), "a/x/2.jpg": _img(), "a/3.PNG": _img()})
    listing = folder.list_folder(flat)
    assert listing.layout == "classes" and listing.class_names == ("a", "b")
    assert listing.train == ("a/3.PNG", "a/x/2.jpg", "b/1.png")  # subfolders and upper case read
    assert [listing.label(r) for r in listing.train] == [0, 0, 1]
    split = _tree(
        tmp_path / "split",
        {"train/cat/1.png": _img(), "train/dog/2.png": _img(), "val/dog/3.png": _img()},
    )
    listing = folder.list_folder(split)
    assert listing.layout == "splits" and listing.val_dir == "val"
    assert listing.val == ("val/dog/3.png",) and listing.label("val/dog/3.png") == 1


@pytest.mark.parametrize(
    "files, expected",
    [
        ({}, "is empty"),
        ({"1.png": _img(), "2.png": _img()}, "holds images, not class folders"),
        ({"only/1.png": _img()}, "one class folder (only): a classifier needs at least two"),
        ({"a/1.png": _img(), "b/notes.txt": b"x"}, "class folders without images in"),
        ({"a/1.png": _img(), "b/.keep": b""}, "class folders without images in"),
        (
            {"train/a/1.png": _img(), "train/b/1.png": _img(), "val/c/1.png": _img()},
            "has classes that",
        ),
    ],
)
def test_layout_errors_say_what_is_wrong(tmp_path, files, expected):
    root = _tree(tmp_path / "d", files)
    root.mkdir(exist_ok=True)
    with pytest.raises(folder.FolderError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        folder.list_folder(root)


def test_missing_folder_and_a_file(tmp_path):
    with pytest.raises(folder.FolderError, match="no such folder"):
        folder.list_folder(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(folder.FolderError, match="is a file"):
        folder.list_folder(tmp_path / "f")


def test_non_image_files_are_skipped_and_counted(tmp_path):
    root = _tree(
        tmp_path / "d",
        {
            "a/1.png": _img(),
            "a/2.png": _img(),
            "a/readme.txt": b"x",
            "b/3.png": _img(),
            "b/4.png": _img(),
            "b/photo.heic": b"\0" * 10,
            "notes.md": b"x",
        },
    )
    record = folder.inspect(folder.list_folder(root), progress=False)
    assert sorted(record.skipped) == ["a/readme.txt", "b/photo.heic", "notes.md"]
    text = "\n".join(record.summary())
    assert "Skipped 3 files that are not images (formats read: .bmp .gif .jpeg .jpg .png" in text


def test_held_out_share_is_stratified_seeded_and_disjoint(tmp_path):
    files = {f"c{c}/{i}.png": _img(i) for c, n in enumerate((10, 7, 2, 1)) for i in range(n)}
    listing = folder.list_folder(_tree(tmp_path / "d", files))
    a, b = folder.hold_out(listing, 0.3), folder.hold_out(listing, 0.3)
    assert a == b  # seeded
    val_counts = [sum(listing.label(r) == c for r in a.val) for c in range(4)]
    assert val_counts == [3, 2, 1, 0]  # round(n * 0.3), at least 1 of >= 2, none of a single image
    assert not set(a.train) & set(a.val) and sorted(a.train + a.val) == sorted(listing.train)
    with pytest.raises(folder.FolderError, match="between 0 and 1"):
        folder.hold_out(listing, 1.0)


# ---------------------------------------------------------------------------------------------------
# Bad images and conversions, on real photographs.


def test_truncated_and_corrupt_images_are_refused_or_skipped(tmp_path):
    photo = Image.fromarray(helpers.sample_photo(0))
    root = _tree(
        tmp_path / "d",
        {f"a/{i}.jpg": photo for i in range(3)} | {f"b/{i}.png": photo for i in range(3)},
    )
    jpeg = (root / "a/0.jpg").read_bytes()
    (root / "a/0.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # truncated
    png = bytearray((root / "b/1.png").read_bytes())
    png[200:260] = b"\xff" * 60  # corrupt compressed data
    (root / "b/1.png").write_bytes(bytes(png))
    (root / "b/3.png").write_bytes(b"this is not a png")
    listing = folder.list_folder(root)
    with pytest.raises(folder.FolderError) as e:
        folder.inspect(listing, progress=False)
    msg = str(e.value)
    assert msg.startswith("3 of 7 images in") and "a/0.jpg" in msg and "skip_bad_images" in msg
    record = folder.inspect(listing, skip_bad_images=True, val_fraction=0.5, progress=False)
    assert sorted(record.bad) == ["a/0.jpg", "b/1.png", "b/3.png"]
    assert "not an image file" in record.bad["b/3.png"] and "decode" in record.bad["a/0.jpg"]
    assert sorted(record.train + record.val) == ["a/1.jpg", "a/2.jpg", "b/0.png", "b/2.png"]


def test_modes_are_converted_and_stated(tmp_path):
    rgb = helpers.sample_photo(1)[:64, :96]
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    alpha = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    sixteen = grey.astype(np.uint16) * 257  # 16-bit PNG of the same grey values
    root = _tree(
        tmp_path / "d",
        {
            "a/rgb.png": Image.fromarray(rgb),
            "a/grey.png": Image.fromarray(grey),
            "a/rgba.png": Image.fromarray(alpha),
            "b/sixteen.png": Image.fromarray(sixteen),
            "b/cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
            "b/palette.gif": Image.fromarray(rgb).convert("P"),
        },
    )
    assert Image.open(root / "b/sixteen.png").mode.startswith("I")
    assert Image.open(root / "b/cmyk.jpg").mode == "CMYK"
    read = lambda rel, c=3: folder.read_image(root / rel, c)  # noqa: E731
    np.testing.assert_array_equal(read("a/rgba.png"), rgb)  # alpha dropped
    np.testing.assert_array_equal(read("a/grey.png"), np.repeat(grey[..., None], 3, -1))
    np.testing.assert_array_equal(read("b/sixteen.png", 1)[..., 0], grey)  # scaled, not clipped
    cmyk = read("b/cmyk.jpg").astype(float)
    assert np.abs(cmyk - rgb).mean() < 4  # JPEG-compressed CMYK round trip of the photo
    np.testing.assert_array_equal(read("a/rgb.png", 1)[..., 0], grey)  # ITU-R 601 luma, as PIL
    record = folder.inspect(folder.list_folder(root), val_fraction=0.34, progress=False)
    assert record.channels == 3 and record.image_shape == [64, 96, 3]
    assert record.conversions == {
        "CMYK -> RGB": 1,
        "P -> RGB": 1,
        "RGBA -> RGB (alpha dropped)": 1,
        "grey -> RGB": 1,
        "16-bit -> 8-bit RGB": 1,
    }
    assert "Converted when read: " in "\n".join(record.summary())


def test_grey_folders_stay_one_channel_and_stats_are_the_train_splits(tmp_path):
    root = helpers.write_digits_folder(tmp_path / "digits")
    record = folder.inspect(folder.list_folder(root), progress=False)
    assert record.channels == 1 and record.image_shape == [8, 8, 1]
    assert (len(record.train), len(record.val)) == (1437, 360)
    # The built-in digits dataset's statistics, measured on the same 1,437 images (sources.py).
    np.testing.assert_allclose(record.mean, [0.3062], atol=1e-4)
    np.testing.assert_allclose(record.std, [0.3769], atol=1e-4)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(helpers.png_header_only(100_000, 100_000))  # 10^10 pixels, 30 GB decoded
    code = textwrap.dedent(f"""
        import resource, sys
        from jaxcnn.data import folder
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            folder.read_image({str(bomb)!r}, 3)
        except folder.BadImageError as e:
            print("refused:", e.reason)
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print("grew_kib", grew)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "refused: its header declares 10,000,000,000 pixels, more than" in out.stdout, out.stderr
    grew = int(out.stdout.split("grew_kib")[1])
    assert grew < 50 * 1024, f"memory grew by {grew} KiB reading a bomb's header"
    # In a folder: refused in the header pass, named with the reason.
    root = _tree(tmp_path / "d", {"a/1.png": _img(), "b/1.png": _img(), "b/2.png": _img()})
    (root / "a/bomb.png").write_bytes(bomb.read_bytes())
    (root / "b/wide.png").write_bytes(helpers.png_header_only(20_000, 5_000))  # 1-2x the limit
    with pytest.raises(folder.FolderError) as e:
        folder.inspect(folder.list_folder(root), progress=False)
    assert "a/bomb.png (its header declares 10,000,000,000 pixels" in str(e.value)
    assert "b/wide.png (its header declares 20000 x 5000 pixels" in str(e.value)


def test_process_shares_cover_the_split_once(tmp_path):
    from jaxcnn import data

    root = helpers.write_digits_folder(tmp_path / "digits")
    info = data.folder_info(folder.inspect(folder.list_folder(root), progress=False))
    whole = [int(ex["label"]) for ex in data.load_split(info, "val").as_numpy_iterator()]
    parts = [
        [int(ex["label"]) for ex in data.load_split(info, "val", process_index=p, process_count=3)]
        for p in range(3)
    ]
    assert sum(parts, []) == whole and len(whole) == 360
    first = next(data.load_split(info, "val").as_numpy_iterator())
    assert first["image"].shape == (8, 8, 1) and first["image"].dtype == np.uint8


def test_init_statistics_follow_the_weights(tmp_path):
    from jaxcnn.config import get_config
    from jaxcnn.training.plan import _init_statistics

    cfg = get_config()
    assert _init_statistics(cfg) == (None, None)
    cfg.init_from = "timm:inception_v4"  # timm's Inception weights expect 0.5 / 0.5
    channels, (mean, std, why) = _init_statistics(cfg)
    assert channels == 3 and mean == (0.5, 0.5, 0.5) and std == (0.5, 0.5, 0.5)
    cfg.init_from = "torchvision:resnet18"
    assert _init_statistics(cfg)[1][:2] == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


# ---------------------------------------------------------------------------------------------------
# Training from a folder.


@pytest.mark.slow
def test_training_from_a_folder_matches_the_built_in_dataset(tmp_path):
    """The digits as PNG files train to the accuracy of the built-in digits at the same seed and
    settings (the same images; only their order in the split differs, so within noise)."""
    from jaxcnn.training import loop

    root = helpers.write_digits_folder(tmp_path / "digits")
    built_in = loop.train_and_evaluate(helpers.digits_config(augment=False), tmp_path / "builtin")
    cfg = helpers.digits_config(dataset=f"folder:{root}", augment=False)
    from_folder = loop.train_and_evaluate(cfg, tmp_path / "folder")
    assert built_in.eval_accuracy > 0.9 and from_folder.eval_accuracy > 0.9
    assert abs(built_in.eval_accuracy - from_folder.eval_accuracy) < 0.03, (
        built_in.eval_accuracy,
        from_folder.eval_accuracy,
    )
    saved = json.loads((tmp_path / "folder" / "dataset.json").read_text())
    assert saved["class_names"] == [str(i) for i in range(10)]
    assert saved["name"] == f"folder:{root}" and len(saved["val"]) == 360
    _, meta = _latest_meta(tmp_path / "folder")
    assert meta["data"]["class_names"] == saved["class_names"]
    assert meta["data"]["mean"] == saved["mean"] and meta["data"]["channels"] == 1


def _latest_meta(workdir):
    from jaxcnn.rundir import Checkpointer

    ckpt = Checkpointer(workdir, create=False)
    try:
        return ckpt.restore(None)
    finally:
        ckpt.close()


@pytest.mark.slow
def test_folder_run_resumes_exactly_and_refuses_a_changed_folder(tmp_path, capsys):
    from jaxcnn.training import loop

    root = helpers.write_digits_folder(tmp_path / "digits", layout="classes")
    cfg = lambda: helpers.digits_config(dataset=f"folder:{root}", steps=30, epochs=None)  # noqa: E731
    whole = loop.train_and_evaluate(cfg(), tmp_path / "whole")
    out = "".join(capsys.readouterr())
    assert "20% of each class held out (stratified, seed 0" in out
    part = loop.train_and_evaluate(cfg(), tmp_path / "part", should_stop=lambda s: s == 12)
    assert part.interrupted and part.step == 12
    capsys.readouterr()
    resumed = loop.train_and_evaluate(cfg(), tmp_path / "part")
    assert "decoding images" not in "".join(capsys.readouterr())  # the record was reused
    assert resumed.step == 30 and resumed.eval_accuracy == whole.eval_accuracy
    _, a = helpers.final_params(tmp_path / "whole")
    _, b = helpers.final_params(tmp_path / "part")
    for x, y in zip(jax_leaves(a["params"]), jax_leaves(b["params"]), strict=True):
        np.testing.assert_array_equal(x, y)
    (root / "3" / "extra.png").write_bytes((root / "3" / "train0003.png").read_bytes())
    with pytest.raises(ValueError, match="no longer holds the images the run"):
        loop.train_and_evaluate(cfg(), tmp_path / "part")


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    out = helpers.run_module(
        "train", f"--dataset=folder:{tmp_path / 'd'}", f"--workdir={tmp_path / 'r'}"
    )
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: class folders without images in") and "Traceback" not in out.stderr
    )
    assert not (tmp_path / "r").exists()  # nothing written


def test_jpeg_files_decode_to_the_original_pixels_within_compression_error(tmp_path):
    from jaxcnn import data
    from jaxcnn.data.sources import _digits_arrays

    root = helpers.write_digits_folder(tmp_path / "digits", fmt="jpg")
    info = data.folder_info(folder.inspect(folder.list_folder(root), progress=False))
    originals, labels = _digits_arrays("test")
    got = list(data.load_split(info, "val").as_numpy_iterator())
    assert len(got) == len(info.record.val) == 360
    errors = []
    for rel, ex in zip(info.record.val, got, strict=True):
        i = int(rel.split("/")[-1][3:7])  # val0123.jpg: index in the built-in test split
        assert int(ex["label"]) == labels[i]
        errors.append(np.abs(ex["image"].astype(int) - originals[i].astype(int)).mean())
    # Measured 5.5 grey levels of 255 on average (JPEG at quality 75 on 8x8 pictures).
    assert 0 < np.mean(errors) < 10, np.mean(errors)  # lossy, but the same picture


def test_a_format_not_read_is_named_with_the_formats_that_are(tmp_path):
    root = _tree(
        tmp_path / "d", {"a/1.png": _img(), "a/2.png": _img(), "b/1.png": _img(), "b/2.png": _img()}
    )
    _img().save(root / "b" / "3.png", format="PPM")  # a PPM file behind a .png name
    with pytest.raises(folder.FolderError) as e:
        folder.inspect(folder.list_folder(root), progress=False)
    assert "b/3.png (PPM images are not read (formats read: .bmp .gif .jpeg .jpg .png" in str(
        e.value
    )


def test_layout_corner_cases(tmp_path):
    # train/ without val/: a share is held out of train.
    only_train = _tree(
        tmp_path / "t", {f"Train/{c}/{i}.png": _img(i) for c in "ab" for i in range(5)}
    )
    record = folder.inspect(folder.list_folder(only_train), val_fraction=0.4, progress=False)
    assert record.layout == "splits" and record.val_fraction == 0.4
    assert (len(record.train), len(record.val)) == (6, 4)
    # A class named "train" among other classes: a folder of classes, not of splits.
    classes = _tree(
        tmp_path / "c", {"train/1.png": _img(), "bus/1.png": _img(), "car/1.png": _img()}
    )
    assert folder.list_folder(classes).class_names == ("bus", "car", "train")
    # Splits under other names: the classes would be the splits; refused with a hint.
    kaggle = _tree(
        tmp_path / "k",
        {f"{s}/{c}/1.png": _img() for s in ("training_set", "test_set") for c in "ab"},
    )
    with pytest.raises(folder.FolderError, match="name them train/ and val/"):
        folder.list_folder(kaggle)
    # A link back to a parent folder does not loop; a broken link is one bad image.
    linked = _tree(tmp_path / "l", {f"{c}/{i}.png": _img(i) for c in "ab" for i in range(3)})
    (linked / "a" / "again").symlink_to(linked / "a")
    (linked / "b" / "gone.png").symlink_to(tmp_path / "missing.png")
    listing = folder.list_folder(linked)
    assert sorted(listing.train) == sorted(
        [f"a/{i}.png" for i in range(3)] + [f"b/{i}.png" for i in range(3)] + ["b/gone.png"]
    )
    record = folder.inspect(listing, skip_bad_images=True, val_fraction=0.34, progress=False)
    assert list(record.bad) == ["b/gone.png"] and "cannot read the file" in record.bad["b/gone.png"]


def test_camera_jpegs_with_a_second_picture_are_read(tmp_path):
    photo = Image.fromarray(helpers.sample_photo(0))
    path = tmp_path / "IMG_0001.jpg"
    photo.save(
        path, format="MPO", save_all=True, append_images=[photo.resize((64, 43))], quality=95
    )
    assert Image.open(path).format == "MPO"
    out = folder.read_image(path, 3)
    assert (
        out.shape == (427, 640, 3) and np.abs(out.astype(int) - helpers.sample_photo(0)).mean() < 4
    )


def test_fashion_mnist_as_jpeg_files_reads_back_as_the_same_pictures(tmp_path):
    """Fashion-MNIST test images written as JPEG files under their class names (what a user
    with their own pictures has) read back with those names and within JPEG's error of TFDS's
    pixels; the class folder names map to TFDS's labels in sorted order."""
    from jaxcnn import data
    from jaxcnn.data.tf import tfds

    tf_info = data.dataset_info("fashion_mnist")
    batch = next(iter(tfds.as_numpy(data.load_split("fashion_mnist", "test").take(400).batch(400))))
    names = [n.replace("/", "-") for n in tf_info.class_names]  # "T-shirt/top" is no file name
    for i, (image, label) in enumerate(zip(batch["image"], batch["label"], strict=True)):
        d = tmp_path / "fashion" / names[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(d / f"{i:03d}.jpg", quality=90)
    record = folder.inspect(folder.list_folder(tmp_path / "fashion"), progress=False)
    assert record.class_names == sorted(names) and record.channels == 1
    info = data.folder_info(record)
    errors = []
    for rel, ex in zip(record.val, data.load_split(info, "val").as_numpy_iterator(), strict=True):
        i = int(rel.split("/")[-1][:3])
        assert names[batch["label"][i]] == record.class_names[int(ex["label"])]
        errors.append(np.abs(ex["image"].astype(int) - batch["image"][i].astype(int)).mean())
    assert len(errors) == len(record.val) > 50 and 0 < np.mean(errors) < 10, np.mean(errors)


def test_file_names_that_are_not_utf8_are_named(tmp_path):
    import os

    root = _tree(tmp_path / "d", {"a/1.png": _img(), "b/1.png": _img()})
    _img().save(
        os.path.join(os.fsencode(root / "b"), b"caf\xe9.png").decode("utf-8", "surrogateescape")
    )
    with pytest.raises(folder.FolderError) as e:
        folder.list_folder(root)
    assert "not UTF-8: 'b/caf\\udce9.png'; rename them" in str(e.value)
