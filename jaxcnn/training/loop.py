"""The training loop: config -> data, model, mesh, optimizer -> steps, evaluation and checkpoints.

Library code (the CLI `jaxcnn.train` parses flags and calls `train_and_evaluate`). Bad settings are
rejected by `validate` before any device is touched; a run pointed at a workdir with checkpoints
resumes exactly where it stopped.
"""

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxcnn import data
from jaxcnn.rundir import Checkpointer
from jaxcnn.training import finetune, optim, sharding
from jaxcnn.weights import loading
from jaxcnn.models import create_model, get_model_info
from jaxcnn.rundir import MetricsLog as RunLog
from jaxcnn.rundir import write_json_atomic
from jaxcnn.training.steps import eval_step, init_train_state, train_step

# Settings a resumed run must share with the run that wrote the checkpoints.
_RESUME_KEYS = (
    "arch",
    "arch_options",
    "dataset",
    "image_size",
    "batch_size",
    "seed",
    "optimizer",
    "dtype",
)
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); nothing after the last good step was saved."""


@dataclasses.dataclass
class RunResult:
    """What `train_and_evaluate` returns."""

    step: int
    eval_accuracy: float | None
    eval_loss: float | None
    interrupted: bool
    workdir: str


def validate(cfg: Any) -> None:
    """Checks the settings that need no data and no device; raises ValueError saying what is wrong."""
    get_model_info(cfg.arch)  # UnknownModelError (a ValueError) lists the closest names
    if cfg.batch_size is None or cfg.batch_size <= 0:
        raise ValueError(f"--batch_size must be a positive integer, got {cfg.batch_size}")
    if cfg.eval_batch_size is not None and cfg.eval_batch_size <= 0:
        raise ValueError(f"eval_batch_size must be positive, got {cfg.eval_batch_size}")
    if cfg.steps is None and (cfg.epochs is None or cfg.epochs <= 0):
        raise ValueError(f"--epochs must be positive (or set --steps), got {cfg.epochs}")
    if cfg.steps is not None and cfg.steps <= 0:
        raise ValueError(f"--steps must be positive, got {cfg.steps}")
    if cfg.image_size is not None and cfg.image_size <= 0:
        raise ValueError(f"--image_size must be positive, got {cfg.image_size}")
    if not cfg.lr > 0:
        raise ValueError(f"--lr must be positive, got {cfg.lr}")
    if cfg.optimizer not in optim.OPTIMIZERS:
        raise ValueError(
            f"unknown --optimizer {cfg.optimizer!r}; valid: {', '.join(optim.OPTIMIZERS)}"
        )
    if cfg.schedule not in optim.SCHEDULES:
        raise ValueError(
            f"unknown --schedule {cfg.schedule!r}; valid: {', '.join(optim.SCHEDULES)}"
        )
    if not cfg.backbone_lr_mult >= 0:
        raise ValueError(f"--backbone_lr_mult must be >= 0, got {cfg.backbone_lr_mult}")
    if cfg.dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {cfg.dtype!r}; valid: {', '.join(_DTYPES)}")
    if cfg.dataset not in data.OFFLINE:
        from jaxcnn.data.tf import tfds  # noqa: PLC0415 (TensorFlow only when needed)

        if cfg.dataset not in tfds.list_builders():
            import difflib  # noqa: PLC0415

            close = difflib.get_close_matches(cfg.dataset, tfds.list_builders(), n=5)
            raise ValueError(
                f"unknown --dataset {cfg.dataset!r}: not a TFDS dataset nor one of {data.OFFLINE}"
                + (f"; closest: {', '.join(close)}" if close else "")
            )


def resolve_image_size(cfg: Any, info: data.DatasetInfo) -> int:
    """The training resolution: --image_size, else the dataset's own, else the arch's native one."""
    model_info = get_model_info(cfg.arch)
    size = cfg.image_size or info.fixed_size or model_info.resolution
    if size < model_info.min_image_size:
        raise ValueError(
            f"image size {size} is too small for {model_info.name}: it downsamples by "
            f"{model_info.min_image_size}x, so it needs at least {model_info.min_image_size}x"
            f"{model_info.min_image_size} inputs; pass --image_size={max(model_info.min_image_size, 32)}"
            " or more (images are resized)"
        )
    return size


def _check_resumable(workdir: Path, cfg: Any) -> None:
    path = workdir / "config.json"
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    now = json.loads(cfg.to_json_best_effort())
    diff = [k for k in _RESUME_KEYS if saved.get(k) != now.get(k)]
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ValueError(
            f"{workdir} holds a run with other settings ({detail}); resume it with the same "
            "settings or use a new --workdir"
        )


def train_and_evaluate(
    cfg: Any, workdir: str | Path, *, should_stop: Callable[[int], bool] | None = None
) -> RunResult:
    """Trains `cfg.arch` on `cfg.dataset`, evaluating each epoch, checkpointing into `workdir`.

    Args:
        cfg: an `ml_collections.ConfigDict` like `jaxcnn.config.get_config()`.
        workdir: run directory; if it holds checkpoints, training resumes from the latest.
        should_stop: called after every step with the step number; True saves a checkpoint and
            returns (how the CLI handles SIGINT / SIGTERM and how tests interrupt a run).

    Returns:
        The final step and eval metrics, and whether the run was interrupted.
    """
    validate(cfg)
    workdir = Path(workdir)
    info = data.dataset_info(cfg.dataset, cfg.data_dir)
    image_size = resolve_image_size(cfg, info)
    _check_resumable(workdir, cfg)
    eval_batch_size = cfg.eval_batch_size or cfg.batch_size

    # -- devices from here on.
    mesh = sharding.make_mesh()
    sharding.check_batch_size(cfg.batch_size, mesh)
    sharding.check_batch_size(eval_batch_size, mesh)
    main = jax.process_index() == 0
    per_epoch = data.steps_per_epoch(info, cfg.batch_size)
    total = cfg.steps or cfg.epochs * per_epoch

    model = create_model(
        cfg.arch, num_classes=info.num_classes, dtype=_DTYPES[cfg.dtype], **cfg.arch_options
    )
    schedule = optim.make_schedule(cfg, per_epoch, total)
    rep, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    input_shape = (1, image_size, image_size, info.image_shape[-1])
    labels = frozen_stats = None
    if cfg.freeze != "none" or cfg.backbone_lr_mult != 1.0:
        shapes = jax.eval_shape(
            lambda: model.init(jax.random.key(0), jnp.zeros(input_shape), train=False)
        )
        frozen = finetune.frozen_modules(shapes["params"], cfg.freeze)  # ValueError if unknown
        labels = finetune.param_labels(shapes["params"], frozen, cfg.backbone_lr_mult)
        if frozen:
            frozen_stats = finetune.stats_mask(shapes.get("batch_stats", {}), frozen)
            if main:
                print(f"Frozen: {', '.join(sorted(frozen))} (parameters and BatchNorm statistics).")
    tx = optim.make_optimizer(cfg, schedule, labels)
    state = jax.jit(
        functools.partial(init_train_state, model, tx, cfg.seed, input_shape), out_shardings=rep
    )()

    # Read --init_from before anything is written, so that a bad source leaves no run directory.
    source = (
        loading.load_init(cfg.init_from, get_model_info(cfg.arch).name) if cfg.init_from else None
    )
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(workdir, cfg.keep_checkpoints)
    log = RunLog(workdir, enabled=main)
    plateau = optim.PlateauState(cfg.plateau_factor, cfg.plateau_patience, cfg.plateau_threshold)
    best_acc = -1.0
    start = ckpt.latest_step() or 0
    if start:
        tree, meta = ckpt.restore(state.as_checkpoint())
        state = state.from_checkpoint(tree)
        plateau = optim.PlateauState(**meta["plateau"])
        best_acc = meta["best_accuracy"]
        log.truncate_after(start)
        if main:
            print(f"Resuming {workdir} from step {start}.")
    elif source is not None:
        merged, report = loading.merge_variables(
            {"params": state.params, "batch_stats": state.batch_stats}, source
        )
        state = state.replace(
            params=jax.device_put(merged["params"], rep),
            batch_stats=jax.device_put(merged.get("batch_stats", {}), rep),
        )
        if main:
            print(f"--init_from={cfg.init_from}: {report}")
    if main:
        write_json_atomic(workdir / "config.json", json.loads(cfg.to_json_best_effort()))

    train_fn = jax.jit(
        functools.partial(
            train_step,
            label_smoothing=cfg.label_smoothing,
            # Networks with auxiliary classifiers declare the weight of their losses.
            aux_weight=getattr(model.variant, "aux_weight", 0.0),
            frozen_stats=frozen_stats,
        ),
        in_shardings=(rep, split),
        out_shardings=(rep, rep),
        donate_argnums=0,
    )
    eval_fn = jax.jit(eval_step, in_shardings=(rep, split), out_shardings=rep)

    def evaluate(state) -> dict[str, float]:
        sums = None
        for local in data.eval_batches(
            info,
            global_batch=eval_batch_size,
            image_size=image_size,
            data_dir=cfg.data_dir,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        ):
            out = eval_fn(state, sharding.global_batch(local, mesh))
            sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
        sums = jax.device_get(sums)
        count = int(sums["count"])
        if count != info.num_eval:  # every example exactly once, whatever the batch and devices
            raise TrainingError(f"evaluated {count} examples, expected {info.num_eval}")
        return {"accuracy": float(sums["correct"]) / count, "loss": float(sums["loss_sum"]) / count}

    def save(step: int, best: bool = False) -> None:
        meta = {
            "step": step,
            "epoch": step / per_epoch,
            "best_accuracy": best_acc,
            "plateau": dataclasses.asdict(plateau),
        }
        ckpt.save(step, state.as_checkpoint(), meta, best=best)

    batches = data.train_batches(
        info,
        global_batch=cfg.batch_size,
        image_size=image_size,
        seed=cfg.seed,
        start_step=start,
        data_dir=cfg.data_dir,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        augment=cfg.augment,
    )
    step, pending, interrupted, last_eval = start, [], False, None
    t_log, n_log = time.perf_counter(), 0
    bar = tqdm(
        total=total,
        initial=start,
        disable=not main,
        unit="step",
        dynamic_ncols=True,
        desc=f"{get_model_info(cfg.arch).name} on {info.name}",
    )
    try:
        while step < total:
            state, metrics = train_fn(state, sharding.global_batch(next(batches), mesh))
            step += 1
            pending.append(metrics)
            n_log += cfg.batch_size
            bar.update(1)
            interrupted = bool(should_stop and should_stop(step))
            epoch_end = step % per_epoch == 0 or step == total
            do_eval = epoch_end and (
                (step // per_epoch) % cfg.eval_every_epochs == 0 or step == total
            )
            do_save = do_eval or step % cfg.checkpoint_every_steps == 0 or interrupted
            # Metrics are fetched (a host sync) only here, and always before a save: a non-finite
            # step is caught before anything after it can reach a checkpoint.
            if step % cfg.log_every_steps == 0 or epoch_end or do_save:
                host = jax.device_get(pending)
                pending = []
                if not all(m["finite"] for m in host):
                    bad = step - len(host) + [bool(m["finite"]) for m in host].index(False) + 1
                    raise TrainingError(
                        f"non-finite loss or gradient at step {bad}: training stopped, the update was "
                        f"not applied and nothing after step {bad - 1} was checkpointed. Lower --lr "
                        "or check the data."
                    )
                dt = time.perf_counter() - t_log
                loss = float(np.mean([m["loss"] for m in host]))
                acc = float(np.mean([m["accuracy"] for m in host]))
                # The rate of the step just taken: the schedule times the plateau scale.
                lr = float(schedule(step - 1)) * float(optim.lr_scale(state.opt_state))
                log.write(step, "train", loss=loss, accuracy=acc, lr=lr, images_per_sec=n_log / dt)
                bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.3f}", img_s=f"{n_log / dt:.0f}")
                t_log, n_log = time.perf_counter(), 0
            if do_eval:
                last_eval = evaluate(state)
                log.write(step, "eval", epoch=step / per_epoch, **last_eval)
                bar.write(
                    f"step {step} (epoch {step / per_epoch:.2f}): eval accuracy "
                    f"{last_eval['accuracy']:.4f}, loss {last_eval['loss']:.4f}"
                )
                if cfg.schedule == "plateau" and plateau.update(last_eval["accuracy"]):
                    state = state.replace(
                        opt_state=optim.with_lr_scale(state.opt_state, plateau.scale)
                    )
                    bar.write(f"validation accuracy plateaued: lr scale now {plateau.scale:g}")
                improved = last_eval["accuracy"] > best_acc
                best_acc = max(best_acc, last_eval["accuracy"])
                save(step, best=improved)
                t_log, n_log = time.perf_counter(), 0  # don't count eval time as training
            elif do_save:
                save(step)
            if interrupted:
                break
    finally:
        bar.close()
        ckpt.wait()
        ckpt.close()

    if interrupted:
        log.close()
        if main:
            print(
                f"Interrupted at step {step}: checkpoint saved. Run again with the same "
                f"--workdir={workdir} to resume."
            )
        return RunResult(step, None, None, True, str(workdir))
    if last_eval is None:  # resumed a finished run, or the last step was not an eval step
        last_eval = evaluate(state)
    log.close()
    if main:
        print(
            f"Final {info.eval_split} accuracy of {cfg.arch} on {info.name} after {step} steps: "
            f"{last_eval['accuracy']:.4f} (loss {last_eval['loss']:.4f})"
        )
    return RunResult(step, last_eval["accuracy"], last_eval["loss"], False, str(workdir))


__all__ = ["RunResult", "TrainingError", "resolve_image_size", "train_and_evaluate", "validate"]
