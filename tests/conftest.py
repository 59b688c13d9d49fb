"""Test set-up: the measured-best XLA CPU flags, before JAX starts (as the CLIs do), and the
trained run that the analysis and command-line tests share.

The folders (models/, layers/, weights/, training/, analysis/, cli/) have no `__init__.py`: test
file names are unique across them. Shared helpers live in tests/helpers.py and
tests/jaxpr_tools.py (this directory is on `sys.path`, so `import helpers` works everywhere).

One XLA compilation cache serves the whole test session: the process that starts the session makes
a fresh directory and points JAX_COMPILATION_CACHE_DIR at it before JAX is imported; the xdist
workers and the subprocesses the tests start inherit it. Many tests compile the same small
programs (ResNet-8 on digits, above all), and XLA's compile time is most of their time on two
cores. The cache holds only this session's compilations (it starts empty and is removed at the
end), so every program is still compiled from this checkout's code at least once.
"""

import contextlib
import os
import shutil
import tempfile

import pytest

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxcnn-tests-xla-cache-")
    os.environ["JAXCNN_TESTS_OWN_XLA_CACHE"] = str(os.getpid())
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

from jaxcnn import runtime  # noqa: E402 (after the cache settings: importing jaxcnn imports JAX)

# PyTorch (the `torch` test extra) must be imported before TensorFlow: importing torch (its triton)
# into a process where TensorFlow is loaded has crashed it with a segfault. The data pipeline loads
# TensorFlow, so import torch first, whatever order the test files run in.
with contextlib.suppress(ImportError):
    import torch  # noqa: F401
    import torchvision  # noqa: F401

runtime.configure_xla_cpu()
runtime.configure_storage()  # gs:// through gcsfs, as the commands have it


def pytest_unconfigure(config):
    """The process that made the session's compilation cache removes it."""
    if os.environ.get("JAXCNN_TESTS_OWN_XLA_CACHE") == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


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
