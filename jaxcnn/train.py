"""Train a network: `python -m jaxcnn.train --arch=resnext50 --dataset=cifar10 --workdir=runs/x`.

With no arguments: a short ResNet-8 run on Fashion-MNIST (offline from Debian's
`dataset-fashion-mnist` package when TFDS cannot download it) that prints its test accuracy.

Settings come from `--config` (a Python file with `get_config()`, default `jaxcnn/config.py`; any key
can be overridden as `--config.KEY=VALUE`), and the top-level shorthands below override both. A run
pointed at a `--workdir` that holds checkpoints resumes where it stopped. SIGINT / SIGTERM save a
checkpoint and exit with status 130; a non-finite loss stops the run with status 1, a bad setting
with status 2 and one line saying what is wrong.

Multi-host (TPU pods, GPU clusters): pass `--distributed`; every process runs the same command and
reads its own rows of every global batch, which depends on (seed, step) only: 1 process, 2 or a
pod train on the same batches, and a run resumes on a slice of any size. A SIGTERM that reaches
any one process makes all of them save the same step and exit 130; a process that dies makes the
others exit with an error within `--heartbeat_timeout` seconds instead of waiting for it.
`--workdir` and `--data_dir` may be buckets (gs://...).

Writes the run directory (`--workdir`, default `runs/<arch>-<dataset>`): `config.json`,
`metrics.jsonl`, TensorBoard event files, `checkpoints/latest` and `checkpoints/best`
(`jaxcnn.rundir` describes each).
"""

import contextlib
import os
import signal
import threading
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from jaxcnn import cli

# Config keys that have a top-level flag of the same name (the flag wins over --config).
SHORTHANDS = (
    "arch",
    "dataset",
    "data_dir",
    "epochs",
    "steps",
    "batch_size",
    "image_size",
    "lr",
    "optimizer",
    "schedule",
    "seed",
    "init_from",
    "freeze",
    "backbone_lr_mult",
    "val_fraction",
)


def define_flags(fv: flags.FlagValues) -> cli.Flags:
    d = cli.definers(fv)
    return cli.Flags(
        config=config_flags.DEFINE_config_file(
            "config",
            str(Path(__file__).with_name("config.py")),
            "Config file (a Python file defining get_config()); keys can be overridden as --config.KEY=V.",
            lock_config=False,
            flag_values=fv,
        ),
        workdir=d.string(
            "workdir",
            None,
            "Run directory, a local folder or a bucket (gs://bucket/runs/x): checkpoints, "
            "metrics.jsonl, TensorBoard events, config.json. An existing one is resumed. "
            "Default: runs/<arch>-<dataset>.",
        ),
        arch=d.string(
            "arch",
            None,
            "Architecture name or alias (python -c 'import jaxcnn; print(jaxcnn.list_models())').",
        ),
        dataset=d.string(
            "dataset",
            None,
            "TFDS dataset name (fashion_mnist, cifar10, imagenette, imagenet2012, ...), "
            "'digits' (scikit-learn's, bundled), or folder:PATH, a folder of your own images: "
            "PATH/<class>/<image>, or PATH/train/<class>/... with PATH/val/<class>/... "
            "(.jpg .jpeg .png .bmp .gif .webp .tif .tiff).",
        ),
        val_fraction=d.float(
            "val_fraction",
            None,
            "folder:PATH without a val/ folder: the share of each class held out for validation "
            "(stratified, fixed seed; default 0.2).",
        ),
        data_dir=d.string(
            "data_dir", None, "TFDS data dir (e.g. gs://bucket/tensorflow_datasets on a TPU VM)."
        ),
        epochs=d.integer("epochs", None, "Training epochs."),
        steps=d.integer("steps", None, "Training steps (overrides --epochs)."),
        batch_size=d.integer(
            "batch_size",
            None,
            "Global batch size over all devices; must divide by the device count.",
        ),
        image_size=d.integer(
            "image_size",
            None,
            "Input side in pixels (default: the dataset's own size, or the arch's).",
        ),
        lr=d.float("lr", None, "Peak learning rate."),
        optimizer=d.enum("optimizer", None, ["sgd", "adamw", "rmsprop", "lamb"], "Optimizer."),
        schedule=d.enum(
            "schedule",
            None,
            ["constant", "step", "multistep", "cosine", "exponential", "plateau"],
            "Learning-rate schedule; 'plateau' divides the lr by 10 when eval accuracy stops improving.",
        ),
        seed=d.integer("seed", None, "Seed of initialisation, shuffling and augmentation."),
        init_from=d.string(
            "init_from",
            None,
            "Initial weights: a jaxcnn run directory, a .safetensors / .pth file (torchvision / timm "
            "names), or torchvision:NAME / timm:NAME from the model zoo. The head is re-initialised when "
            "the class count differs; what was loaded, adapted or newly initialised is printed.",
        ),
        freeze=d.string(
            "freeze",
            None,
            "none | backbone (everything but the classifier: linear probing) | a comma list of top-level "
            "modules or prefixes (stem,stage1,stage2). Frozen parameters and their BatchNorm statistics "
            "stay exactly unchanged.",
        ),
        backbone_lr_mult=d.float(
            "backbone_lr_mult",
            None,
            "Learning rate of the non-head parameters relative to the head's.",
        ),
        distributed=d.bool(
            "distributed",
            False,
            "Call jax.distributed.initialize() (multi-host TPU pods / GPU clusters).",
        ),
        coordinator_address=d.string(
            "coordinator_address", None, "host:port of process 0, where it is not auto-detected."
        ),
        num_processes=d.integer("num_processes", None, "Processes in the job."),
        process_id=d.integer("process_id", None, "This process's index."),
        heartbeat_timeout=d.integer(
            "heartbeat_timeout",
            60,
            "With --distributed: seconds without a heartbeat after which a process counts as dead "
            "and the others stop with an error (JAX's default is 100).",
            lower_bound=1,
        ),
    )


