"""The device mesh and the shardings of the data-parallel step.

One axis, `data`, over every device of every process. Batches are split along it; parameters,
BatchNorm statistics and optimizer state are replicated. Under `jax.jit` the BatchNorm statistics of
a sharded batch are computed over the whole global batch (synchronised BatchNorm) with no axis names
in model code.
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Split along the leading (batch) axis over `data`."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each process's share of a batch into global arrays sharded over `data`.

    Args:
        local: this process's numpy arrays, leading axis = global batch / process count.
        mesh: the training mesh.
    """
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    """Raises ValueError unless the global batch splits evenly over devices and processes."""
    n, p = mesh.size, jax.process_count()
    if global_batch_size % n or global_batch_size % p:
        raise ValueError(
            f"batch size {global_batch_size} is not divisible by the {n} devices of the mesh "
            f"({p} process(es)); use a multiple of {n}"
        )


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a host pytree on every device of `mesh`."""
    return jax.device_put(tree, replicated(mesh))
