"""The training loop: plan -> mesh -> program -> restore or initialise -> steps -> report.

Library code (the command `python -m jaxcnn.train` parses flags and calls `train_and_evaluate`).
Bad settings are rejected by `plan_run` before any device is touched; a run pointed at a workdir
with checkpoints resumes exactly where it stopped (step, parameters, BatchNorm statistics,
optimizer state with the plateau scale, RNG, data position).
"""

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import data, rundir
from jaxcnn.models import create_model
from jaxcnn.training import optim, sharding
from jaxcnn.training.finetune import fine_tuning
from jaxcnn.training.mixing import MixSpec
from jaxcnn.training.plan import (
    DTYPES,
    RunPlan,
    parse_profile_steps,
    plan_run,
    resolve_image_size,
    validate,
)
from jaxcnn.training.program import Program, build_program, flag_value
from jaxcnn.training.report import Reporter
from jaxcnn.training.steps import TrainState
from jaxcnn.weights import loading

__all__ = [
    "Progress",
    "RunResult",
    "StepActions",
    "TrainingError",
    "actions_at",
    "check_finite",
    "build_run",
    "default_max_skipped",
    "parse_profile_steps",
    "evaluate",
    "prepare_dataset_once",
    "resolve_image_size",
    "train_and_evaluate",
    "validate",
]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); nothing after the last good step was saved."""


class DiskFullError(TrainingError):
    """The disk of the run directory filled up; the message says where and what is intact."""


def _disk_full_message(plan: RunPlan, where: str) -> str:
    """What a full disk did and what to do: the path that could not be written, the free space,
    and the newest committed checkpoint (Orbax commits a save only once all of it is written, so
    the ones before the failed save are whole; a resume verifies them)."""
    ckpt = plan.run.checkpointer(create=False)
    try:
        committed = ckpt.latest.all_steps()
    finally:
        ckpt.close()
    free = ""
    if not rundir.is_url(plan.run.path):
        with contextlib.suppress(OSError):
            free = f" ({shutil.disk_usage(plan.run.path).free / 2**20:.1f} MiB free there)"
    resume = (
        f"the newest committed checkpoint, step {max(committed)}, is intact and the run resumes "
        "from it"
        if committed
        else "no checkpoint had been committed yet, so the run starts afresh"
    )
    return (
        f"no space left on device writing {where or plan.run.path}{free}: the unfinished save "
        f"is never read; free some space or use another --workdir, then run the same command again: "
        f"{resume}"
    )


@dataclasses.dataclass
class RunResult:
    """What `train_and_evaluate` returns."""

    step: int
    eval_accuracy: float | None
    eval_loss: float | None
    interrupted: bool
    workdir: str
    ema_accuracy: float | None = None  # of the EMA of the weights, when the run keeps one


@dataclasses.dataclass
class Progress:
    """The host-side state a checkpoint carries beside the arrays: best accuracy and plateau."""

    plateau: optim.PlateauState
    best_accuracy: float = -1.0
    # Steps skipped for a non-finite loss or gradient: in all, and in a row up to the last step.
    skipped_steps: int = 0
    skip_streak: int = 0
    # The step of the best evaluation: a resume from that very step saves it as best again if
    # the run was killed between its latest and best saves.
    best_step: int | None = None

    @classmethod
    def fresh(cls, cfg: Any) -> "Progress":
        return cls(
            optim.PlateauState(cfg.plateau_factor, cfg.plateau_patience, cfg.plateau_threshold)
        )

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Progress":
        return cls(
            optim.PlateauState(**meta["plateau"]),
            meta["best_accuracy"],
            meta.get("skipped_steps", 0),  # absent in checkpoints of jaxcnn before 0.3
            meta.get("skip_streak", 0),
            meta.get("best_step"),
        )

    def meta(self, step: int, epoch: float) -> dict[str, Any]:
        return {
            "step": step,
            "epoch": epoch,
            "best_accuracy": self.best_accuracy,
            "plateau": dataclasses.asdict(self.plateau),
            "skipped_steps": self.skipped_steps,
            "skip_streak": self.skip_streak,
            "best_step": self.best_step,
        }

    def record(self, accuracy: float, step: int | None = None) -> bool:
        """Notes an evaluation (at `step`); True when it is the best so far."""
        improved = accuracy > self.best_accuracy
        self.best_accuracy = max(self.best_accuracy, accuracy)
        if improved:
            self.best_step = step
        return improved


@dataclasses.dataclass(frozen=True)
class StepActions:
    """What happens after a step: fetch and log the metrics, evaluate, checkpoint."""

    log: bool
    eval: bool
    save: bool


def actions_at(step: int, plan: RunPlan, interrupted: bool = False) -> StepActions:
    """The actions after `step` (pure). Metrics are fetched (a host sync) before every save, so that
    a non-finite step is caught before anything after it can reach a checkpoint."""
    cfg = plan.cfg
    do_eval = plan.is_epoch_end(step) and plan.is_eval_step(step)
    save = do_eval or step % cfg.checkpoint_every_steps == 0 or interrupted
    log = step % cfg.log_every_steps == 0 or plan.is_epoch_end(step) or save
    return StepActions(log=log, eval=do_eval, save=save)


def data_meta(plan: RunPlan) -> dict[str, Any]:
    """What a checkpoint records of its data: dataset, class names, input size and statistics."""
    info = plan.dataset
    return {
        "dataset": info.name,
        "class_names": list(info.class_names),
        "image_size": plan.image_size,
        "image_shape": list(info.image_shape),
        "channels": info.image_shape[-1],
        "mean": list(info.mean),
        "std": list(info.std),
    }


def default_max_skipped(dtype: str) -> int:
    """Consecutive non-finite steps a run skips before it stops, unless `max_skipped_steps` says:
    none in float32 / bfloat16, where one is a divergence; 20 in float16, where an overflow is
    how the dynamic loss scale finds its level (each one halves it: 20 take 2**15 below 1/16)."""
    return 20 if dtype == "float16" else 0


def recipe_summary(cfg: Any) -> str:
    """One line naming the recipe pieces a run uses beyond the plain step ("" when none)."""
    parts = []
    if cfg.ema_decay is not None:
        parts.append(
            f"EMA of the weights, decay {cfg.ema_decay:g}" + (" with warm-up" * cfg.ema_warmup)
        )
    mixing = MixSpec.from_config(cfg)
    if mixing.enabled:
        kinds = [f"Mixup alpha {mixing.mixup_alpha:g}"] * (mixing.mixup_alpha > 0)
        kinds += [f"CutMix alpha {mixing.cutmix_alpha:g}"] * (mixing.cutmix_alpha > 0)
        parts.append(
            " / ".join(kinds)
            + f" (batch probability {mixing.prob:g}"
            + (f", switch {mixing.switch_prob:g}" if len(kinds) == 2 else "")
            + ")"
        )
    if cfg.dtype == "float16":
        parts.append("float16 with dynamic loss scaling")
    if cfg.grad_accum_steps > 1:
        parts.append(f"{cfg.grad_accum_steps} micro-batches per step")
    return "; ".join(parts)


def check_finite(
    rows: list[dict[str, Any]], step: int, streak: int = 0, max_skipped: int = 0
) -> tuple[int, list[int]]:
    """The non-finite policy over `rows`, the metrics of the steps up to `step`.

    The train step applied none of the non-finite updates. Up to `max_skipped` of them in a row
    are tolerated (skipped); one more stops the run with a TrainingError naming the step, before
    anything after it can be saved.

    Args:
        rows: per-step metrics with `finite`.
        step: the step of the last row.
        streak: non-finite steps in a row just before the first row.
        max_skipped: how many in a row are skipped rather than fatal.

    Returns:
        (the streak after the last row, the steps of `rows` that were skipped).
    """
    first = step - len(rows) + 1
    skipped = []
    for i, m in enumerate(rows):
        if bool(m["finite"]):
            streak = 0
            continue
        streak += 1
        bad = first + i
        if streak > max_skipped:
            run = f" (the last of {streak} in a row)" if streak > 1 else ""
            stopped = (
                f"training stopped, the update was not applied and nothing after step "
                f"{bad - 1} was checkpointed"
            )
            if not bool(m.get("input_finite", True)):
                raise TrainingError(
                    f"the batch of step {bad}{run} came in non-finite (NaN or Inf in its "
                    f"images): {stopped}. The data is damaged, not the training: check the "
                    "dataset's images (a float image with NaN, a failed decode)."
                )
            raise TrainingError(
                f"non-finite loss or gradient at step {bad}{run}: {stopped}. Lower --lr or "
                "check the data."
            )
        skipped.append(bad)
    return streak, skipped


def build_run(plan: RunPlan, mesh: jax.sharding.Mesh, report: Reporter) -> tuple[Program, Any]:
    """The network, optimizer and jitted (not yet compiled) steps of a planned run: (program, lr
    schedule)."""
    cfg = plan.cfg
    model = create_model(
        cfg.arch,
        num_classes=plan.dataset.num_classes,
        dtype=DTYPES[cfg.dtype],
        **cfg.arch_options,
    )
    tuning = fine_tuning(model, plan.input_shape, cfg.freeze, cfg.backbone_lr_mult)
    if tuning.frozen:
        report.say(
            f"Frozen: {', '.join(sorted(tuning.frozen))} (parameters and BatchNorm statistics)."
        )
    schedule = optim.make_schedule(cfg, plan.steps_per_epoch, plan.total_steps)
    tx = optim.make_optimizer(cfg, schedule, tuning.labels)
    mixing = MixSpec.from_config(cfg)
    program = build_program(
        model,
        tx,
        seed=cfg.seed,
        input_shape=plan.input_shape,
        mesh=mesh,
        label_smoothing=cfg.label_smoothing,
        frozen_stats=tuning.frozen_stats,
        mixing=mixing if mixing.enabled else None,
        ema_decay=cfg.ema_decay,
        ema_warmup=cfg.ema_warmup,
        loss_scale=cfg.dtype == "float16",
        grad_accum_steps=cfg.grad_accum_steps,
    )
    return program, schedule


def evaluate(
    plan: RunPlan, program: Program, state: TrainState, *, ema: bool = False
) -> dict[str, float]:
    """Accuracy and mean loss over the whole eval split, every example exactly once (of the EMA
    of the weights with `ema=True`)."""
    step_fn = program.eval_ema if ema else program.eval
    sums = None
    for local in data.eval_batches(
        plan.dataset,
        global_batch=plan.eval_batch_size,
        image_size=plan.image_size,
        data_dir=plan.cfg.data_dir,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    ):
        out = step_fn(state, program.shard(local))
        sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    sums = jax.device_get(sums)
    count = int(sums["count"])
    if count != plan.dataset.num_eval:  # whatever the batch size and device count
        raise TrainingError(f"evaluated {count} examples, expected {plan.dataset.num_eval}")
    return {"accuracy": float(sums["correct"]) / count, "loss": float(sums["loss_sum"]) / count}


def _restore_newest_intact(
    plan: RunPlan, ckpt: rundir.Checkpointer, target: dict[str, Any], report: Reporter
) -> tuple[dict[str, Any], dict[str, Any], int] | None:
    """(tree, meta, step) of the newest latest-series checkpoint that verifies, None when there
    is none. A damaged one on the way is reported in one line and moved to checkpoints/damaged/
    (kept, never deleted); when every one is damaged the run stops (CheckpointDamagedError)."""
    damaged: list[rundir.CheckpointDamagedError] = []
    found = None
    for step in ckpt.candidate_steps():
        try:
            tgt = dict(target)
            # A float16 run saved before jaxcnn 0.3 has no loss scale: it resumes with a fresh one.
            fresh_scale = "loss_scale" in tgt and "loss_scale" not in ckpt.saved_keys(step)
            if fresh_scale:
                del tgt["loss_scale"]
            tree, meta = ckpt.restore(tgt, step)
        except rundir.CheckpointDamagedError as e:
            damaged.append(e)
            continue
        found = tree, meta, step
        break
    if damaged and found is None:
        steps = ", ".join(str(e.step) for e in damaged)
        raise rundir.CheckpointDamagedError(
            damaged[0].step,
            damaged[0].directory,
            f"{damaged[0].detail}; no checkpoint of this run is intact (steps {steps} tried, none "
            f"moved); restore {ckpt.root} from a copy, or move it away to train from scratch",
        )
    for e, where in zip(damaged, ckpt.set_aside(damaged), strict=True):
        report.say(f"{e}. Moved to {where}; falling back to step {found[2]}.")
    if found is not None:
        report.say(f"Resuming {plan.run} from step {found[2]}.")
        if fresh_scale:
            report.say(
                "Its checkpoint has no float16 loss scale (an older run): starting at 2**15."
            )
    return found


def restore_or_init(
    plan: RunPlan,
    program: Program,
    ckpt: rundir.Checkpointer,
    log: rundir.MetricsLog,
    source: dict[str, Any] | None,
    report: Reporter,
) -> tuple[TrainState, Progress, int]:
    """(state, progress, first step): the latest checkpoint's, else a fresh state with `source`'s
    weights merged in (`--init_from`)."""
    state = program.init()
    restored = _restore_newest_intact(plan, ckpt, state.as_checkpoint(), report)
    # Rows past the checkpoint (all of them, when there is none) were logged by a run that stopped
    # before saving again, or after a checkpoint found damaged: this run logs those steps anew.
    log.truncate_after(restored[2] if restored else 0)
    if restored:
        tree, meta, start = restored
        return state.from_checkpoint(tree), Progress.from_meta(meta), start
    if source is not None:
        merged, restore_report = loading.merge_variables(
            {"params": state.params, "batch_stats": state.batch_stats}, source
        )
        state = state.replace(
            params=program.replicate(merged["params"]),
            batch_stats=program.replicate(merged.get("batch_stats", {})),
        )
        if state.ema is not None:  # the average starts from the weights it fine-tunes
            # Buffers of its own: the train step donates the state, and one buffer cannot be
            # donated twice.
            state = state.replace(
                ema={
                    "params": program.replicate(merged["params"]),
                    "batch_stats": program.replicate(merged.get("batch_stats", {})),
                }
            )
        report.say(f"--init_from={plan.cfg.init_from}: {restore_report}")
    return state, Progress.fresh(plan.cfg), 0


@dataclasses.dataclass
class _Loop:
    """The pieces the step loop works with (one run)."""

    plan: RunPlan
    program: Program
    schedule: Any
    ckpt: rundir.Checkpointer
    log: rundir.MetricsLog
    report: Reporter

    def log_train(
        self,
        state: TrainState,
        rows: list[dict[str, Any]],
        step: int,
        dt: float,
        skipped: list[int],
        progress: Progress,
    ) -> None:
        # Means over the steps that were applied: a skipped step's loss is inf or nan.
        good = [m for m in rows if bool(m["finite"])] or rows
        loss = float(np.mean([m["loss"] for m in good]))
        acc = float(np.mean([m["accuracy"] for m in good]))
        rate = len(rows) * self.plan.cfg.batch_size / dt
        extra = {}
        if "loss_scale" in rows[-1]:
            extra["loss_scale"] = float(rows[-1]["loss_scale"])
        if skipped:
            progress.skipped_steps += len(skipped)
            extra["skipped"] = len(skipped)
            scale = f"; loss scale now {extra['loss_scale']:g}" if "loss_scale" in extra else ""
            steps = ", ".join(map(str, skipped[:5])) + (" ..." if len(skipped) > 5 else "")
            self.report.say(
                f"skipped {len(skipped)} step(s) with a non-finite loss or gradient ({steps}){scale}"
                f"; {progress.skipped_steps} skipped in all"
            )
        # The rate of the last update: the schedule times the plateau scale. The schedule counts
        # applied updates (a skipped step leaves the optimizer state, its count included, as it
        # was, as optax.apply_if_finite does), so it runs one step behind per skipped step.
        applied = step - progress.skipped_steps
        lr = float(self.schedule(applied - 1)) * float(optim.lr_scale(state.opt_state))
        self.log.write(step, "train", loss=loss, accuracy=acc, lr=lr, images_per_sec=rate, **extra)
        self.report.train_metrics(loss, acc, rate)

    def evaluate_all(self, state: TrainState) -> dict[str, float]:
        """The eval metrics of the weights and, when the run keeps one, of their EMA (`ema_`)."""
        result = evaluate(self.plan, self.program, state)
        if self.program.eval_ema is not None:
            ema = evaluate(self.plan, self.program, state, ema=True)
            result |= {f"ema_{k}": v for k, v in ema.items()}
        return result

    def eval_and_save(self, state: TrainState, progress: Progress, step: int) -> tuple:
        plan = self.plan
        result = self.evaluate_all(state)
        self.log.write(step, "eval", epoch=plan.epoch(step), **result)
        self.report.evaluated(step, plan.epoch(step), result)
        if plan.cfg.schedule == "plateau" and progress.plateau.update(result["accuracy"]):
            scale = progress.plateau.scale
            state = state.replace(opt_state=optim.with_lr_scale(state.opt_state, scale))
            self.report.say(f"validation accuracy plateaued: lr scale now {scale:g}")
        # The best checkpoint is the best of the trained weights (its EMA rides along).
        best = progress.record(result["accuracy"], step)
        self.save(state, progress, step, best=best)
        return state, result

    def complete_interrupted_save(self, state: TrainState, progress: Progress, start: int) -> None:
        """Finishes what a run killed during the saves of `start` left undone: the best save of
        an evaluation whose latest save committed (the resumed run would never make it: the meta
        it resumes from already counts that accuracy as the best), and the deletion of the
        checkpoints beyond `keep_checkpoints` (Orbax deletes only after a save, and a finished
        run resumed at its end saves nothing)."""
        best_now = self.ckpt.latest_step("best")
        if start and progress.best_step == start and (best_now is None or best_now < start):
            self.report.say(f"Saving step {start} as the best checkpoint (its save was cut short).")
            self.save(state, progress, start, best=True)
        self.ckpt.enforce_retention()

    def save(self, state: TrainState, progress: Progress, step: int, best: bool = False) -> None:
        # Every checkpoint names its classes and input statistics, so that it can be used alone.
        meta = progress.meta(step, self.plan.epoch(step)) | {"data": data_meta(self.plan)}
        self.ckpt.save(step, state.as_checkpoint(), meta, best=best)
        self.log.flush()  # the metrics a resume from this step keeps are durable now

    def run(self, state: TrainState, progress: Progress, start: int, should_stop) -> tuple:
        """Steps from `start` to the end or an interruption: (state, step, last eval, interrupted)."""
        plan, cfg = self.plan, self.plan.cfg
        batches = data.train_batches(
            plan.dataset,
            global_batch=cfg.batch_size,
            image_size=plan.image_size,
            seed=cfg.seed,
            start_step=start,
            data_dir=cfg.data_dir,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            augment=cfg.augment,
            policy=data.augment.Policy.from_config(cfg),
        )
        max_skipped = cfg.max_skipped_steps
        if max_skipped is None:
            max_skipped = default_max_skipped(cfg.dtype)
        profile = _Profiler(plan, self.report)
        self.report.start(plan.total_steps, start, f"{plan.model_info.name} on {plan.dataset.name}")
        step, pending, last_eval, interrupted, t0 = start, [], None, False, time.perf_counter()
        stop = _StopVote(self.program, should_stop)
        try:
            while step < plan.total_steps and not interrupted:
                profile.before(step + 1)
                state, metrics = self.program.train(state, self.program.shard(next(batches)))
                step += 1
                profile.after(step, state)
                pending.append(metrics)
                self.report.advance()
                interrupted = stop.decide(step)
                act = actions_at(step, plan, interrupted)
                if act.log:
                    rows, pending = jax.device_get(pending), []
                    progress.skip_streak, skipped = check_finite(
                        rows, step, progress.skip_streak, max_skipped
                    )
                    self.log_train(state, rows, step, time.perf_counter() - t0, skipped, progress)
                    t0 = time.perf_counter()
                if act.eval:
                    state, last_eval = self.eval_and_save(state, progress, step)
                    t0 = time.perf_counter()  # eval time is not training time
                elif act.save:
                    self.save(state, progress, step)
        finally:
            profile.close()
        return state, step, last_eval, interrupted


class _Profiler:
    """A `jax.profiler` trace of the steps `--config.profile_steps=FIRST,LAST` (on process 0),
    written under the run's `profile/` folder in TensorBoard's layout
    (`profile/plugins/profile/<time>/*.xplane.pb`): `tensorboard --logdir RUN/profile` with the
    tensorboard-plugin-profile package, or `xprof --logdir RUN/profile`, shows it."""

    def __init__(self, plan: RunPlan, report: Reporter):
        self.steps = parse_profile_steps(plan.cfg.profile_steps)
        self.dir = str(plan.run.path / "profile")
        self.report, self.active = report, False
        if jax.process_index() != 0:
            self.steps = None

    def before(self, step: int) -> None:
        if self.steps and step == self.steps[0] and not self.active:
            jax.profiler.start_trace(self.dir)
            self.active = True

    def after(self, step: int, state: TrainState) -> None:
        if self.active and step == self.steps[1]:
            jax.block_until_ready(
                state
            )  # the trace holds the steps' device work, not just dispatch
            self.close()
            self.report.say(f"profile of steps {self.steps[0]}-{self.steps[1]} in {self.dir}")

    def close(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False


class _StopVote:
    """Whether to stop after a step, decided the same way on every process.

    A signal (SIGTERM from a spot notice or a maintenance event, SIGINT) may reach only some hosts
    of a job. Each process therefore votes after every step through a tiny all-reduce on the
    devices, and reads the vote of the step before, which has finished by then: every process
    sees the same vote at the same step, so they all save that step and stop together, and no
    host waits in a collective for a peer that has left. Reading one step late keeps the host from
    waiting for the step it has just dispatched. A single process decides on its own flag at once.
    """

    def __init__(self, program: Program, should_stop: Callable[[int], bool] | None):
        self.program, self.should_stop = program, should_stop
        self.multi = jax.process_count() > 1
        self.pending: jax.Array | None = None

    def decide(self, step: int) -> bool:
        local = bool(self.should_stop and self.should_stop(step))
        if not self.multi:
            return local
        previous, self.pending = self.pending, self.program.any_process(local)
        return previous is not None and flag_value(previous)


def prepare_dataset_once(cfg: Any) -> None:
    """Prepares `cfg.dataset` on process 0 while the other processes of a job wait for it, so that
    N hosts never prepare one dataset at once (in a bucket there is no lock to take).

    Process 0 then tells the others whether it succeeded: when it could not, every process stops
    with the same one-line error instead of waiting for a peer that has left.
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    error = None
    if jax.process_index() == 0:
        try:
            data.ensure_prepared(cfg.dataset, cfg.data_dir)
        except Exception as e:  # noqa: BLE001 - whatever it is, the others must hear of it
            error = e
    failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
    if error is not None:
        raise error
    if int(failed):
        raise data.DatasetUnavailableError(
            f"process 0 could not prepare {cfg.dataset!r} (its output says why)"
        )


