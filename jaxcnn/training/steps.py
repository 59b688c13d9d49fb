"""Pure train / eval steps: no I/O, no flags, no devices. `jaxcnn.trainer` jits them over a mesh."""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """Everything a training step reads and writes; checkpointed whole (see `as_checkpoint`).

    Attributes:
        step: optimizer steps taken.
        params: model parameters.
        batch_stats: BatchNorm running statistics ({} for networks without BatchNorm).
        opt_state: Optax state (includes the plateau learning-rate scale).
        rng: raw uint32 PRNG key data for dropout / drop-path; folded with `step` at each step.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    def as_checkpoint(self) -> dict[str, Any]:
        """The array part of the state, as a plain dict for Orbax."""
        return {
            "step": self.step,
            "params": self.params,
            "batch_stats": self.batch_stats,
            "opt_state": self.opt_state,
            "rng": self.rng,
        }

    def from_checkpoint(self, tree: dict[str, Any]) -> "TrainState":
        """This state with its arrays replaced by a restored `as_checkpoint()` dict."""
        return self.replace(**tree)


def init_train_state(
    model: nn.Module, tx: optax.GradientTransformation, seed: int, input_shape: tuple[int, ...]
) -> TrainState:
    """Initialises parameters, BatchNorm statistics and optimizer state (jit this).

    Args:
        model: a linen module with `__call__(x, *, train)`.
        tx: the optimizer.
        seed: PRNG seed; parameters and dropout streams derive from it.
        input_shape: (N, H, W, C) of one batch.
    """
    key = jax.random.PRNGKey(seed)
    init_key, dropout_key = jax.random.split(key)
    variables = model.init(init_key, jnp.zeros(input_shape, jnp.float32), train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=dropout_key,
        apply_fn=model.apply,
        tx=tx,
    )


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy with optional label smoothing; computed in float32."""
    logits = logits.astype(jnp.float32)
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    label_smoothing: float = 0.0,
    aux_weight: float = 0.0,
    frozen_stats: Any = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on a (global) batch.

    A step whose loss or gradient is not finite leaves the state unchanged and reports
    `finite=False`, so a diverged update never reaches the parameters nor a checkpoint.

    Args:
        state: the train state.
        batch: `image` (N, H, W, C) float32, `label` (N,) int32.
        label_smoothing: epsilon of label smoothing.
        aux_weight: weight of the auxiliary classifiers' losses for networks that have them
            (GoogLeNet, Inception-v3: in train mode they return `(logits, (aux1, ...))`); the
            loss is CE(logits) + aux_weight * sum_i CE(aux_i), as in Szegedy et al. 2014.
        frozen_stats: a pytree like `batch_stats` of Python bools: True keeps that running
            statistic unchanged (the BatchNorm layers of a frozen backbone).

    Returns:
        (new state, metrics): `loss` (mean), `accuracy` (mean), `finite` (bool).
    """
    dropout_key = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        out, updates = state.apply_fn(
            variables,
            batch["image"],
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_key},
        )
        logits, aux = out if isinstance(out, tuple) else (out, ())
        loss = cross_entropy(logits, batch["label"], label_smoothing).mean()
        for aux_logits in aux:
            loss += aux_weight * cross_entropy(aux_logits, batch["label"], label_smoothing).mean()
        return loss, (logits, updates.get("batch_stats", {}))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if frozen_stats is not None:
        batch_stats = jax.tree.map(
            lambda keep, old, new: old if keep else new,
            frozen_stats,
            state.batch_stats,
            batch_stats,
        )
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
    new = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return new, {"loss": loss, "accuracy": accuracy, "finite": finite}


def eval_step(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Masked sums over an eval batch (padding examples have mask 0).

    Returns:
        `loss_sum`, `correct`, `count`: sums over the real examples of the batch.
    """
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits = state.apply_fn(variables, batch["image"], train=False)
    mask = batch["mask"]
    loss = cross_entropy(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(loss * mask),
        "correct": jnp.sum(correct * mask),
        "count": jnp.sum(mask),
    }
