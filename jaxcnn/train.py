"""Train a network: `python -m jaxcnn.train --arch=resnext50 --dataset=cifar10 --workdir=runs/x`.

With no arguments: a short ResNet-8 run on Fashion-MNIST (offline from Debian's
`dataset-fashion-mnist` package when TFDS cannot download it) that prints its test accuracy.

Settings come from `--config` (a Python file with `get_config()`, default `jaxcnn/config.py`; any key
can be overridden as `--config.KEY=VALUE`), and the top-level shorthands below override both. A run
pointed at a `--workdir` that holds checkpoints resumes where it stopped. SIGINT / SIGTERM save a
checkpoint and exit with status 130.

Multi-host (TPU pods, GPU clusters): pass `--distributed`; every process runs the same command and
reads its own share of the data.
"""

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from jaxcnn import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    str(Path(__file__).with_name("config.py")),
    "Config file (a Python file defining get_config()); keys can be overridden as --config.KEY=V.",
    lock_config=False,
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Run directory: checkpoints, metrics.jsonl, TensorBoard events, config.json. "
    "An existing one is resumed. Default: runs/<arch>-<dataset>.",
)
_ARCH = flags.DEFINE_string(
    "arch",
    None,
    "Architecture name or alias (python -c 'import jaxcnn; print(jaxcnn.list_models())').",
)
_DATASET = flags.DEFINE_string(
    "dataset",
    None,
    "TFDS dataset name (fashion_mnist, cifar10, imagenette, imagenet2012, ...) or "
    "'digits' (scikit-learn's, bundled).",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data dir (e.g. gs://bucket/tensorflow_datasets on a TPU VM)."
)
_EPOCHS = flags.DEFINE_integer("epochs", None, "Training epochs.")
_STEPS = flags.DEFINE_integer("steps", None, "Training steps (overrides --epochs).")
_BATCH = flags.DEFINE_integer(
    "batch_size", None, "Global batch size over all devices; must divide by the device count."
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", None, "Input side in pixels (default: the dataset's own size, or the arch's)."
)
_LR = flags.DEFINE_float("lr", None, "Peak learning rate.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", None, ["sgd", "adamw", "rmsprop"], "Optimizer.")
_SCHEDULE = flags.DEFINE_enum(
    "schedule",
    None,
    ["constant", "step", "multistep", "cosine", "exponential", "plateau"],
    "Learning-rate schedule; 'plateau' divides the lr by 10 when eval accuracy stops improving.",
)
_SEED = flags.DEFINE_integer("seed", None, "Seed of initialisation, shuffling and augmentation.")
_INIT_FROM = flags.DEFINE_string(
    "init_from",
    None,
    "Initial weights: a jaxcnn run directory, a .safetensors / .pth file (torchvision / timm "
    "names), or torchvision:NAME / timm:NAME from the model zoo. The head is re-initialised when "
    "the class count differs; what was loaded, adapted or newly initialised is printed.",
)
_FREEZE = flags.DEFINE_string(
    "freeze",
    None,
    "none | backbone (everything but the classifier: linear probing) | a comma list of top-level "
    "modules or prefixes (stem,stage1,stage2). Frozen parameters and their BatchNorm statistics "
    "stay exactly unchanged.",
)
_BACKBONE_LR = flags.DEFINE_float(
    "backbone_lr_mult", None, "Learning rate of the non-head parameters relative to the head's."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (multi-host TPU pods / GPU clusters)."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, where it is not auto-detected."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")

_SHORTHANDS = {
    "arch": _ARCH,
    "dataset": _DATASET,
    "data_dir": _DATA_DIR,
    "epochs": _EPOCHS,
    "steps": _STEPS,
    "batch_size": _BATCH,
    "image_size": _IMAGE_SIZE,
    "lr": _LR,
    "optimizer": _OPTIMIZER,
    "schedule": _SCHEDULE,
    "seed": _SEED,
    "init_from": _INIT_FROM,
    "freeze": _FREEZE,
    "backbone_lr_mult": _BACKBONE_LR,
}


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.configure_xla_cpu()  # before JAX starts its backends
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    cfg = _CONFIG.value
    for key, flag in _SHORTHANDS.items():
        if flag.value is not None:
            cfg[key] = flag.value
    workdir = _WORKDIR.value or os.path.join("runs", f"{cfg.arch}-{cfg.dataset}")

    if cfg.init_from and not str(cfg.init_from).endswith(".safetensors"):
        # A .pth or torchvision:/timm: source is read with PyTorch, which must be imported before
        # TensorFlow (the trainer's data pipeline): the other order has crashed the process.
        with contextlib.suppress(ImportError):
            import torch  # noqa: F401, PLC0415

    # Imported here so that `--help` and flag errors stay fast.
    from jaxcnn.training import loop as trainer  # noqa: PLC0415
    from jaxcnn.data import DatasetUnavailableError  # noqa: PLC0415

    try:
        trainer.validate(cfg)  # before any device is touched
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if _DISTRIBUTED.value:
        import jax  # noqa: PLC0415

        jax.distributed.initialize(
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
        )

    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        result = trainer.train_and_evaluate(cfg, workdir, should_stop=lambda _: stop.is_set())
    except (ValueError, FileNotFoundError, DatasetUnavailableError, trainer.TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, trainer.TrainingError) else 2
    return 130 if result.interrupted else 0


def run() -> None:
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
