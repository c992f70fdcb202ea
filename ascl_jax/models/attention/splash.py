"""TPU: jax's Pallas splash attention kernel (causal, segment ids, grouped-query heads), forward and
backward, for the uncached causal forward (SFT, the RL update and log-probability passes).

Mosaic kernels are not partitioned by XLA, so the kernel runs inside `jax.shard_map` over the mesh in
context: rows split as the batch is, query and KV heads split over the tensor axes that divide the KV
heads (so each shard keeps whole groups of query heads with their KV head), the sequence whole. Off TPU
the same kernel runs in Pallas interpret mode: slow, for tests of its numerics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks
from jax.sharding import PartitionSpec as P

from ascl_jax.parallel.sharding import ShardingRules

_BLOCKS = (512, 256, 128)  # tile sizes tried, largest first; the kernel's lanes need multiples of 128


def target_platform() -> str:
    """The platform the program being traced is for: the mesh in context's devices (a TPU slice compiled
    for on a CPU host is "tpu"), else the default backend."""
    mesh = jax.sharding.get_abstract_mesh()
    device = None if mesh.empty else mesh.abstract_device
    return device.platform if device is not None else jax.default_backend()


def splash_block(t: int) -> int | None:
    """The largest tile that divides a sequence of t tokens, or None when the kernel cannot take t."""
    return next((b for b in _BLOCKS if t % b == 0), None)


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, q_segments: jax.Array | None,
                     rules: ShardingRules, *, dtype) -> jax.Array:
    """Causal self-attention: q [B, T, H, hd], k, v [B, T, KV, hd], segments i32[B, T] or None (the same
    ids for queries and keys) -> [B, T, H*hd] in `dtype`. T must be a multiple of 128 (`splash_block`)."""
    b, t, h, hd = q.shape
    block = splash_block(t)
    if block is None:
        raise ValueError(f"splash attention needs a sequence length that is a multiple of 128, got {t}")
    mesh = jax.sharding.get_abstract_mesh()
    interpret = target_platform() != "tpu"
    q = (q * jnp.asarray(hd**-0.5, q.dtype)).astype(dtype)
    k, v = k.astype(dtype), v.astype(dtype)
    segments = jnp.zeros((b, t), jnp.int32) if q_segments is None else q_segments.astype(jnp.int32)

    def local(q, k, v, segments):
        heads = q.shape[2]
        sizes = splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                                  block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block,
                                  block_kv_dq=block)
        kernel = splash.make_splash_mha(masks.MultiHeadMask([masks.CausalMask((t, t))] * heads),
                                        block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)
        per_row = jax.vmap(lambda q, k, v, s: kernel(q, k, v, splash.SegmentIds(q=s, kv=s)))
        out = per_row(*(x.transpose(0, 2, 1, 3) for x in (q, k, v)), segments)  # [b, H, T, hd]
        return out.transpose(0, 2, 1, 3)

    if mesh.empty:
        out = local(q, k, v, segments)
    else:
        rows = rules.spec(("batch",), (b,), mesh)[0]
        # The KV heads' own split (the rules keep only axes that divide them): each shard then holds whole
        # groups of query heads with their KV head.
        heads = rules.spec(("act_kv_heads",), (k.shape[2],), mesh)[0]
        qkv = P(rows, None, heads, None)
        out = jax.shard_map(local, mesh=mesh, in_specs=(qkv, qkv, qkv, P(rows, None)), out_specs=qkv,
                            check_vma=False)(q, k, v, segments)
    return out.reshape(b, t, h * hd)
