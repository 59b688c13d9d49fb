"""The compiled program of a run: initialisation, train step and eval step, jitted over a mesh.

`build_program` is the one place where the pure steps of `jaxcnn.training.steps` meet devices: the
batch is sharded over the mesh's `data` axis, the train state replicated (and donated to the train
step). The trainer, the benchmark, the cost analysis and the experiments all build their steps here,
so that what they measure is what training runs.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh

from jaxcnn.training import sharding
from jaxcnn.training.steps import TrainState, eval_step, init_train_state, train_step


@dataclasses.dataclass(frozen=True)
class Program:
    """The jitted functions of one network, optimizer and mesh.

    Attributes:
        mesh: the device mesh (axis `data`).
        init: `() -> TrainState`, initialised and replicated over the mesh.
        train: `(state, batch) -> (state, metrics)`; `state` is donated.
        eval: `(state, batch) -> {"loss_sum", "correct", "count"}` over the batch's real examples.
        eval_ema: the same for the EMA of the weights (None when the state keeps no EMA).
    """

    mesh: Mesh
    init: Callable[[], TrainState]
    train: Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]
    eval: Callable[[TrainState, dict[str, jax.Array]], dict[str, jax.Array]]
    eval_ema: Callable[[TrainState, dict[str, jax.Array]], dict[str, jax.Array]] | None = None

    def any_process(self, flag: bool) -> jax.Array:
        """Whether `flag` is set on any process: a replicated scalar, computed on the devices
        without waiting (read it later with `flag_value`). Every process must call it at the same
        point, as with any collective."""
        local = len(self.mesh.local_devices)
        rows = np.full((local,), flag, np.int32)
        return _any(jax.make_array_from_process_local_data(sharding.batch_sharded(self.mesh), rows))

    def shard(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's rows of a batch as global arrays sharded over the mesh."""
        return sharding.global_batch(local, self.mesh)

    def replicate(self, tree: Any) -> Any:
        """A host pytree placed whole on every device of the mesh."""
        return sharding.replicate(tree, self.mesh)


@jax.jit
def _any(rows: jax.Array) -> jax.Array:
    return rows.max() > 0


def flag_value(flag: jax.Array) -> bool:
    """The value of a replicated scalar from `Program.any_process` (this host's copy)."""
    return bool(np.asarray(flag.addressable_data(0)))


def build_program(
    model: nn.Module,
    tx: optax.GradientTransformation,
    *,
    seed: int,
    input_shape: tuple[int, ...],
    mesh: Mesh | None = None,
    label_smoothing: float = 0.0,
    aux_weight: float | None = None,
    frozen_stats: Any = None,
    mixing: Any = None,
    ema_decay: float | None = None,
    ema_warmup: bool = True,
    loss_scale: bool = False,
    grad_accum_steps: int = 1,
) -> Program:
    """Jits the steps of `model` trained with `tx` over `mesh` (nothing is compiled yet).

    Args:
        model: a linen classifier with `__call__(x, *, train)`.
        tx: the optimizer.
        seed: seed of the parameters and of the dropout stream.
        input_shape: (N, H, W, C) of the initialisation input (N is irrelevant).
        mesh: the mesh; default every device of every process.
        label_smoothing: of the training loss.
        aux_weight: weight of auxiliary classifiers' losses; default the network's own
            (`variant.aux_weight`: GoogLeNet 0.3, Inception-v3 0.4; 0 for the others).
        frozen_stats: BatchNorm statistics the train step keeps (`FineTuning.frozen_stats`).
        mixing: Mixup / CutMix of each batch (`jaxcnn.training.mixing.MixSpec`).
        ema_decay: keep an EMA of the weights with this decay (None: none).
        ema_warmup: timm's warm-up of the EMA decay.
        loss_scale: dynamic loss scaling (float16).
        grad_accum_steps: micro-batches per step.
    """
    mesh = sharding.make_mesh() if mesh is None else mesh
    rep, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    if aux_weight is None:
        aux_weight = getattr(getattr(model, "variant", None), "aux_weight", 0.0)
    step = functools.partial(
        train_step,
        label_smoothing=label_smoothing,
        aux_weight=aux_weight,
        frozen_stats=frozen_stats,
        mixing=mixing,
        num_classes=getattr(model, "num_classes", None),
        ema_decay=ema_decay,
        ema_warmup=ema_warmup,
        grad_accum_steps=grad_accum_steps,
    )
    init = functools.partial(
        init_train_state,
        model,
        tx,
        seed,
        input_shape,
        ema=ema_decay is not None,
        loss_scale=loss_scale,
    )
    ema_eval = functools.partial(eval_step, ema=True)
    return Program(
        mesh=mesh,
        init=jax.jit(init, out_shardings=rep),
        train=jax.jit(step, in_shardings=(rep, split), out_shardings=(rep, rep), donate_argnums=0),
        eval=jax.jit(eval_step, in_shardings=(rep, split), out_shardings=rep),
        eval_ema=(
            jax.jit(ema_eval, in_shardings=(rep, split), out_shardings=rep)
            if ema_decay is not None
            else None
        ),
    )
