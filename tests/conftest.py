"""Test set-up: the measured-best XLA CPU flags, before JAX starts (as the CLIs do), and the
trained run that the analysis and command-line tests share.

The folders (models/, layers/, weights/, training/, analysis/, cli/) have no `__init__.py`: test
file names are unique across them. Shared helpers live in tests/helpers.py and
tests/jaxpr_tools.py (this directory is on `sys.path`, so `import helpers` works everywhere).
"""

import contextlib

import pytest

from jaxcnn import runtime

# PyTorch (the `torch` test extra) must be imported before TensorFlow: importing torch (its triton)
# into a process where TensorFlow is loaded has crashed it with a segfault. The data pipeline loads
# TensorFlow, so import torch first, whatever order the test files run in.
with contextlib.suppress(ImportError):
    import torch  # noqa: F401
    import torchvision  # noqa: F401

runtime.configure_xla_cpu()


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A trained run directory: ResNet-8, digits, one epoch of 44 steps (checkpoints and
    config.json). Trained once per test process; tests must not modify what it holds (they may add
    files of their own)."""
    from jaxcnn.config import get_config
    from jaxcnn.training import loop as trainer

    cfg = get_config()
    cfg.arch, cfg.dataset, cfg.batch_size, cfg.epochs = "resnet8", "digits", 32, 1
    cfg.lr, cfg.augment, cfg.log_every_steps = 0.05, False, 44
    workdir = tmp_path_factory.mktemp("run")
    result = trainer.train_and_evaluate(cfg, workdir)
    assert result.step == 1437 // 32
    return workdir
