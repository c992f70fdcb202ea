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
from ascl_jax.models.hf_names import HFTensor, hf_tensor_map
from ascl_jax.models.lora import LoRAConfig, LoRAParam
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


def abstract_decoder(cfg: ModelConfig, rules: ShardingRules = ShardingRules(), lora: LoRAConfig = LoRAConfig(),
                     scan_unroll: int | bool = 1) -> tuple[nnx.GraphDef, nnx.State]:
    """Graph definition and abstract state (ShapeDtypeStructs with `logical_axes` metadata); no memory."""
    return nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rules, rngs=nnx.Rngs(0), lora=lora,
                                                    scan_unroll=scan_unroll)))


def param_shardings(abstract_state: nnx.State, mesh: Mesh, rules: ShardingRules) -> nnx.State:
    """A prefix tree of `NamedSharding`s for the state, from each parameter's logical axes."""
    return jax.tree.map(
        lambda v: rules.sharding(mesh, v.get_metadata()["logical_axes"], v.shape), abstract_state, is_leaf=_is_var
    )


def init_params(cfg: ModelConfig, mesh: Mesh, rules: ShardingRules = ShardingRules(), seed: int = 0,
                lora: LoRAConfig = LoRAConfig()):
    """Random parameters (normal(0, 0.02) matrices, unit norms), created already sharded on `mesh`.

    Returns (graphdef, state)."""
    graphdef, abstract = abstract_decoder(cfg, rules, lora)
    shardings = param_shardings(abstract, mesh, rules)

    def make():
        return nnx.split(Decoder(cfg, rules, rngs=nnx.Rngs(seed), lora=lora))[1]

    with jax.set_mesh(mesh):
        state = jax.jit(make, out_shardings=shardings)()
    return graphdef, state


def load_params(cfg: ModelConfig, source: TensorSource, mesh: Mesh, rules: ShardingRules = ShardingRules(),
                lora: LoRAConfig = LoRAConfig(), seed: int = 0):
    """Parameters read from HF-named tensors, each device's shard read and placed directly; LoRA adapters
    (when `lora.rank` > 0) are fresh (B = 0: the loaded model is unchanged).

    Raises WeightsError naming the tensor and file when a tensor is missing or mis-shaped.
    Returns (graphdef, state)."""
    graphdef, abstract = abstract_decoder(cfg, rules, lora)
    names = hf_tensor_map(cfg)
    flat = nnx.to_flat_state(abstract)
    loaded = []
    for path, var in flat:
        if isinstance(var, LoRAParam):
            continue
        hf = names[path]
        layer_shape = tuple(var.shape[1:] if hf.stacked else var.shape)
        want = layer_shape[::-1] if hf.transpose else layer_shape
        for name in hf.names:
            got = source.shape(name)
            if got is None:
                raise WeightsError(f"{source.where()}: missing tensor {name!r} (expected shape {list(want)})")
            if tuple(got) != want:
                raise WeightsError(
                    f"{source.where(name)}: tensor {name!r} has shape {list(got)}, expected {list(want)} "
                    f"from the config"
                )
        sharding = rules.sharding(mesh, var.get_metadata()["logical_axes"], var.shape)
        array = _place(source, hf, var.shape, var.dtype, sharding)
        loaded.append((path, var.replace(array)))
    if lora.enabled:
        loaded += _fresh_adapters(cfg, rules, lora, mesh, seed)
    return graphdef, nnx.from_flat_state(loaded)


def _fresh_adapters(cfg: ModelConfig, rules: ShardingRules, lora: LoRAConfig, mesh: Mesh, seed: int):
    """The adapters of a randomly initialised decoder, made on `mesh` (the base parameters of that decoder
    are dead code under jit: never materialised)."""
    _, abstract = abstract_decoder(cfg, rules, lora)
    shardings = param_shardings(nnx.split_state(abstract, LoRAParam, ...)[0], mesh, rules)

    def make():
        state = nnx.split(Decoder(cfg, rules, rngs=nnx.Rngs(seed), lora=lora))[1]
        return nnx.split_state(state, LoRAParam, ...)[0]

    with jax.set_mesh(mesh):
        adapters = jax.jit(make, out_shardings=shardings)()
    return list(nnx.to_flat_state(adapters))


def _place(source: TensorSource, hf: HFTensor, shape, dtype, sharding: NamedSharding) -> jax.Array:
    memo: dict[tuple, np.ndarray] = {}  # replicated shards ask for the same slice on every device

    def read(name: str, index: tuple[slice, ...]) -> np.ndarray:
        if hf.transpose:
            return source.read(name, tuple(index[::-1])).T
        return source.read(name, tuple(index))

    def shard(index: tuple[slice, ...]) -> np.ndarray:
        key = tuple((s.start, s.stop) for s in index)
        if key not in memo:
            if hf.stacked:  # the layers this shard holds, one HF tensor each
                layers = range(*index[0].indices(len(hf.names)))
                block = np.stack([read(hf.names[i], index[1:]) for i in layers])
            else:
                block = read(hf.name, index)
            memo[key] = np.ascontiguousarray(block).astype(jnp.dtype(dtype))
        return memo[key]

    return jax.make_array_from_callback(tuple(shape), sharding, shard)


def hf_tensors(cfg: ModelConfig, state: nnx.State, dtype: str | None = None,
               merge_adapters: bool = True) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, host array in HF layout) for every base parameter, one at a time (gathers each to host; a
    collective under several processes: every process iterates). LoRA adapters present in `state` are
    merged into their kernels (W + A @ B * scale), so the result is a plain HF checkpoint, unless
    `merge_adapters` is False (the base weights alone, e.g. to pair with a PEFT adapter folder)."""
    names = hf_tensor_map(cfg)
    flat = dict(nnx.to_flat_state(state))
    for path, var in flat.items():
        if isinstance(var, LoRAParam):
            continue
        hf = names[path]
        arr = to_host(var[...])
        a, b = flat.get((*path[:-1], f"{path[-1]}_lora_a")), flat.get((*path[:-1], f"{path[-1]}_lora_b"))
        if merge_adapters and a is not None and b is not None:
            merged = arr.astype(np.float32) + np.einsum("lir,lro->lio", to_host(a[...]).astype(np.float32),
                                                        to_host(b[...]).astype(np.float32)) * a.get_metadata()["lora_scale"]
            arr = merged.astype(arr.dtype)
        if dtype is not None:
            arr = arr.astype(jnp.dtype(dtype))
        for i, name in enumerate(hf.names):
            tensor = arr[i] if hf.stacked else arr
            yield name, (tensor.T if hf.transpose else tensor)
