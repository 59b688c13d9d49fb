"""Pure train / eval steps: no I/O, no flags, no devices. `jaxcnn.trainer` jits them over a mesh.

Beside the plain step, `train_step` carries what today's recipes add (README "Training recipes"):
Mixup / CutMix on the batch (`jaxcnn.training.mixing`), an exponential moving average of the
weights, dynamic loss scaling for float16 (Flax's `DynamicScale`) and gradient accumulation over
micro-batches. Each is off unless asked for, and off leaves the step exactly as it was.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.dynamic_scale import DynamicScale

from jaxcnn.training import mixing as mixing_lib

# Stream of the Mixup / CutMix draws, folded into each step's key (the dropout stream is the key
# itself, so that runs without mixing draw exactly what they drew before mixing existed).
_MIX_STREAM = 0x6D6978


class TrainState(struct.PyTreeNode):
    """Everything a training step reads and writes; checkpointed whole (see `as_checkpoint`).

    Attributes:
        step: optimizer steps taken.
        params: model parameters.
        batch_stats: BatchNorm running statistics ({} for networks without BatchNorm).
        opt_state: Optax state (includes the plateau learning-rate scale).
        rng: raw uint32 PRNG key data for dropout / drop-path; folded with `step` at each step.
        ema: `{"params", "batch_stats"}`, their exponential moving average (None: no EMA).
        loss_scale: Flax `DynamicScale` of a float16 run (None: no loss scaling).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    ema: Any = None
    loss_scale: DynamicScale | None = None

    def as_checkpoint(self) -> dict[str, Any]:
        """The array part of the state, as a plain dict for Orbax.

        A run without EMA or loss scaling saves exactly the keys it saved before they existed
        (step, params, batch_stats, opt_state, rng), so its checkpoints keep their layout."""
        tree = {
            "step": self.step,
            "params": self.params,
            "batch_stats": self.batch_stats,
            "opt_state": self.opt_state,
            "rng": self.rng,
        }
        if self.ema is not None:
            tree["ema"] = self.ema
        if self.loss_scale is not None:
            tree["loss_scale"] = {
                "scale": self.loss_scale.scale,
                "fin_steps": self.loss_scale.fin_steps,
            }
        return tree

    def from_checkpoint(self, tree: dict[str, Any]) -> "TrainState":
        """This state with its arrays replaced by a restored `as_checkpoint()` dict."""
        tree = dict(tree)
        scale = tree.pop("loss_scale", None)
        state = self.replace(**tree)
        if scale is not None:
            state = state.replace(loss_scale=self.loss_scale.replace(**scale))
        return state

    def variables(self, ema: bool = False) -> dict[str, Any]:
        """`{"params", "batch_stats"}` of the network: the trained ones, or their EMA."""
        if ema:
            if self.ema is None:
                raise ValueError("this state keeps no EMA (--config.ema_decay is not set)")
            return self.ema
        return {"params": self.params, "batch_stats": self.batch_stats}


def init_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    seed: int,
    input_shape: tuple[int, ...],
    *,
    ema: bool = False,
    loss_scale: bool = False,
) -> TrainState:
    """Initialises parameters, BatchNorm statistics and optimizer state (jit this).

    Args:
        model: a linen module with `__call__(x, *, train)`.
        tx: the optimizer.
        seed: PRNG seed; parameters and dropout streams derive from it.
        input_shape: (N, H, W, C) of one batch.
        ema: keep an EMA of the weights (it starts as a copy of them).
        loss_scale: keep a dynamic loss scale (float16 training), starting at 2**15 (Flax's and
            PyTorch GradScaler's default is 2**16; the dynamic rule finds the level either way,
            halving at each overflow).
    """
    key = jax.random.PRNGKey(seed)
    init_key, dropout_key = jax.random.split(key)
    variables = model.init(init_key, jnp.zeros(input_shape, jnp.float32), train=False)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        rng=dropout_key,
        apply_fn=model.apply,
        tx=tx,
        ema={"params": params, "batch_stats": batch_stats} if ema else None,
        loss_scale=(
            DynamicScale(
                scale=jnp.asarray(2.0**15, jnp.float32), fin_steps=jnp.zeros((), jnp.int32)
            )
            if loss_scale
            else None
        ),
    )


def ema_decay_at(step: jax.Array, decay: float, warmup: bool = True) -> jax.Array:
    """The EMA decay used after `step` updates (1 = the first), as timm's ModelEmaV3.

    The first update copies the weights (decay 0). With warm-up the decay then grows as
    1 - (1 + n)^(-2/3), n = step - 1 (timm's defaults gamma=1, power=2/3), never above `decay`:
    an average over the whole of a short run would be dominated by the random initialisation.
    """
    n = jnp.maximum(jnp.asarray(step, jnp.float32) - 1.0, 0.0)
    d = jnp.minimum(1.0 - (1.0 + n) ** (-2.0 / 3.0), decay) if warmup else jnp.float32(decay)
    return jnp.where(n <= 0, 0.0, d)


