"""Where examples come from: TFDS datasets by name, offline Fashion-MNIST, scikit-learn's digits,
and a folder of the user's images (`folder:PATH`, see `jaxcnn.data.folder`).

Every source yields a `tf.data.Dataset` of `{"image": uint8 (H, W, C), "label": int64}` in a fixed
order, already restricted to this process's share of the split.
"""

import dataclasses
import fcntl
import gzip
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from etils import epath

from jaxcnn.data import folder
from jaxcnn.data.tf import tf, tfds

# Debian's `dataset-fashion-mnist` package puts the four IDX files here.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# Per-channel mean / std of the training split, for normalisation. ImageNet's are used for any other
# RGB dataset (that is what torchvision / timm weights expect); 0.5 / 0.5 for other channel counts.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),  # measured on the train split
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "digits": ((0.3062,), (0.3769,)),  # measured on the 1,437-image train split
}

# Datasets this module can provide without the internet.
OFFLINE = ("fashion_mnist", "digits")


class DatasetUnavailableError(RuntimeError):
    """A dataset that is neither prepared locally nor obtainable; the message says how to get it."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the pipeline needs to know of a dataset.

    Attributes:
        name: the dataset's name (TFDS spelling, or "digits").
        num_classes: number of labels.
        image_shape: (H, W, C) with None for variable sides (decoded JPEGs of ImageNet-size datasets).
        train_split / eval_split: split names.
        num_train / num_eval: examples in each split (all processes together).
        mean / std: per-channel normalisation statistics on the 0..1 scale.
        class_names: label names, when the dataset has them.
        record: the `jaxcnn.data.folder.FolderRecord` of a folder dataset (its files, split and
            how its statistics were obtained); None for the other sources.
    """

    name: str
    num_classes: int
    image_shape: tuple[int | None, int | None, int]
    train_split: str
    eval_split: str
    num_train: int
    num_eval: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    record: Any = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def fixed_size(self) -> int | None:
        """The side of the dataset's images when all are the same square size, else None."""
        h, w, _ = self.image_shape
        return h if (h is not None and h == w) else None


def _stats(name: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if name in _STATS:
        return _STATS[name]
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.5,) * channels, (0.5,) * channels


# ---------------------------------------------------------------------------------------------------
# Offline Fashion-MNIST: TFDS's own builder, reading Debian's files instead of downloading.


def _read_idx(path: Path) -> np.ndarray:
    """Reads a gzipped IDX file (the MNIST format: magic, dims, big-endian uint8 payload)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(
        tuple(int(d) for d in dims)
    )


class _OfflineFashionMNIST(tfds.image_classification.FashionMNIST, skip_registration=True):
    """TFDS's Fashion-MNIST builder (same name, version and features) fed from local IDX files.

    Debian re-gzipped the files, so their checksums differ from the ones TFDS registered and the stock
    builder refuses them; this builder reads them directly. Once prepared, the data dir holds an
    ordinary `fashion_mnist/3.0.1` that `tfds.load("fashion_mnist")` reads.
    """

    name = "fashion_mnist"
    source_dir = DEBIAN_FASHION_MNIST_DIR

    def _split_generators(self, dl_manager):  # noqa: ARG002 (no download)
        d = self.source_dir
        return [
            tfds.core.SplitGenerator(
                name=split,
                gen_kwargs={
                    "data_path": d / f"{prefix}-images-idx3-ubyte.gz",
                    "label_path": d / f"{prefix}-labels-idx1-ubyte.gz",
                },
            )
            for split, prefix in (("train", "train"), ("test", "t10k"))
        ]

    def _generate_examples(self, data_path, label_path):
        images = _read_idx(data_path)[..., None]
        labels = _read_idx(label_path).astype(np.int64)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield i, {"image": image, "label": label}


def prepare_fashion_mnist_offline(
    data_dir: str | None, source_dir: Path = DEBIAN_FASHION_MNIST_DIR
):
    """Prepares `fashion_mnist` in `data_dir` from local IDX files (Debian's package by default)."""
    missing = [
        p
        for p in (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        )
        if not (source_dir / p).exists()
    ]
    if missing:
        raise DatasetUnavailableError(
            f"fashion_mnist is not prepared in the TFDS data dir and its files are missing from "
            f"{source_dir} ({', '.join(missing)}). Install them with "
            "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or run once with internet "
            "access so that TFDS can download it."
        )
    builder = _OfflineFashionMNIST(data_dir=data_dir)
    builder.source_dir = source_dir
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )


# ---------------------------------------------------------------------------------------------------
# scikit-learn's digits: 1,797 8x8 images, bundled with scikit-learn (no download).

DIGITS_NUM_TEST = 360  # a fixed, stratified 80/20 split


def _digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # only for this dataset
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixels are 0..16; scale to 0..255 so every source shares the uint8 convention.
    images = np.clip(digits.images * 16.0, 0, 255).astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=DIGITS_NUM_TEST, stratify=digits.target, random_state=0
    )
    return (x_train, y_train) if split == "train" else (x_test, y_test)


