"""The commands' real runs, in this process (`jaxcnn.cli.invoke`), on the trained `run_dir` of
tests/conftest.py (ResNet-8, digits, one epoch): what each writes and prints."""

import csv
import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from jaxcnn import cli, features, neighbors, summary, visualize


def test_features_writes_npz(capsys, run_dir):
    assert cli.invoke(features, [f"--workdir={run_dir}", "--split=train", "--batch_size=100"]) == 0
    path = run_dir / "features_train_pre_logits.npz"
    with np.load(path) as z:  # no pickled objects inside
        assert z["features"].shape == (1437, 64) and z["features"].dtype == np.float32
        assert z["labels"].shape == (1437,)
        assert np.bincount(z["labels"]).min() > 100  # all ten digits
        assert (str(z["tap"]), str(z["arch"]), str(z["split"])) == (
            "pre_logits",
            "resnet8",
            "train",
        )
        assert not bool(z["pooled"]) and int(z["step"]) == 44
    assert not [p for p in os.listdir(run_dir) if p.endswith(".tmp")]


def test_neighbors_writes_grid_and_knn_beats_chance(capsys, run_dir):
    out_png = run_dir / "nn.png"
    capsys.readouterr()
    args = [f"--workdir={run_dir}", "--queries=3", "--k=4", f"--output={out_png}"]
    assert cli.invoke(neighbors, args) == 0
    out = capsys.readouterr().out
    with Image.open(out_png) as im:
        im.verify()
    with Image.open(out_png) as im:
        # 8x8 digits upscaled 8x to 64 px, + 2 px border = 68 px tiles; 2 px gaps around and
        # between; 8 px more after the query column.
        assert im.size == (5 * 68 + 6 * 2 + 8, 3 * 68 + 4 * 2)
        assert im.mode == "RGB"
    acc = float(re.search(r"k-NN accuracy \(k=4.*: ([0-9.]+) on the 360", out).group(1))
    assert acc > 0.8  # chance: 0.1


def test_visualize_filters_of_a_run(capsys, run_dir):
    capsys.readouterr()
    assert cli.invoke(visualize, ["filters", f"--workdir={run_dir}"]) == 0
    assert "16 first-layer filters (16x1x3x3, params/stem/conv/kernel)" in capsys.readouterr().out
    with Image.open(run_dir / "filters.png") as im:
        a = np.asarray(im.convert("RGB"))
    # 16 filters -> 4 x 4 tiles of 3 x 16 = 48 px, 2 px gaps: 202 px; grey (1 input channel).
    assert a.shape == (4 * 48 + 5 * 2, 4 * 48 + 5 * 2, 3)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()


def test_summary_formats_and_compare(capsys, tmp_path):
    capsys.readouterr()
    assert cli.invoke(summary, ["--arch=lenet5", "--channels=1", "--format=csv", "--noxla"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[-1]["layer"] == "total" and int(rows[-1]["params"]) == 61_706
    args = ["--compare=resnet20,mobilenet_v2", "--format=json", f"--plot={tmp_path / 'c.png'}"]
    assert cli.invoke(summary, args) == 0
    table = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in table] == ["resnet20", "mobilenet_v2"]
    assert table[1]["params"] == 3_504_872 and table[1]["top1"] == pytest.approx(71.878)
    for png in ("c.png", "c_memory.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
