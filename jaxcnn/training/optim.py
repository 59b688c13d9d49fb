"""Optax optimizers, learning-rate schedules, the weight-decay mask and reduce-on-plateau.

Every optimizer ends in an injected `scale` whose `step_size` is the plateau factor: dividing the
learning rate by 10 on a plateau is a host-side change of that one number, which lives in the
optimizer state and is therefore checkpointed and resumed with it.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import optax

OPTIMIZERS = ("sgd", "adamw", "rmsprop", "lamb")
SCHEDULES = ("constant", "step", "multistep", "cosine", "exponential", "plateau")


def make_schedule(cfg: Any, steps_per_epoch: int, total_steps: int) -> Callable[[Any], Any]:
    """The learning rate as a function of the step.

    Reads `cfg.lr`, `cfg.schedule`, `cfg.warmup_epochs`, `cfg.decay_epochs`, `cfg.milestones`,
    `cfg.gamma`. Epoch-based settings are converted with `steps_per_epoch`; a linear warmup from 0
    precedes any schedule.
    """
    lr, kind = float(cfg.lr), cfg.schedule
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; valid: {', '.join(SCHEDULES)}")
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    rest = max(1, total_steps - warmup)
    if kind in (
        "constant",
        "plateau",
    ):  # plateau: constant here, divided on the host (PlateauState)
        main = optax.constant_schedule(lr)
    elif kind == "step":
        main = optax.exponential_decay(
            lr,
            transition_steps=int(cfg.decay_epochs * steps_per_epoch),
            decay_rate=cfg.gamma,
            staircase=True,
        )
    elif kind == "multistep":
        main = optax.piecewise_constant_schedule(
            lr, {int(m * steps_per_epoch) - warmup: cfg.gamma for m in cfg.milestones}
        )
    elif kind == "exponential":  # multiply by gamma every epoch, smoothly
        main = optax.exponential_decay(lr, transition_steps=steps_per_epoch, decay_rate=cfg.gamma)
    else:  # cosine to zero over the remaining steps
        main = optax.cosine_decay_schedule(lr, decay_steps=rest)
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def decay_mask(params: Any) -> Any:
    """True for the parameters that get weight decay: kernels, not BatchNorm scales nor biases."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(
    cfg: Any, schedule: Callable[[Any], Any], labels: Any = None
) -> optax.GradientTransformation:
    """SGD (momentum / Nesterov), AdamW, RMSprop or LAMB with weight decay, then the plateau scale.

    Reads `cfg.optimizer`, `cfg.momentum`, `cfg.nesterov`, `cfg.weight_decay`,
    `cfg.wd_exclude_bn_bias`, `cfg.backbone_lr_mult`. SGD and RMSprop add L2 decay to the gradient
    (the ResNet paper's "weight decay of 0.0001"); AdamW decouples it (Loshchilov & Hutter 2019);
    LAMB (You et al. 2019; timm's "ResNet strikes back" A1 / A2 recipes) is optax's, decoupled too.

    Args:
        cfg: the configuration.
        schedule: the learning-rate schedule.
        labels: for fine-tuning, a pytree like the parameters with `train`, `backbone` (learning
            rate times `cfg.backbone_lr_mult`) or `frozen` (no update, no decay, no momentum) per
            leaf (`jaxcnn.transfer.param_labels`); None trains everything alike.
    """
    mask = decay_mask if cfg.wd_exclude_bn_bias else None
    wd = float(cfg.weight_decay)
    if cfg.optimizer == "sgd":
        tx = optax.chain(
            optax.add_decayed_weights(wd, mask),
            optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov),
        )
    elif cfg.optimizer == "adamw":
        tx = optax.adamw(schedule, weight_decay=wd, mask=mask)
    elif cfg.optimizer == "rmsprop":
        # TF-style RMSprop as used by the Inception / MobileNet / EfficientNet recipes.
        tx = optax.chain(
            optax.add_decayed_weights(wd, mask),
            optax.rmsprop(schedule, decay=0.9, eps=1e-3, momentum=cfg.momentum or None),
        )
    elif cfg.optimizer == "lamb":
        tx = optax.lamb(schedule, weight_decay=wd, mask=mask)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if labels is not None:
        mult = float(cfg.get("backbone_lr_mult", 1.0))
        tx = optax.multi_transform(
            {
                "train": tx,
                # Scaling the update scales the learning rate for SGD, AdamW and RMSprop alike.
                "backbone": optax.chain(tx, optax.scale(mult)),
                "frozen": optax.set_to_zero(),
            },
            labels,
        )
    return optax.chain(tx, optax.inject_hyperparams(optax.scale)(step_size=1.0))


def lr_scale(opt_state: Any) -> Any:
    """The plateau factor inside an optimizer state made by `make_optimizer`."""
    return opt_state[-1].hyperparams["step_size"]


def with_lr_scale(opt_state: Any, scale: float) -> Any:
    """`opt_state` with the plateau factor replaced (same dtype and sharding)."""
    inject = opt_state[-1]
    old = inject.hyperparams["step_size"]
    new = jax.device_put(jax.numpy.asarray(scale, old.dtype), old.sharding)
    hyper = dict(inject.hyperparams, step_size=new)
    return (*opt_state[:-1], inject._replace(hyperparams=hyper))


@dataclasses.dataclass
class PlateauState:
    """Reduce-on-plateau on a validation metric that should go up (accuracy).

    After `patience` evaluations without an improvement of more than `threshold` (relative), the
    learning-rate scale is multiplied by `factor`, never below `min_scale`.
    """

    factor: float = 0.1
    patience: int = 5
    threshold: float = 1e-3
    min_scale: float = 1e-4
    best: float = float("-inf")
    num_bad: int = 0
    scale: float = 1.0

    def update(self, metric: float) -> bool:
        """Records one evaluation; returns True when the scale was just reduced."""
        first = self.best == float("-inf")
        if first or metric > self.best + abs(self.best) * self.threshold:
            self.best, self.num_bad = metric, 0
            return False
        self.num_bad += 1
        if self.num_bad > self.patience and self.scale > self.min_scale:
            self.scale = max(self.scale * self.factor, self.min_scale)
            self.num_bad = 0
            return True
        return False
