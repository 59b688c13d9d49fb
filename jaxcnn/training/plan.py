"""Planning a run: every check and every derived size that needs no device.

`plan_run(cfg, workdir)` validates the settings, reads the dataset's metadata, picks the resolution,
checks that the run directory can hold (or resume) this run, and returns a `RunPlan`: what the loop
needs to know before it touches a device. A user's mistake is a `ValueError` here, before JAX or the
accelerator is used.
"""

import dataclasses
import difflib
import json
from typing import Any

import jax.numpy as jnp

from jaxcnn import data, rundir
from jaxcnn.models import ModelInfo, get_model_info
from jaxcnn.training import optim
from jaxcnn.weights import loading

# Computation dtypes by their config spelling.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def validate(cfg: Any) -> None:
    """Checks the settings that need no data and no device; raises ValueError saying what is wrong."""
    get_model_info(cfg.arch)  # UnknownModelError (a ValueError) lists the closest names
    if cfg.batch_size is None:
        raise ValueError("--batch_size must be a positive integer, got None")
    for flag, value in (
        ("--batch_size", cfg.batch_size),
        ("eval_batch_size", cfg.eval_batch_size),
        ("--steps", cfg.steps),
        ("--image_size", cfg.image_size),
    ):
        if value is not None and value <= 0:
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    if cfg.steps is None and (cfg.epochs is None or cfg.epochs <= 0):
        raise ValueError(f"--epochs must be positive (or set --steps), got {cfg.epochs}")
    if not cfg.lr > 0:
        raise ValueError(f"--lr must be positive, got {cfg.lr}")
    for flag, value, valid in (
        ("--optimizer", cfg.optimizer, optim.OPTIMIZERS),
        ("--schedule", cfg.schedule, optim.SCHEDULES),
        ("dtype", cfg.dtype, tuple(DTYPES)),
    ):
        if value not in valid:
            raise ValueError(f"unknown {flag} {value!r}; valid: {', '.join(valid)}")
    if not cfg.backbone_lr_mult >= 0:
        raise ValueError(f"--backbone_lr_mult must be >= 0, got {cfg.backbone_lr_mult}")
    _validate_recipe(cfg)
    if data.folder.is_folder(cfg.dataset):
        data.folder.root_of(cfg.dataset)  # an empty path is refused here
    elif cfg.dataset not in data.OFFLINE:
        from jaxcnn.data.tf import tfds  # TensorFlow only when a TFDS name must be checked

        # Without community datasets: listing those reads an index in a Google bucket, which
        # offline takes seconds with TensorFlow's GCS client and ~2 min with gcsfs (retries).
        names = tfds.list_builders(with_community_datasets=False)
        if cfg.dataset not in names:
            close = difflib.get_close_matches(cfg.dataset, names, n=5)
            raise ValueError(
                f"unknown --dataset {cfg.dataset!r}: not a TFDS dataset nor one of {data.OFFLINE}"
                + (f"; closest: {', '.join(close)}" if close else "")
            )


def _validate_recipe(cfg: Any) -> None:
    """The settings of the modern recipe pieces: EMA, Mixup / CutMix, augmentation policies,
    gradient accumulation, the non-finite policy and profiling."""
    from jaxcnn.training.mixing import MixSpec

    if cfg.ema_decay is not None and not 0 < cfg.ema_decay < 1:
        raise ValueError(
            f"--config.ema_decay must be between 0 and 1 (e.g. 0.9998), got {cfg.ema_decay}"
        )
    mixing = MixSpec.from_config(cfg)
    mixing.validate()
    if mixing.enabled and cfg.batch_size % 2:
        raise ValueError(
            f"Mixup / CutMix pair each example with the batch's mirror image: --batch_size must "
            f"be even, got {cfg.batch_size}"
        )
    data.augment.Policy.from_config(cfg)  # ValueError naming the flag for a bad policy
    k = cfg.grad_accum_steps
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"--config.grad_accum_steps must be a positive integer, got {k!r}")
    if cfg.batch_size % k:
        raise ValueError(
            f"--batch_size {cfg.batch_size} does not split into --config.grad_accum_steps={k} "
            "equal micro-batches"
        )
    if cfg.max_skipped_steps is not None and cfg.max_skipped_steps < 0:
        raise ValueError(
            f"--config.max_skipped_steps must be >= 0 (or unset), got {cfg.max_skipped_steps}"
        )
    parse_profile_steps(cfg.profile_steps)


