"""Test set-up: the measured-best XLA CPU flags, before JAX starts (as the CLIs do)."""

import contextlib

from jaxcnn import runtime

# PyTorch (the `torch` test extra) must be imported before TensorFlow: importing torch (its triton)
# into a process where TensorFlow is loaded has crashed it with a segfault. The data pipeline loads
# TensorFlow, so import torch first, whatever order the test files run in.
with contextlib.suppress(ImportError):
    import torch  # noqa: F401
    import torchvision  # noqa: F401

runtime.configure_xla_cpu()
