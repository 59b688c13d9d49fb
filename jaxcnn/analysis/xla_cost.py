"""XLA's own view of a network's cost: FLOPs and memory of the compiled programs.

A cross-check of `jaxcnn.analysis.cost`'s traced counts: XLA counts all its operations (and skips
kernel taps that fall on zero padding), and its memory analysis gives the temporaries of the
compiled forward pass and of the training step that training itself compiles.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def xla_forward_cost(model: Any, image_size: int, batch: int = 1, channels: int = 3) -> dict:
    """XLA's cost and memory analysis of the compiled eval forward pass (compiles it).

    Returns:
        `flops` (XLA's count, all ops), `temp_bytes`, `argument_bytes`, `output_bytes`.
    """
    x = jax.ShapeDtypeStruct((batch, image_size, image_size, channels), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
    return _analysis(compiled)


def xla_train_step_memory(
    model: Any, image_size: int, batch: int, channels: int = 3, optimizer: Callable | None = None
) -> dict:
    """XLA's memory analysis of the training step that training compiles (SGD with momentum unless
    given), on one device."""
    import optax

    from jaxcnn.training import sharding
    from jaxcnn.training.program import build_program

    tx = optimizer or optax.sgd(0.1, momentum=0.9)
    shape = (batch, image_size, image_size, channels)
    mesh = sharding.make_mesh(jax.devices()[:1])
    program = build_program(model, tx, seed=0, input_shape=shape, mesh=mesh)
    batch_spec = {
        "image": jax.ShapeDtypeStruct(shape, jnp.float32),
        "label": jax.ShapeDtypeStruct((batch,), jnp.int32),
    }
    compiled = program.train.lower(jax.eval_shape(program.init), batch_spec).compile()
    return _analysis(compiled)


def _analysis(compiled) -> dict:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    mem = compiled.memory_analysis()
    out = {"flops": float((cost or {}).get("flops", np.nan))}
    for k in ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes"):
        out[k.replace("_size_in", "")] = int(getattr(mem, k, 0)) if mem is not None else 0
    return out