def parse_profile_steps(spec: str | None) -> tuple[int, int] | None:
    """`"10,20"` -> (10, 20); None -> None. ValueError (one line) for anything else."""
    if spec in (None, ""):
        return None
    parts = str(spec).split(",")
    try:
        first, last = (int(p) for p in parts)
    except ValueError:
        first = last = -1
    if len(parts) != 2 or not 1 <= first <= last:
        raise ValueError(
            f"--config.profile_steps must be FIRST,LAST with 1 <= FIRST <= LAST (steps, e.g. "
            f"10,20), got {spec!r}"
        )
    return first, last


def image_size_for(arch: str, requested: int | None, info: data.DatasetInfo) -> int:
    """The resolution of a run: `requested`, else the dataset's own size, else the arch's native.

    Raises:
        ValueError: the size is below what the network accepts (the message gives the minimum).
    """
    model_info = get_model_info(arch)
    size = requested or info.fixed_size or model_info.resolution
    least = model_info.min_image_size
    if size < least:
        raise ValueError(
            f"image size {size} is too small for {model_info.name}: it downsamples by {least}x, so "
            f"it needs at least {least}x{least} inputs; pass --image_size={max(least, 32)} or more "
            "(images are resized)"
        )
    return size


def resolve_image_size(cfg: Any, info: data.DatasetInfo) -> int:
    """`image_size_for(cfg.arch, cfg.image_size, info)`."""
    return image_size_for(cfg.arch, cfg.image_size, info)


def _init_statistics(cfg: Any) -> tuple[int | None, tuple | None]:
    """(channels, (mean, std, source)) a fine-tuned network expects of its inputs: a run's own,
    published weights' (their zoo entry), ImageNet's for a PyTorch weights file; (None, None)
    (decided by the images, measured on them) when training from scratch."""
    spec = cfg.init_from
    if not spec:
        return None, None
    from jaxcnn.weights import zoo

    path = rundir.as_path(spec)
    if path.is_dir():  # a jaxcnn run: its inputs
        source = rundir.RunDir(path)
        saved = source.read_dataset()
        if saved is not None:
            rec = data.folder.FolderRecord.from_json(saved)
            return rec.channels, (rec.mean, rec.std, f"those of the --init_from run {path}")
        other = data.dataset_info(source.read_config()["dataset"])
        return other.image_shape[-1], (
            other.mean,
            other.std,
            f"those of the --init_from run {path}",
        )
    if ":" in spec and not path.exists():
        _, entry = zoo.zoo_entry(spec)
        return 3, (tuple(entry["mean"]), tuple(entry["std"]), f"those of the {spec} weights")
    mean, std = data.sources.IMAGENET_MEAN, data.sources.IMAGENET_STD
    return 3, (mean, std, "ImageNet's, which PyTorch weights files expect")


