"""Building decoder parameters on a mesh: random init, or loaded tensor by tensor straight onto each
parameter's target sharding, and read back as HF-named host arrays for export.

A loaded tensor is never materialised whole on one device: each device's shard is read from the
source (a safetensors slice, or a host array) and placed with `jax.make_array_from_callback`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from ascl_jax.errors import WeightsError
from ascl_jax.models.config import ModelConfig
from ascl_jax.models.decoder import Decoder
from ascl_jax.models.hf_names import hf_tensor_map
from ascl_jax.parallel.host import to_host
from ascl_jax.parallel.sharding import ShardingRules


class TensorSource(Protocol):
    """Read access to HF-named tensors (HF layout)."""

    def shape(self, name: str) -> tuple[int, ...] | None:
        """The tensor's shape, or None when the source has no such tensor."""

    def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
        """The slice `index` of tensor `name`, as a numpy array."""

    def where(self, name: str | None = None) -> str:
        """The file that holds `name` (or the source as a whole), for error messages."""


class ArraySource:
    """A `TensorSource` over host numpy arrays (e.g. a dequantized GGUF file)."""

    def __init__(self, tensors: dict[str, np.ndarray], origin: str):
        self.tensors = tensors
        self.origin = origin

    def shape(self, name: str) -> tuple[int, ...] | None:
        t = self.tensors.get(name)
        return None if t is None else tuple(t.shape)

    def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(self.tensors[name][index])

    def where(self, name: str | None = None) -> str:
        return self.origin


def _is_var(x: object) -> bool:
    return isinstance(x, nnx.Variable)


def abstract_decoder(cfg: ModelConfig, rules: ShardingRules = ShardingRules()) -> tuple[nnx.GraphDef, nnx.State]:
    """Graph definition and abstract state (ShapeDtypeStructs with `logical_axes` metadata); no memory."""
    return nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rules, rngs=nnx.Rngs(0))))


def param_shardings(abstract_state: nnx.State, mesh: Mesh, rules: ShardingRules) -> nnx.State:
    """A prefix tree of `NamedSharding`s for the state, from each parameter's logical axes."""
    return jax.tree.map(
        lambda v: rules.sharding(mesh, v.get_metadata()["logical_axes"], v.shape), abstract_state, is_leaf=_is_var
    )


def init_params(cfg: ModelConfig, mesh: Mesh, rules: ShardingRules = ShardingRules(), seed: int = 0):
    """Random parameters (normal(0, 0.02) matrices, unit norms), created already sharded on `mesh`.

    Returns (graphdef, state)."""
    graphdef, abstract = abstract_decoder(cfg, rules)
    shardings = param_shardings(abstract, mesh, rules)

    def make():
        return nnx.split(Decoder(cfg, rules, rngs=nnx.Rngs(seed)))[1]

    with jax.set_mesh(mesh):
        state = jax.jit(make, out_shardings=shardings)()
    return graphdef, state


def load_params(cfg: ModelConfig, source: TensorSource, mesh: Mesh, rules: ShardingRules = ShardingRules()):
    """Parameters read from HF-named tensors, each device's shard read and placed directly.

    Raises WeightsError naming the tensor and file when a tensor is missing or mis-shaped.
    Returns (graphdef, state)."""
    graphdef, abstract = abstract_decoder(cfg, rules)
    names = hf_tensor_map(cfg)
    flat = nnx.to_flat_state(abstract)
    loaded = []
    for path, var in flat:
        hf = names[path]
        want = tuple(var.shape[::-1]) if hf.transpose else tuple(var.shape)
        got = source.shape(hf.name)
        if got is None:
            raise WeightsError(f"{source.where()}: missing tensor {hf.name!r} (expected shape {list(want)})")
        if tuple(got) != want:
            raise WeightsError(
                f"{source.where(hf.name)}: tensor {hf.name!r} has shape {list(got)}, expected {list(want)} "
                f"from the config"
            )
        sharding = rules.sharding(mesh, var.get_metadata()["logical_axes"], var.shape)
        array = _place(source, hf.name, hf.transpose, var.shape, var.dtype, sharding)
        loaded.append((path, var.replace(array)))
    return graphdef, nnx.from_flat_state(loaded)


def _place(source: TensorSource, name: str, transpose: bool, shape, dtype, sharding: NamedSharding) -> jax.Array:
    memo: dict[tuple, np.ndarray] = {}  # replicated shards ask for the same slice on every device

    def shard(index: tuple[slice, ...]) -> np.ndarray:
        key = tuple((s.start, s.stop) for s in index)
        if key not in memo:
            if transpose:
                block = source.read(name, tuple(index[::-1])).T
            else:
                block = source.read(name, tuple(index))
            memo[key] = np.ascontiguousarray(block).astype(jnp.dtype(dtype))
        return memo[key]

    return jax.make_array_from_callback(tuple(shape), sharding, shard)


def hf_tensors(cfg: ModelConfig, state: nnx.State, dtype: str | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, host array in HF layout) for every parameter, one at a time (gathers each to host; a
    collective under several processes: every process iterates)."""
    names = hf_tensor_map(cfg)
    for path, var in nnx.to_flat_state(state):
        hf = names[path]
        arr = to_host(var[...])
        if dtype is not None:
            arr = arr.astype(jnp.dtype(dtype))
        yield hf.name, (arr.T if hf.transpose else arr)
