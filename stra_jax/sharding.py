"""The device mesh and the shardings built from it (the one place that does).

Used by training and evaluation alike; imports nothing else of stra_jax.

A 1-D ``('data',)`` mesh over every device of every host; batches are sharded
along it, parameters and BatchNorm statistics replicated. Under ``jax.jit``
the BatchNorm mean over a sharded batch is a global mean (XLA inserts the
all-reduce), so statistics are global across devices and hosts.
"""
from __future__ import annotations

import collections
from typing import Any, Iterable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = "data"


def make_mesh(devices: list | None = None) -> Mesh:
    """A ('data',) mesh over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over 'data'."""
    return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def host_batch_to_global(batch: Any, mesh: Mesh) -> Any:
    """Host-local numpy batch (this process's slice) -> global jax.Array sharded
    over 'data'. With one process this is a sharded device_put."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def check_batch_divisible(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
    devices = mesh.devices.size
    if batch_size % devices:
        raise ValueError(f"{what}={batch_size} is not divisible by the {devices} devices of the mesh")


def prefetch_to_mesh(batches: Iterable[Any], mesh: Mesh, size: int = 2) -> Iterator[Any]:
    """Yield global arrays from host batches, ``size`` batches ahead.

    The host-to-device copy of the next batches is issued while the current
    step runs (dispatch is asynchronous), so the accelerator does not wait on
    the transfer. Reading ahead does not change what a resumed run sees: the
    input order depends only on (seed, epoch, step).
    """
    queue: collections.deque = collections.deque()
    for batch in batches:
        queue.append(host_batch_to_global(batch, mesh))
        if len(queue) > size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()