def folder_dataset(cfg: Any, run: rundir.RunDir) -> data.DatasetInfo:
    """A folder dataset for this run: the run's own record when it resumes (the folder must still
    hold the same files), else the folder listed and every image opened once
    (`jaxcnn.data.folder.inspect`).

    Raises:
        jaxcnn.data.folder.FolderError: the folder cannot be a dataset (the message says why).
        rundir.RunDirError: the folder changed since the run started.
    """
    folder = data.folder
    listing = folder.list_folder(folder.root_of(cfg.dataset))
    saved = run.read_dataset()
    if saved is not None:
        record = folder.FolderRecord.from_json(saved)
        if record.fingerprint != listing.fingerprint:
            raise rundir.RunDirError(
                f"{listing.root} no longer holds the images the run in {run} started with (files "
                "added, removed or changed); put them back or train in a new --workdir"
            )
        if record.val_fraction is not None and record.val_fraction != cfg.val_fraction:
            raise rundir.RunDirError(
                f"{run} held out --val_fraction={record.val_fraction}, not {cfg.val_fraction}; "
                "resume with the same value or use a new --workdir"
            )
        return data.sources.folder_info(record)
    channels, stats = _init_statistics(cfg)
    record = folder.inspect(
        listing,
        val_fraction=cfg.val_fraction,
        channels=channels,
        stats=stats,
        skip_bad_images=cfg.skip_bad_images,
    )
    return data.sources.folder_info(record)


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """A validated run, before any device is used.

    Attributes:
        cfg: the settings (an `ml_collections.ConfigDict` like `jaxcnn.config.get_config()`).
        run: the run directory.
        model_info: the registry entry of `cfg.arch`.
        dataset: the dataset's metadata.
        image_size: the input side.
        eval_batch_size: global batch of evaluation.
        steps_per_epoch: training steps per pass over the training split.
        total_steps: steps of the whole run.
    """

    cfg: Any
    run: rundir.RunDir
    model_info: ModelInfo
    dataset: data.DatasetInfo
    image_size: int
    eval_batch_size: int
    steps_per_epoch: int
    total_steps: int

    @property
    def config_json(self) -> dict[str, Any]:
        """The settings as written to `config.json`."""
        return json.loads(self.cfg.to_json_best_effort())

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(1, H, W, C) of one example."""
        return (1, self.image_size, self.image_size, self.dataset.image_shape[-1])

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch

    def is_epoch_end(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0 or step == self.total_steps

    def is_eval_step(self, step: int) -> bool:
        """An evaluation follows every `eval_every_epochs`-th epoch and the last step."""
        every = self.cfg.eval_every_epochs
        return step == self.total_steps or (
            step % self.steps_per_epoch == 0 and (step // self.steps_per_epoch) % every == 0
        )


def plan_run(cfg: Any, workdir: rundir.PathLike) -> RunPlan:
    """Validates `cfg` and the run directory and derives the run's sizes (no device is used).

    Raises:
        ValueError: bad settings, a workdir holding another run, naming a file or not writable,
            an --init_from weights file that is missing or malformed.
        jaxcnn.data.DatasetUnavailableError: a dataset that cannot be read or prepared.
    """
    validate(cfg)
    run = rundir.RunDir(workdir)
    run.check_not_a_file()
    # A parent that is a file, a read-only disk, a directory of another user: said here, before a
    # device or the data is touched, not as an OSError when the first checkpoint is made.
    rundir.check_writable_dir(run.path, "--workdir")
    for where in (rundir.CHECKPOINTS, *(f"{rundir.CHECKPOINTS}/{s}" for s in rundir.SERIES)):
        if (run.path / where).exists() and not (run.path / where).is_dir():
            raise rundir.RunDirError(
                f"{run.path / where} is a file where a run keeps its checkpoints; move it away "
                "or name another --workdir"
            )
    if cfg.init_from:
        loading.check_init_from(cfg.init_from, cfg.arch)  # a missing or malformed weights file
    if data.folder.is_folder(cfg.dataset):
        cfg.dataset = data.folder.canonical(cfg.dataset)  # recorded absolute: resumes from any cwd
        run.check_resumable(json.loads(cfg.to_json_best_effort()))  # before the images are read
        info = folder_dataset(cfg, run)
    else:
        info = data.dataset_info(cfg.dataset, cfg.data_dir)
    image_size = resolve_image_size(cfg, info)
    run.check_resumable(json.loads(cfg.to_json_best_effort()))
    per_epoch = data.steps_per_epoch(info, cfg.batch_size)
    return RunPlan(
        cfg=cfg,
        run=run,
        model_info=get_model_info(cfg.arch),
        dataset=info,
        image_size=image_size,
        eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        steps_per_epoch=per_epoch,
        total_steps=cfg.steps or cfg.epochs * per_epoch,
    )