def train_and_evaluate(
    cfg: Any, workdir: rundir.PathLike, *, should_stop: Callable[[int], bool] | None = None
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
    plan = plan_run(cfg, workdir)  # no device before this line
    mesh = sharding.make_mesh()
    for size in (cfg.batch_size, plan.eval_batch_size):
        sharding.check_batch_size(size, mesh)
    per_device, k = cfg.batch_size // mesh.size, cfg.grad_accum_steps
    if per_device % k:
        raise ValueError(
            f"--batch_size {cfg.batch_size} over {mesh.size} device(s) is {per_device} per "
            f"device, which does not split into --config.grad_accum_steps={k} micro-batches; use "
            f"a multiple of {mesh.size * k}"
        )
    report = Reporter(enabled=jax.process_index() == 0)
    if plan.dataset.record is not None:
        for line in plan.dataset.record.summary():
            report.say(line)
    policy = data.augment.Policy.from_config(cfg)
    if policy is not None:
        report.say(f"Augmentation: {policy.describe()}")
    if recipe := recipe_summary(cfg):
        report.say(f"Recipe: {recipe}")
    program, schedule = build_run(plan, mesh, report)
    # Read --init_from before anything is written, so that a bad source leaves no run directory.
    source = loading.load_init(cfg.init_from, plan.model_info.name) if cfg.init_from else None
    ckpt = plan.run.checkpointer(cfg.keep_checkpoints)
    log = plan.run.metrics(enabled=report.enabled)
    try:
        try:
            state, progress, start = restore_or_init(plan, program, ckpt, log, source, report)
            if report.enabled:
                plan.run.write_config(plan.config_json)
                if plan.dataset.record is not None:
                    plan.run.write_dataset(plan.dataset.record.to_json())
            loop = _Loop(plan, program, schedule, ckpt, log, report)
            loop.complete_interrupted_save(state, progress, start)
            state, step, last_eval, interrupted = loop.run(state, progress, start, should_stop)
            if not interrupted and last_eval is None:  # a finished run resumed, or no final eval
                last_eval = loop.evaluate_all(state)
        finally:
            report.close()
            try:
                ckpt.wait()  # raises what an asynchronous save met (a full disk, say)
            finally:
                ckpt.close()
                log.close()
    except Exception as e:
        where = rundir.no_space_left(e)
        if where is None:
            raise
        raise DiskFullError(_disk_full_message(plan, where)) from e
    if interrupted:
        report.say(
            f"Interrupted at step {step}: checkpoint saved. Run again with the same "
            f"--workdir={workdir} to resume."
        )
        return RunResult(step, None, None, True, str(workdir))
    ema = ""
    if "ema_accuracy" in last_eval:
        ema = f"; EMA weights {last_eval['ema_accuracy']:.4f} (loss {last_eval['ema_loss']:.4f})"
    report.say(
        f"Final {plan.dataset.eval_split} accuracy of {cfg.arch} on {plan.dataset.name} after "
        f"{step} steps: {last_eval['accuracy']:.4f} (loss {last_eval['loss']:.4f}){ema}"
    )
    if progress.skipped_steps:
        report.say(f"{progress.skipped_steps} step(s) skipped for a non-finite loss or gradient.")
    return RunResult(
        step,
        last_eval["accuracy"],
        last_eval["loss"],
        False,
        str(workdir),
        last_eval.get("ema_accuracy"),
    )
