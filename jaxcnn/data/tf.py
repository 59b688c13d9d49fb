"""TensorFlow for tf.data only: imported here once, with every accelerator hidden from it.

TensorFlow must never take the GPU / TPU memory that JAX needs, so this module hides them before any
op runs. Import `tf` and `tfds` from here, never directly.
"""

import contextlib
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

# What TensorFlow's C++ start-up writes to stderr at import whatever TF_CPP_MIN_LOG_LEVEL says:
# absl's notice that logging is not initialised and oneDNN's. Every command would otherwise open
# with four lines of it, and a one-line error would not be one line.
_BANNER = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called|oneDNN custom operations are on"
)


@contextlib.contextmanager
def _without_import_banner():
    """Runs the block with file descriptor 2 captured (C++ writes there, not to sys.stderr), then
    writes back all of it but the banner lines. Off with JAXCNN_DEBUG=1."""
    if os.environ.get("JAXCNN_DEBUG") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            sys.stderr.write("".join(ln for ln in text.splitlines(True) if not _BANNER.search(ln)))
            sys.stderr.flush()


with _without_import_banner():
    import tensorflow as tf
    import tensorflow_datasets as tfds

tf.config.set_visible_devices([], "GPU")
# A TensorFlow build without TPU support has no such device type.
with contextlib.suppress(ValueError, RuntimeError):
    tf.config.set_visible_devices([], "TPU")

tfds.disable_progress_bar()

__all__ = ["tf", "tfds"]
