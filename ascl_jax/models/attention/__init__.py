"""Attention, one function over several backends, chosen by `ModelConfig.attention`.

| backend | where | what it covers |
|---|---|---|
| `dense` | everywhere | the reference: the whole [T, S] float32 score matrix |
| `blockwise` | everywhere | online softmax over key blocks, its own backward: no [T, S] matrix, any mask |
| `splash` | TPU (interpret mode elsewhere) | jax's Pallas splash kernel, uncached causal forward, segments |
| `cudnn` | GPU | cuDNN fused attention, uncached causal forward, no segments, bf16/f16 |
| `auto` | | splash on TPU, cudnn on GPU, on the CPU dense for small score matrices and blockwise past them |

Every call says what it attends over: `q_slot` (the cache slot of each query; None: plain causal
self-attention over the T tokens given) and segment ids (packed rows). A fused kernel takes only the
uncached causal forward; every other call of a multi-token forward (prefill, a tool turn's extend at an
offset into the cache, a shape the kernel cannot tile) runs blockwise under it, and a decode step (one
query a row) runs dense, whose [1, S] scores are small. All backends give the same result within the
rounding of the compute dtype (tests/test_attention.py).
"""

from __future__ import annotations

from typing import Literal, get_args

import jax
import jax.numpy as jnp

from ascl_jax.errors import ConfigError
from ascl_jax.models.attention.blockwise import blockwise_attention
from ascl_jax.models.attention.cudnn import cudnn_attention, cudnn_supports
from ascl_jax.models.attention.dense import dense_attention
from ascl_jax.models.attention.splash import splash_attention, splash_block, target_platform
from ascl_jax.parallel.sharding import ShardingRules

__all__ = ["ATTENTION_BACKENDS", "AttentionBackend", "attend", "blockwise_attention", "dense_attention",
           "resolve_backend"]

AttentionBackend = Literal["auto", "dense", "blockwise", "splash", "cudnn"]
ATTENTION_BACKENDS: tuple[str, ...] = get_args(AttentionBackend)
# On the CPU, `auto` keeps the dense path while a row's score matrix is at most this many entries (a
# [1024, 1024] matrix: 4 MB a head in float32): below it the single fused matmul is faster.
_DENSE_MAX_SCORES = 1024 * 1024


def check_backend(backend: str) -> None:
    if backend not in ATTENTION_BACKENDS:
        raise ConfigError(f"attention backend {backend!r} is not valid; choose one of {', '.join(ATTENTION_BACKENDS)}")


def resolve_backend(backend: str, platform: str) -> str:
    """The backend `auto` stands for on `platform` ("tpu", "gpu"/"cuda"/"rocm", "cpu"); others unchanged."""
    check_backend(backend)
    if backend != "auto":
        return backend
    if platform == "tpu":
        return "splash"
    if platform in ("gpu", "cuda"):
        return "cudnn"
    return "auto"  # the CPU's choice depends on the shape: made per call


def attend(q: jax.Array, k: jax.Array, v: jax.Array, *, backend: str, dtype, q_slot: jax.Array | None = None,
           q_segments: jax.Array | None = None, kv_segments: jax.Array | None = None, block: int = 512,
           rules: ShardingRules = ShardingRules()) -> jax.Array:
    """Grouped-query attention of q [B, T, H, hd] over k, v [B, S, KV, hd] -> [B, T, H*hd] in `dtype`.

    q_slot i32[B or 1, T]: the key index of each query's own position; it sees keys at or before it
    (None: causal self-attention, S == T, query t at key t). q_segments i32[B, T], kv_segments i32[B, S]:
    a query sees only keys of its own segment (packed rows; None: one segment). `block`: the blockwise
    tile. `rules`: how rows and heads are split over the mesh in context (for the fused kernels)."""
    t, s = q.shape[1], k.shape[1]
    self_causal = q_slot is None
    if self_causal and s != t:
        raise ValueError(f"causal self-attention needs as many keys as queries, got {t} and {s}")
    if self_causal:
        q_slot = jnp.arange(t, dtype=jnp.int32)[None, :]
    if q_segments is not None and kv_segments is None:
        kv_segments = q_segments
    backend = resolve_backend(backend, target_platform())
    if t == 1 or backend == "dense":
        return dense_attention(q, k, v, q_slot, q_segments, kv_segments, dtype=dtype)
    if backend == "splash" and self_causal and splash_block(t) is not None:
        return splash_attention(q, k, v, q_segments, rules, dtype=dtype)
    if backend == "cudnn" and self_causal and q_segments is None and cudnn_supports(dtype):
        return cudnn_attention(q, k, v, dtype=dtype)
    if backend == "auto" and t * s <= _DENSE_MAX_SCORES:
        return dense_attention(q, k, v, q_slot, q_segments, kv_segments, dtype=dtype)
    return blockwise_attention(q, k, v, q_slot, q_segments, kv_segments, dtype=dtype, block=block)
