"""Input pipelines: TFDS / tf.data sources and batches (TensorFlow on the CPU only)."""

from jaxcnn.data import augment, folder, sources
from jaxcnn.data.folder import FolderError
from jaxcnn.data.pipeline import eval_batches, steps_per_epoch, train_batches
from jaxcnn.data.sources import (
    OFFLINE,
    DatasetInfo,
    DatasetUnavailableError,
    dataset_info,
    ensure_prepared,
    folder_info,
    load_split,
    prepare_fashion_mnist_offline,
)

__all__ = [
    "OFFLINE",
    "DatasetInfo",
    "DatasetUnavailableError",
    "FolderError",
    "augment",
    "dataset_info",
    "ensure_prepared",
    "folder",
    "folder_info",
    "eval_batches",
    "load_split",
    "prepare_fashion_mnist_offline",
    "sources",
    "steps_per_epoch",
    "train_batches",
]