def main(argv: list[str], f: cli.Flags) -> int:
    del argv
    cfg = f.config.value
    for key in SHORTHANDS:
        if getattr(f, key).value is not None:
            cfg[key] = getattr(f, key).value
    # A folder dataset's run is named after the folder (a path cannot be part of a name).
    name = cfg.dataset
    if str(name).startswith("folder:"):
        name = "folder-" + (os.path.basename(os.path.normpath(name[len("folder:") :])) or "data")
    workdir = f.workdir.value or os.path.join("runs", f"{cfg.arch}-{name}")
    # The run directory and the weights file, checked before TensorFlow and PyTorch are imported
    # (seconds, and their start-up logging) when the answer is already known; plan_run checks
    # them again for the library's callers.
    from jaxcnn import rundir
    from jaxcnn.weights import loading as weights

    rundir.RunDir(workdir).check_not_a_file()
    rundir.check_writable_dir(workdir, "--workdir" if f.workdir.value else "the default --workdir")
    if cfg.init_from:
        weights.check_init_from(cfg.init_from, cfg.arch)
    if cfg.init_from and not str(cfg.init_from).endswith(".safetensors"):
        # A .pth or torchvision:/timm: source is read with PyTorch, which must be imported before
        # TensorFlow (the trainer's data pipeline): the other order has crashed the process.
        with contextlib.suppress(ImportError):
            import torch  # noqa: F401

    from jaxcnn.training import loop
    from jaxcnn.training.plan import validate

    validate(cfg)  # before any device is touched
    # SIGINT / SIGTERM ask the loop to save and stop (set before the job starts, so that a notice
    # during start-up or data preparation is not lost); the previous handlers come back afterwards.
    stop = threading.Event()
    ask_to_stop = lambda *_: stop.set()  # noqa: E731
    previous = {s: signal.signal(s, ask_to_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if f.distributed.value:
            import jax

            jax.distributed.initialize(
                coordinator_address=f.coordinator_address.value,
                num_processes=f.num_processes.value,
                process_id=f.process_id.value,
                heartbeat_timeout_seconds=f.heartbeat_timeout.value,
                # A process that fails alone (a bad dataset on process 0) then exits within the
                # same bound instead of waiting 5 min for peers that will not come.
                shutdown_timeout_seconds=f.heartbeat_timeout.value,
            )
            # jax.distributed installs a SIGTERM handler of its own (its preemption notifier, which
            # logs "SIGTERM caught" and tells no one here): ours again, so that the stop vote hears.
            signal.signal(signal.SIGTERM, ask_to_stop)
            loop.prepare_dataset_once(cfg)
        result = loop.train_and_evaluate(cfg, workdir, should_stop=lambda _: stop.is_set())
    except loop.TrainingError as e:
        return cli.fail(str(e), status=1)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    cli.run(define_flags, main)