def update_ema(ema: Any, variables: Any, decay: jax.Array) -> Any:
    """decay * ema + (1 - decay) * variables, leaf by leaf (params and BatchNorm statistics).

    `optax.ema` is not this: it averages the updates (a momentum), not the weights."""
    return optax.incremental_update(variables, ema, 1.0 - decay)


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy with optional label smoothing; computed in float32."""
    logits = logits.astype(jnp.float32)
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def _example_losses(logits: jax.Array, y: dict[str, jax.Array], label_smoothing: float):
    """Per-example loss against hard labels (`label`) or soft Mixup / CutMix targets (`targets`,
    which already include the label smoothing)."""
    if "targets" in y:
        return optax.softmax_cross_entropy(logits.astype(jnp.float32), y["targets"])
    return cross_entropy(logits, y["label"], label_smoothing)


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    label_smoothing: float = 0.0,
    aux_weight: float = 0.0,
    frozen_stats: Any = None,
    mixing: mixing_lib.MixSpec | None = None,
    num_classes: int | None = None,
    ema_decay: float | None = None,
    ema_warmup: bool = True,
    grad_accum_steps: int = 1,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on a (global) batch.

    A step whose loss or gradient is not finite is skipped: parameters, BatchNorm statistics,
    optimizer state and EMA stay as they were and `finite=False` is reported, so a diverged update
    never reaches the parameters nor a checkpoint. The step counter still advances (the data
    moves on) and a float16 run's loss scale is halved. How many skips in a row a run tolerates
    is the loop's decision (`--config.max_skipped_steps`).

    Args:
        state: the train state.
        batch: `image` (N, H, W, C) float32, `label` (N,) int32.
        label_smoothing: epsilon of label smoothing.
        aux_weight: weight of the auxiliary classifiers' losses for networks that have them
            (GoogLeNet, Inception-v3: in train mode they return `(logits, (aux1, ...))`); the
            loss is CE(logits) + aux_weight * sum_i CE(aux_i), as in Szegedy et al. 2014.
        frozen_stats: a pytree like `batch_stats` of Python bools: True keeps that running
            statistic unchanged (the BatchNorm layers of a frozen backbone).
        mixing: Mixup / CutMix of the batch (timm's batch mode); None or disabled: none. The
            loss is then against soft targets (label smoothing included in them) and accuracy
            against each example's dominant label.
        num_classes: classes of the network's output (needed by `mixing`).
        ema_decay: keep `state.ema` as an EMA of the weights with this decay (None: no EMA).
        ema_warmup: timm's warm-up of the EMA decay (`ema_decay_at`).
        grad_accum_steps: split the batch into this many micro-batches, run them one after
            another and average their gradients before the single update: the gradient of the
            whole batch in 1/k of the activation memory. BatchNorm normalises each micro-batch
            with its own statistics and updates its running averages once per micro-batch, as
            PyTorch does with accumulation; networks without BatchNorm get exactly the gradient
            of the whole batch.

    Returns:
        (new state, metrics): `loss` (mean), `accuracy` (mean), `finite` (bool: the update was
        applied), `input_finite` (bool: the batch's images held no NaN / Inf), and for a float16
        run `loss_scale`.
    """
    dropout_key = jax.random.fold_in(state.rng, state.step)
    images, y = batch["image"], {"label": batch["label"]}
    accuracy_labels = batch["label"]
    if mixing is not None and mixing.enabled:
        if num_classes is None:
            raise ValueError("mixing needs num_classes")
        key = jax.random.fold_in(dropout_key, _MIX_STREAM)
        images, targets, lam = mixing_lib.mix_batch(
            key, images, batch["label"], num_classes, mixing
        )
        y = {"targets": targets}
        accuracy_labels = mixing_lib.dominant_labels(batch["label"], lam)

    def loss_fn(params, batch_stats, images, y, key):
        variables = {"params": params, "batch_stats": batch_stats}
        out, updates = state.apply_fn(
            variables, images, train=True, mutable=["batch_stats"], rngs={"dropout": key}
        )
        logits, aux = out if isinstance(out, tuple) else (out, ())
        loss = _example_losses(logits, y, label_smoothing).mean()
        for aux_logits in aux:
            loss += aux_weight * _example_losses(aux_logits, y, label_smoothing).mean()
        return loss, (logits, updates.get("batch_stats", {}))

    def grads_of(batch_stats, images, y, key):
        """(loss, logits, new batch_stats, float32 grads, the loss scale after this step)."""
        if state.loss_scale is None:
            grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
            (loss, (logits, stats)), grads = grad_fn(state.params, batch_stats, images, y, key)
            return loss, logits, stats, grads, None
        # Flax's DynamicScale multiplies the loss by the scale, divides the gradients by it
        # (in float32) and halves / grows the scale after a non-finite / a run of finite ones.
        grad_fn = state.loss_scale.value_and_grad(loss_fn, has_aux=True)
        scale, _, (loss, (logits, stats)), grads = grad_fn(
            state.params, batch_stats, images, y, key
        )
        return loss, logits, stats, grads, scale

    if grad_accum_steps == 1:
        loss, logits, batch_stats, grads, new_scale = grads_of(
            state.batch_stats, images, y, dropout_key
        )
    else:
        loss, logits, batch_stats, grads, new_scale = _accumulate(
            grads_of, state, images, y, dropout_key, grad_accum_steps
        )
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
    ema = state.ema
    if ema_decay is not None:
        decay = ema_decay_at(state.step + 1, ema_decay, ema_warmup)
        ema = update_ema(state.ema, {"params": params, "batch_stats": batch_stats}, decay)
    new = state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state, ema=ema)
    kept = ("params", "batch_stats", "opt_state", "ema")
    new = new.replace(
        **{
            k: jax.tree.map(
                lambda a, b: jnp.where(finite, a, b), getattr(new, k), getattr(state, k)
            )
            for k in kept
        },
        step=state.step + 1,
    )
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == accuracy_labels),
        "finite": finite,
        # Whether the batch itself was finite, so that a non-finite step can say where the NaN
        # came from (the data, or the training); one reduction over the input.
        "input_finite": jnp.all(jnp.isfinite(batch["image"])),
    }
    if new_scale is not None:
        new = new.replace(loss_scale=new_scale)
        metrics["loss_scale"] = new_scale.scale
    return new, metrics


