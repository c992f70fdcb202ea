"""Blockwise attention in plain JAX: online softmax over key blocks, forward and backward, never holding
a [T, S] score matrix.

Forward: for each block of `block` queries, a loop over the key blocks that any of its queries can see
(causality bounds the loop, so the upper triangle is skipped, not masked) keeps a running max, running
sum and running output in float32. The residuals are the output and each query's log-sum-exp.
Backward (a custom VJP, the flash-attention recurrence): the probabilities of one (query block, key
block) tile are recomputed from the log-sum-exp, and dq, dk, dv accumulate tile by tile. Peak memory per
layer is a few [B, H, block, block] tiles, whatever T and S are.

It runs on every backend, is the reference the fused kernels are compared with at length, and is what
`auto` picks on the CPU for long rows and on every backend for the cached forwards (prefill, a tool
turn's extend) that the fused kernels do not cover.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ascl_jax.models.attention.dense import heads_first, merge_heads, visible

_NEG = -1e30  # finite: an all-masked tile keeps exp(s - m) at 0 instead of nan


def blockwise_attention(q: jax.Array, k: jax.Array, v: jax.Array, q_slot: jax.Array,
                        q_segments: jax.Array | None = None, kv_segments: jax.Array | None = None, *,
                        dtype, block: int = 512) -> jax.Array:
    """Same contract as `dense_attention`: q [B, T, H, hd], k, v [B, S, KV, hd], q_slot i32[B or 1, T],
    segments i32[B, T] / i32[B, S] or None -> [B, T, H*hd] in `dtype`. `block`: queries and keys per
    tile (clipped to T and S)."""
    b, t, _, hd = q.shape
    s = k.shape[1]
    bq, bk = min(block, t), min(block, s)
    tp, sp = -(-t // bq) * bq, -(-s // bk) * bk
    qh, kh, vh = heads_first(q, k, v, dtype)
    # Padded queries see nothing (slot -1); padded keys are past kv_len.
    slot = jnp.pad(jnp.broadcast_to(q_slot, (b, t)).astype(jnp.int32), ((0, 0), (0, tp - t)), constant_values=-1)
    if q_segments is None:
        qseg, kseg = jnp.zeros((b, tp), jnp.int32), jnp.zeros((b, sp), jnp.int32)
    else:
        qseg = jnp.pad(q_segments.astype(jnp.int32), ((0, 0), (0, tp - t)), constant_values=-1)
        kseg = jnp.pad(kv_segments.astype(jnp.int32), ((0, 0), (0, sp - s)), constant_values=-2)
    qh = jnp.pad(qh, ((0, 0),) * 3 + ((0, tp - t), (0, 0)))
    kh, vh = (jnp.pad(x, ((0, 0), (0, 0), (0, sp - s), (0, 0))) for x in (kh, vh))
    out = _flash(qh, kh, vh, slot, qseg, kseg, bq, bk, s, hd**-0.5, jnp.dtype(dtype))
    return merge_heads(out[:, :, :, :t])


def _tile(qb, kb, slot_b, qseg_b, kseg_b, j, bk, kv_len, scale):
    """Scores f32[B, KV, G, bq, bk] of one tile and its visibility mask (broadcast to them)."""
    s = jnp.einsum("bkgqd,bksd->bkgqs", qb, kb, preferred_element_type=jnp.float32) * scale
    vis = visible(slot_b, j * bk + jnp.arange(bk), qseg_b, kseg_b, kv_len)[:, None, None]
    return s, vis


def _blocks_needed(slot_b, bk, nk):
    """Key blocks any query of this block can see: up to the block holding its furthest slot."""
    return jnp.clip(jnp.max(slot_b) // bk + 1, 0, nk)


def _slice(x, i, size, axis):
    return jax.lax.dynamic_slice_in_dim(x, i * size, size, axis)


def _forward(qh, kh, vh, slot, qseg, kseg, bq, bk, kv_len, scale, dtype):
    """(out [B, KV, G, Tp, hd] dtype, lse f32[B, KV, G, Tp])."""
    b, kvh, g, tp, hd = qh.shape
    nq, nk = tp // bq, kh.shape[2] // bk

    def query_block(i):
        qb, slot_b, qseg_b = _slice(qh, i, bq, 3), _slice(slot, i, bq, 1), _slice(qseg, i, bq, 1)

        def key_block(j, carry):
            m, l, acc = carry
            kb, vb, kseg_b = _slice(kh, j, bk, 2), _slice(vh, j, bk, 2), _slice(kseg, j, bk, 1)
            s, vis = _tile(qb, kb, slot_b, qseg_b, kseg_b, j, bk, kv_len, scale)
            m_new = jnp.maximum(m, jnp.max(jnp.where(vis, s, _NEG), axis=-1))
            p = jnp.where(vis, jnp.exp(s - m_new[..., None]), 0.0)
            corr = jnp.exp(m - m_new)
            acc = acc * corr[..., None] + jnp.einsum("bkgqs,bksd->bkgqd", p.astype(dtype), vb,
                                                     preferred_element_type=jnp.float32)
            return m_new, l * corr + jnp.sum(p, axis=-1), acc

        init = (jnp.full((b, kvh, g, bq), _NEG, jnp.float32), jnp.zeros((b, kvh, g, bq), jnp.float32),
                jnp.zeros((b, kvh, g, bq, hd), jnp.float32))
        m, l, acc = jax.lax.fori_loop(0, _blocks_needed(slot_b, bk, nk), key_block, init)
        seen = l > 0  # a query that sees no key (padding) gets 0, and lse 0 so its tiles stay masked
        out = acc / jnp.where(seen, l, 1.0)[..., None]
        return out.astype(dtype), jnp.where(seen, m + jnp.log(jnp.where(seen, l, 1.0)), 0.0)

    out, lse = jax.lax.map(query_block, jnp.arange(nq))  # [nq, B, KV, G, bq, ...]
    out = jnp.moveaxis(out, 0, 3).reshape(b, kvh, g, tp, hd)
    lse = jnp.moveaxis(lse, 0, 3).reshape(b, kvh, g, tp)
    return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8, 9, 10))
def _flash(qh, kh, vh, slot, qseg, kseg, bq, bk, kv_len, scale, dtype):
    return _forward(qh, kh, vh, slot, qseg, kseg, bq, bk, kv_len, scale, dtype)[0]


def _flash_fwd(qh, kh, vh, slot, qseg, kseg, bq, bk, kv_len, scale, dtype):
    out, lse = _forward(qh, kh, vh, slot, qseg, kseg, bq, bk, kv_len, scale, dtype)
    return out, (qh, kh, vh, slot, qseg, kseg, out, lse)


def _flash_bwd(bq, bk, kv_len, scale, dtype, residuals, dout):
    qh, kh, vh, slot, qseg, kseg, out, lse = residuals
    tp, nk = qh.shape[3], kh.shape[2] // bk
    # D_i = sum_d dO_i · O_i: the softmax's Jacobian applied to dP reduces to P ⊙ (dP − D).
    delta = jnp.sum(dout.astype(jnp.float32) * out.astype(jnp.float32), axis=-1)
    dout = dout.astype(dtype)

    def query_block(i, carry):
        dq, dk, dv = carry
        qb, dob = _slice(qh, i, bq, 3), _slice(dout, i, bq, 3)
        lse_b, delta_b = _slice(lse, i, bq, 3), _slice(delta, i, bq, 3)
        slot_b, qseg_b = _slice(slot, i, bq, 1), _slice(qseg, i, bq, 1)

        def key_block(j, carry):
            dq_b, dk, dv = carry
            kb, vb, kseg_b = _slice(kh, j, bk, 2), _slice(vh, j, bk, 2), _slice(kseg, j, bk, 1)
            s, vis = _tile(qb, kb, slot_b, qseg_b, kseg_b, j, bk, kv_len, scale)
            p = jnp.where(vis, jnp.exp(s - lse_b[..., None]), 0.0)
            dp = jnp.einsum("bkgqd,bksd->bkgqs", dob, vb, preferred_element_type=jnp.float32)
            ds = (p * (dp - delta_b[..., None]) * scale).astype(dtype)
            dv_j = jnp.einsum("bkgqs,bkgqd->bksd", p.astype(dtype), dob, preferred_element_type=jnp.float32)
            dk_j = jnp.einsum("bkgqs,bkgqd->bksd", ds, qb, preferred_element_type=jnp.float32)
            dq_b = dq_b + jnp.einsum("bkgqs,bksd->bkgqd", ds, kb, preferred_element_type=jnp.float32)
            dk = jax.lax.dynamic_update_slice_in_dim(dk, _slice(dk, j, bk, 2) + dk_j, j * bk, 2)
            dv = jax.lax.dynamic_update_slice_in_dim(dv, _slice(dv, j, bk, 2) + dv_j, j * bk, 2)
            return dq_b, dk, dv

        dq_b = jnp.zeros(qb.shape, jnp.float32)
        dq_b, dk, dv = jax.lax.fori_loop(0, _blocks_needed(slot_b, bk, nk), key_block, (dq_b, dk, dv))
        return jax.lax.dynamic_update_slice_in_dim(dq, dq_b, i * bq, 3), dk, dv

    init = (jnp.zeros(qh.shape, jnp.float32), jnp.zeros(kh.shape, jnp.float32), jnp.zeros(vh.shape, jnp.float32))
    dq, dk, dv = jax.lax.fori_loop(0, tp // bq, query_block, init)
    return dq.astype(qh.dtype), dk.astype(kh.dtype), dv.astype(vh.dtype), None, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)