# ---------------------------------------------------------------------------------------------------


def _builder(name: str, data_dir: str | None):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DatasetUnavailableError(
            f"Unknown dataset {name!r}: not a TFDS dataset nor one of {OFFLINE}."
        ) from e


def ensure_prepared(name: str, data_dir: str | None) -> None:
    """Makes `name` readable from `data_dir`, preparing it offline or downloading it if needed.

    Raises:
        DatasetUnavailableError: with a message saying how to obtain the data.
    """
    if name == "digits" or folder.is_folder(name):  # nothing to prepare
        return
    builder = _builder(name, data_dir)
    if builder.is_prepared():
        return
    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    if "://" in where:  # a bucket (gs://...): no local lock to take
        _prepare(name, data_dir, builder, where)
        return
    # Several processes (the hosts of a job on one machine, parallel test workers) may arrive here
    # at once: one prepares while the others wait, then find the dataset prepared.
    lock_dir = Path(where).expanduser()
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f".{name}.prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _builder(name, data_dir).is_prepared():
            return
        _prepare(name, data_dir, builder, where)


def _prepare(name: str, data_dir: str | None, builder: Any, where: str) -> None:
    """Prepares `name` (called under the preparation lock)."""
    if name == "fashion_mnist" and DEBIAN_FASHION_MNIST_DIR.exists():
        print(
            f"Preparing fashion_mnist in {where} from {DEBIAN_FASHION_MNIST_DIR} (once, ~30 s).",
            file=sys.stderr,
        )
        prepare_fashion_mnist_offline(data_dir)
        return
    print(f"Downloading and preparing {name} in {where} (once).", file=sys.stderr)
    try:
        builder.download_and_prepare()
    except Exception as e:  # noqa: BLE001 - any failure here means "not obtainable right now"
        hint = (
            " Install Debian's package with `sudo apt-get install dataset-fashion-mnist`."
            if name == "fashion_mnist"
            else " Some datasets (e.g. imagenet2012) must be downloaded by hand into the manual dir; "
            "see the TFDS catalog page of the dataset."
        )
        raise DatasetUnavailableError(
            f"Dataset {name!r} is not prepared in {where} and could not be downloaded "
            f"({type(e).__name__}: {str(e)[:300]}).{hint}"
        ) from e


def folder_info(record: "folder.FolderRecord") -> DatasetInfo:
    """The `DatasetInfo` of a folder dataset from its record (`jaxcnn.data.folder.inspect`)."""
    h, w, c = record.image_shape
    return DatasetInfo(
        name=record.name,
        num_classes=len(record.class_names),
        image_shape=(h, w, c),
        train_split="train",
        eval_split="val",
        num_train=len(record.train),
        num_eval=len(record.val),
        mean=tuple(record.mean),
        std=tuple(record.std),
        class_names=tuple(record.class_names),
        record=record,
    )


def dataset_info(name: str, data_dir: str | None = None) -> DatasetInfo:
    """Reads a dataset's metadata (preparing it first if needed).

    A folder (`folder:PATH`) is listed and every image opened once, with the defaults of
    `jaxcnn.data.folder.inspect` (a 20% held-out share, statistics measured on the train split);
    the trainer calls `inspect` itself with the run's settings.
    """
    if folder.is_folder(name):
        return folder_info(folder.inspect(folder.list_folder(folder.root_of(name))))
    if name == "digits":
        mean, std = _stats("digits", 1)
        return DatasetInfo(
            "digits",
            10,
            (8, 8, 1),
            "train",
            "test",
            1797 - DIGITS_NUM_TEST,
            DIGITS_NUM_TEST,
            mean,
            std,
            tuple(str(i) for i in range(10)),
        )
    ensure_prepared(name, data_dir)
    info = _builder(name, data_dir).info
    image_key, label_key = _supervised_keys(info)
    shape = tuple(info.features[image_key].shape)
    splits = info.splits
    eval_split = "test" if "test" in splits else "validation"
    if "train" not in splits or eval_split not in splits:
        raise DatasetUnavailableError(
            f"{name} has splits {sorted(splits)}; jaxcnn needs 'train' and 'test' or 'validation'."
        )
    label = info.features[label_key]
    mean, std = _stats(name, shape[-1])
    return DatasetInfo(
        name=name,
        num_classes=label.num_classes,
        image_shape=shape,
        train_split="train",
        eval_split=eval_split,
        num_train=splits["train"].num_examples,
        num_eval=splits[eval_split].num_examples,
        mean=mean,
        std=std,
        class_names=tuple(label.names),
    )


def _supervised_keys(info: Any) -> tuple[str, str]:
    if info.supervised_keys and len(info.supervised_keys) == 2:
        return tuple(info.supervised_keys)  # type: ignore[return-value]
    return "image", "label"


