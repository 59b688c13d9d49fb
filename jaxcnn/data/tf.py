"""TensorFlow for tf.data only: imported here once, with every accelerator hidden from it.

TensorFlow must never take the GPU / TPU memory that JAX needs, so this module hides them before any
op runs. Import `tf` and `tfds` from here, never directly.
"""

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

tf.config.set_visible_devices([], "GPU")
# A TensorFlow build without TPU support has no such device type.
with contextlib.suppress(ValueError, RuntimeError):
    tf.config.set_visible_devices([], "TPU")

tfds.disable_progress_bar()

__all__ = ["tf", "tfds"]
