"""Input pipelines on real offline data: Fashion-MNIST from Debian's files, scikit-learn's digits."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxcnn import data
from jaxcnn.data.sources import DEBIAN_FASHION_MNIST_DIR


@pytest.fixture(scope="module")
def digits():
    return data.dataset_info("digits")


@pytest.mark.parametrize(
    "batch, processes", [(7, 1), (64, 1), (360, 1), (1000, 1), (64, 3), (8, 8)]
)
def test_eval_covers_every_example_once(digits, batch, processes):
    """Padded, masked eval batches hold each test example exactly once, for any batch size and
    number of processes, and every process yields the same number of batches."""
    seen, lengths = [], []
    for p in range(processes):
        batches = list(
            data.eval_batches(
                digits, global_batch=batch, image_size=8, process_index=p, process_count=processes
            )
        )
        lengths.append(len(batches))
        for b in batches:
            assert b["image"].shape == (batch // processes, 8, 8, 1)
            keep = b["mask"] == 1
            seen += [
                (img.tobytes(), int(lab))
                for img, lab in zip(b["image"][keep], b["label"][keep], strict=True)
            ]
            assert not b["image"][~keep].any()  # padding is zeros
    assert len(set(lengths)) == 1
    assert len(seen) == digits.num_eval == 360
    # The same multiset of (image, label) as a direct read of the split.
    direct = [
        (img.tobytes(), int(lab))
        for b in data.eval_batches(digits, global_batch=360, image_size=8)
        for img, lab in zip(b["image"], b["label"], strict=True)
    ]
    assert sorted(seen) == sorted(direct)


def test_digits_split_is_the_bundled_data(digits):
    """Train + test is exactly scikit-learn's 1,797 images, stratified 80/20."""
    total = load_digits()
    labels = []
    for split in ("train", "test"):
        ds = data.load_split("digits", split)
        labels += [int(ex["label"]) for ex in ds.as_numpy_iterator()]
    assert len(labels) == len(total.target) == 1797
    np.testing.assert_array_equal(np.bincount(labels), np.bincount(total.target))
    assert (digits.num_train, digits.num_eval) == (1437, 360)


def test_train_batches_resume_mid_epoch_and_reshuffle(digits):
    """Starting at step k gives the batches an uninterrupted stream gives from step k; each epoch
    is a new permutation; augmentation is seeded, so the same seed gives the same pixels."""
    per_epoch = data.steps_per_epoch(digits, 64)  # 22
    stream = data.train_batches(digits, global_batch=64, image_size=8, seed=3)
    first = [next(stream) for _ in range(per_epoch + 5)]
    resumed = data.train_batches(
        digits, global_batch=64, image_size=8, seed=3, start_step=per_epoch + 2
    )
    for want in first[per_epoch + 2 :]:
        got = next(resumed)
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])
    assert not np.array_equal(first[0]["label"], first[per_epoch]["label"])
    other = next(data.train_batches(digits, global_batch=64, image_size=8, seed=4))
    assert not np.array_equal(other["image"], first[0]["image"])


@pytest.mark.parametrize("processes", [2, 4])
def test_global_batch_does_not_depend_on_the_process_count(digits, processes):
    """Each process's rows, stacked in process order, are exactly the one-process batch of the same
    step (pixels and labels, augmentation on), here and after resuming across an epoch boundary:
    the data stream is a function of (seed, step) only."""
    per_epoch = data.steps_per_epoch(digits, 64)  # 22
    start = per_epoch - 2  # two steps of epoch 0, then epoch 1
    one = data.train_batches(digits, global_batch=64, image_size=8, seed=5, start_step=start)
    shares = [
        data.train_batches(
            digits,
            global_batch=64,
            image_size=8,
            seed=5,
            start_step=start,
            process_index=p,
            process_count=processes,
        )
        for p in range(processes)
    ]
    for _ in range(4):
        want = next(one)
        got = [next(s) for s in shares]
        assert all(len(g["label"]) == 64 // processes for g in got)
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([g[key] for g in got]), want[key])


def test_batch_larger_than_dataset_is_refused(digits):
    with pytest.raises(ValueError, match="larger than the digits train split"):
        data.steps_per_epoch(digits, 4096)


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST_DIR.exists(), reason="apt-get install dataset-fashion-mnist"
)
def test_fashion_mnist_offline_preparation(tmp_path):
    """TFDS's Fashion-MNIST prepared from Debian's files: 60,000 / 10,000, 6,000 per class."""
    info = data.dataset_info("fashion_mnist", str(tmp_path))
    assert (info.num_train, info.num_eval, info.num_classes) == (60_000, 10_000, 10)
    assert info.image_shape == (28, 28, 1) and info.class_names[0] == "T-shirt/top"
    labels = np.concatenate(
        [
            b["label"]
            for b in data.load_split("fashion_mnist", "train", data_dir=str(tmp_path))
            .batch(10_000)
            .as_numpy_iterator()
        ]
    )
    np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)
    assert (tmp_path / "fashion_mnist" / "3.0.1").is_dir()


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(data.DatasetUnavailableError, match="apt-get install dataset-fashion-mnist"):
        data.prepare_fashion_mnist_offline(str(tmp_path), source_dir=Path(tmp_path / "nothing"))
