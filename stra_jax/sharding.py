"""The device mesh and the shardings built from it (the one place that does).

Used by training and evaluation alike; imports nothing else of stra_jax.

A 1-D ``('data',)`` mesh over every device of every host; batches are sharded
along it, parameters and BatchNorm statistics replicated, except where a task
asks for a leaf to be split (``state_shardings``: e.g. a face classifier of
millions of identities split along its class axis). Under ``jax.jit``
the BatchNorm mean over a sharded batch is a global mean (XLA inserts the
all-reduce), so statistics are global across devices and hosts.
"""
from __future__ import annotations

import queue
import re
import threading
from typing import Any, Iterable, Iterator, Sequence

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


# (regular expression on a leaf's path, partition spec of that leaf), e.g.
# (r"\['classifier'\]\['kernel'\]$", (None, "data")): the first match wins.
ShardingRules = Sequence[tuple[str, tuple]]


def state_shardings(tree: Any, mesh: Mesh, rules: ShardingRules = ()) -> Any:
    """A pytree of ``NamedSharding`` like ``tree`` (arrays or shape structs):
    the leaves whose path (``jax.tree_util.keystr``) matches a rule's pattern
    are split as its spec says, every other leaf is replicated. Rules apply to
    optimiser states too (their paths end with the parameter's path), so a
    split parameter's momentum is split the same way."""
    compiled = [(re.compile(pattern), P(*spec)) for pattern, spec in rules]

    def sharding(path, leaf) -> NamedSharding:
        key = jax.tree_util.keystr(path)
        for pattern, spec in compiled:
            if pattern.search(key) and len(spec) <= len(getattr(leaf, "shape", ())):
                return NamedSharding(mesh, spec)
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(sharding, tree)


def gather_to_host(tree: Any) -> Any:
    """NumPy copies of a pytree of global arrays, on every process: a
    replicated array is read from this host's copy, a split one is gathered
    (a collective: every process must call this)."""
    from jax.experimental import multihost_utils

    def fetch(x):
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        if x.is_fully_addressable:
            return np.asarray(x)
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(fetch, tree)


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

    A background thread pulls the host batches and issues their copies to the
    devices, so the next batches are read, decoded and transferred while the
    current step runs, and the loop never waits on the host pipeline unless it
    is slower than the step (on an accelerator the whole input cost hides
    behind the step). An error raised by ``batches`` is re-raised here, in the
    consumer; closing the generator stops the thread. Reading ahead does not
    change what a resumed run sees: the input order depends only on (seed,
    epoch, step).
    """
    if size < 1:
        raise ValueError(f"prefetch size {size}: expected >= 1 batches ahead")
    done = object()
    ready: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(("batch", host_batch_to_global(batch, mesh))):
                    return
            put(("end", done))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(("error", err))

    thread = threading.Thread(target=produce, name="prefetch_to_mesh", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = ready.get()
            if kind == "batch":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        thread.join(timeout=10)