def _accumulate(grads_of, state, images, y, key, k):
    """`grads_of` over k micro-batches in sequence (`lax.scan`: one micro-batch's activations live
    at a time), BatchNorm statistics threaded through; the mean loss and gradient, the logits of
    the whole batch, and the loss scale the whole step leaves (halved if any micro-batch
    overflowed)."""
    n = images.shape[0]
    if n % k:
        raise ValueError(f"batch of {n} does not split into {k} micro-batches")

    def split(x):
        # Micro-batch i is examples i, i + k, i + 2k, ...: with the batch sharded over devices
        # along axis 0, every device then keeps its own share of every micro-batch (a contiguous
        # (k, n/k) split would put each micro-batch on a few devices and move data).
        return x.reshape(n // k, k, *x.shape[1:]).swapaxes(0, 1)

    def body(carry, xs):
        stats, grad_sum, loss_sum, scale_out, all_finite = carry
        i, images_i, y_i = xs
        loss, logits, stats, grads, scale = grads_of(
            stats, images_i, y_i, jax.random.fold_in(key, i)
        )
        grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
        if scale is not None:
            # Each micro-batch's DynamicScale result is the step's own while all so far were
            # finite; the first overflow's (the halved scale) is kept from then on.
            finite = jnp.isfinite(optax.tree.norm(grads))
            scale_out = jax.tree.map(lambda a, b: jnp.where(all_finite, a, b), scale, scale_out)
            all_finite &= finite
        return (stats, grad_sum, loss_sum + loss, scale_out, all_finite), logits

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
    init = (state.batch_stats, zeros, jnp.float32(0), state.loss_scale, jnp.bool_(True))
    xs = (jnp.arange(k), split(images), jax.tree.map(split, y))
    (stats, grad_sum, loss_sum, scale, _), logits = jax.lax.scan(body, init, xs)
    grads = jax.tree.map(lambda g, p: (g / k).astype(p.dtype), grad_sum, state.params)
    return loss_sum / k, logits.swapaxes(0, 1).reshape(n, -1), stats, grads, scale


def eval_step(
    state: TrainState, batch: dict[str, jax.Array], *, ema: bool = False
) -> dict[str, jax.Array]:
    """Masked sums over an eval batch (padding examples have mask 0).

    Args:
        state: the train state.
        batch: `image`, `label`, `mask`.
        ema: evaluate the EMA of the weights instead of the weights.

    Returns:
        `loss_sum`, `correct`, `count`: sums over the real examples of the batch.
    """
    variables = state.variables(ema)
    logits = state.apply_fn(variables, batch["image"], train=False)
    mask = batch["mask"]
    loss = cross_entropy(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(loss * mask),
        "correct": jnp.sum(correct * mask),
        "count": jnp.sum(mask),
    }