def load_split(
    name: "str | DatasetInfo",
    split: str,
    *,
    data_dir: str | None = None,
    process_index: int = 0,
    process_count: int = 1,
    in_memory: bool | None = None,
    decode: bool = True,
) -> "tf.data.Dataset":
    """This process's share of a split, in a fixed order, as `{"image", "label"}` examples.

    Args:
        name: dataset name, or its `DatasetInfo` (needed for a folder dataset read with other
            settings than `dataset_info`'s defaults).
        split: split name ("train", "test", "validation"; "train" / "val" for a folder).
        data_dir: TFDS data dir (None: TFDS's default).
        process_index / process_count: which contiguous share of the split to read (the default
            reads the whole split).
        in_memory: load the share into memory (default: when the split is under 1 GiB).
        decode: False leaves the images of a split read from disk encoded (JPEG / PNG bytes, or
            the file's path for a folder, under "path"; to be decoded with `decode_example` after
            the examples a process keeps are chosen); splits held in memory are always decoded.
    """
    info = name if isinstance(name, DatasetInfo) else None
    name = info.name if info is not None else name
    if folder.is_folder(name):
        info = info if info is not None and info.record is not None else dataset_info(name)
        return _folder_split(info, split, process_index, process_count, decode)
    if name == "digits":
        images, labels = _digits_arrays(split)
        ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels.astype(np.int64)})
        return ds.shard(process_count, process_index)
    ensure_prepared(name, data_dir)
    builder = _builder(name, data_dir)
    image_key, label_key = _supervised_keys(builder.info)
    share = tfds.even_splits(split, n=process_count)[process_index]
    read_config = tfds.ReadConfig(shuffle_seed=0, interleave_cycle_length=1)
    size = builder.info.splits[split].num_bytes or 0
    resident = bool(in_memory or (in_memory is None and size < 2**30))
    decoders = None if decode or resident else {image_key: tfds.decode.SkipDecoding()}
    ds = builder.as_dataset(
        split=share, shuffle_files=False, read_config=read_config, decoders=decoders
    )
    ds = ds.map(lambda ex: {"image": ex[image_key], "label": tf.cast(ex[label_key], tf.int64)})
    if resident:
        # Small splits live in memory as arrays: every epoch re-shuffles them in full at no I/O cost.
        arrays = next(iter(tfds.as_numpy(ds.batch(1 << 30))))
        ds = tf.data.Dataset.from_tensor_slices(arrays)
    return ds


def _folder_split(
    info: DatasetInfo, split: str, process_index: int, process_count: int, decode: bool
) -> "tf.data.Dataset":
    record = info.record
    if split not in ("train", "val"):
        raise ValueError(f"a folder dataset has splits train and val, not {split!r}")
    root = record.name[len(folder.PREFIX) :].rstrip("/")
    if not epath.Path(root).is_dir():
        raise folder.FolderError(
            f"the images of this run are no longer in {root}; put the folder back to read them"
        )
    files = record.train if split == "train" else record.val
    labels = record.labels(split)
    # Contiguous, near-equal shares (as tfds.even_splits makes them for the other sources).
    bounds = np.linspace(0, len(files), process_count + 1).round().astype(int)
    lo, hi = bounds[process_index], bounds[process_index + 1]
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "path": np.asarray([f"{root}/{f}" for f in files[lo:hi]], dtype=str),
            "label": labels[lo:hi],
        }
    )
    if decode:
        ds = ds.map(
            lambda ex: {"image": _read(ex["path"], info), "label": ex["label"]},
            num_parallel_calls=2,  # file reads and decodes overlap; the order stays fixed
        )
    return ds


def _read(path: "tf.Tensor", info: DatasetInfo) -> "tf.Tensor":
    """uint8 (H, W, C) pixels of one file of a folder dataset, decoded by Pillow."""
    channels = info.image_shape[-1]

    def read(p: bytes) -> np.ndarray:
        return folder.read_image(p.decode(), channels)

    image = tf.numpy_function(read, [path], tf.uint8, stateful=False)
    h, w, _ = info.image_shape
    return tf.ensure_shape(image, (h, w, channels))


def decode_example(ex: dict, info: DatasetInfo) -> "tf.Tensor":
    """The uint8 (H, W, C) image of an example of `load_split(decode=False)`: decoded from its
    bytes or read from its file (a folder dataset's "path"); decoded images pass through."""
    if "path" in ex:
        return _read(ex["path"], info)
    return decode_image(ex["image"], info.image_shape[-1])


def decode_image(image: "tf.Tensor", channels: int) -> "tf.Tensor":
    """A uint8 (H, W, C) image from encoded bytes (`load_split(decode=False)`); decoded images
    pass through unchanged."""
    if image.dtype != tf.string:
        return image
    out = tf.io.decode_image(image, channels=channels, expand_animations=False)
    return tf.ensure_shape(out, (None, None, channels))
