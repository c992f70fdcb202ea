"""The reference attention: the whole [T, S] score matrix in float32, masked, softmaxed, applied.

Every other backend is tested against this one. It is also the fastest where the scores are small (a
decode step's [1, S], the CPU demo's short rows)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def visible(q_slot: jax.Array, k_index: jax.Array, q_segments: jax.Array | None,
            kv_segments: jax.Array | None, kv_len: int | None = None) -> jax.Array:
    """bool[B, Tq, Sk]: key k_index[s] is visible to query t of row b.

    q_slot i32[B or 1, Tq]: the key index of the query's own position (causality: keys at or before it);
    k_index i32[Sk]: the key indices of this block; segments i32[B, Tq] / i32[B, Sk] (None: one segment);
    kv_len: keys at or past it are padding."""
    vis = k_index[None, None, :] <= q_slot[:, :, None]
    if kv_len is not None:
        vis = vis & (k_index < kv_len)[None, None, :]
    if q_segments is not None:
        vis = vis & (q_segments[:, :, None] == kv_segments[:, None, :])
    return vis


def heads_first(q: jax.Array, k: jax.Array, v: jax.Array, dtype) -> tuple[jax.Array, jax.Array, jax.Array]:
    """q [B, T, H, hd] -> [B, KV, G, T, hd]; k, v [B, S, KV, hd] -> [B, KV, S, hd] (G = H / KV)."""
    b, t, h, hd = q.shape
    kv = k.shape[2]
    qh = q.reshape(b, t, kv, h // kv, hd).transpose(0, 2, 3, 1, 4)
    return qh, k.astype(q.dtype).transpose(0, 2, 1, 3), v.astype(dtype).transpose(0, 2, 1, 3)


def merge_heads(out: jax.Array) -> jax.Array:
    """[B, KV, G, T, hd] -> [B, T, KV*G*hd]."""
    b, kv, g, t, hd = out.shape
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, kv * g * hd)


def dense_attention(q: jax.Array, k: jax.Array, v: jax.Array, q_slot: jax.Array,
                    q_segments: jax.Array | None = None, kv_segments: jax.Array | None = None, *,
                    dtype) -> jax.Array:
    """Grouped-query attention: q [B, T, H, hd] over k, v [B, S, KV, hd]; q_slot i32[B or 1, T] (key
    index of each query's own position), segments i32[B, T] / i32[B, S] or None. Returns [B, T, H*hd] in
    `dtype` (scores and softmax in float32)."""
    b, t, h, hd = q.shape
    s, kv = k.shape[1], k.shape[2]
    group = h // kv
    qh, kh, vh = heads_first(q, k, v, dtype)
    # A KV head's query heads and positions merged into one axis, so both products are plain matmuls
    # batched over (B, KV). With positions inside the batch dims XLA:CPU transposes the [T, S] scores
    # and probabilities around each product, which cost more than the products in a long extend.
    qh = qh.reshape(b, kv, group * t, hd)
    scores = jnp.einsum("bkqd,bksd->bkqs", qh, kh, preferred_element_type=jnp.float32) * (hd**-0.5)
    scores = scores.reshape(b, kv, group, t, s)
    mask = visible(q_slot, jnp.arange(s), q_segments, kv_segments)
    scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(dtype).reshape(b, kv, group * t, s)
    out = jnp.einsum("bkqs,bksd->bkqd", probs, vh)  # [B, KV, G*T, hd]
    return merge_heads(out.reshape(b, kv, group, t, hd))
