"""Host-side views of global arrays for the multi-controller host loop.

Under `jax.distributed` every process runs the same program but holds only the shards of its own devices.
The host loop reads and writes the rows it holds through these helpers; the few decisions that must agree
across processes (is anything still running, how wide is the next extend) go through `allgather`. With one
process each helper is the plain single-process operation, so there is one code path."""

from __future__ import annotations

import pickle
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec, Sharding


def _row_holders(shape: tuple[int, ...], sharding: Sharding) -> list[set[int]]:
    """For each index along axis 0, the processes whose devices hold it."""
    holders: list[set[int]] = [set() for _ in range(shape[0])]
    for device, index in sharding.devices_indices_map(tuple(shape)).items():
        for r in range(*index[0].indices(shape[0])):
            holders[r].add(device.process_index)
    return holders


def local_rows(shape: tuple[int, ...], sharding: Sharding) -> np.ndarray:
    """Sorted indices along axis 0 that this process's devices hold, int64 [n]."""
    me = jax.process_index()
    return np.array([r for r, procs in enumerate(_row_holders(shape, sharding)) if me in procs], np.int64)


def owned_rows(shape: tuple[int, ...], sharding: Sharding) -> np.ndarray:
    """Rows this process answers for: those it holds and no lower-numbered process holds (a row replicated
    across processes, e.g. over a tensor axis spanning hosts, has one owner). int64 [n]."""
    me = jax.process_index()
    return np.array([r for r, procs in enumerate(_row_holders(shape, sharding)) if min(procs) == me], np.int64)


def read_local(x: jax.Array) -> np.ndarray:
    """The value of `x` as a host array of its full shape, filled where this process holds shards (other
    entries are zero). Single process: `np.asarray(x)`."""
    if x.is_fully_addressable:
        return np.asarray(x)
    out = np.zeros(x.shape, x.dtype)
    for shard in x.addressable_shards:
        out[shard.index] = np.asarray(shard.data)
    return out


def to_host(x: jax.Array) -> np.ndarray:
    """The whole value of `x` on every process (a collective when `x` spans processes: call it everywhere)."""
    if x.is_fully_addressable:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def put_global(host: np.ndarray, sharding: Sharding) -> jax.Array:
    """A global array with `sharding` from a host array of the full shape; each process reads only the
    entries of its own shards, so the rest may hold anything."""
    host = np.asarray(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def allgather(value: np.ndarray) -> np.ndarray:
    """Stack `value` (same shape and dtype on every process) over processes: [num_processes, ...]."""
    value = np.asarray(value)
    if jax.process_count() == 1:
        return value[None]
    return np.asarray(multihost_utils.process_allgather(value, tiled=False))


def allgather_objects(obj: Any) -> list[Any]:
    """Every process's `obj` (picklable), in process order. A collective: call it on every process."""
    if jax.process_count() == 1:
        return [obj]
    data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
    sizes = allgather(np.array([data.size], np.int64))[:, 0]
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    gathered = allgather(padded)
    return [pickle.loads(gathered[p, : sizes[p]].tobytes()) for p in range(len(sizes))]


def row_sharding(sharding: Sharding) -> Sharding:
    """`sharding` of a [B, ...] array (a NamedSharding), for another array with the same rows: rows laid out
    alike, the other axes replicated."""
    spec = sharding.spec
    return NamedSharding(sharding.mesh, PartitionSpec(spec[0] if len(spec) else None))


def sync_processes(name: str) -> None:
    """Wait until every process reaches the barrier `name` (nothing to wait for with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
