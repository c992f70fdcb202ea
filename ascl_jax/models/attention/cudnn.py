"""GPU: the fused cuDNN attention behind `jax.nn.dot_product_attention`, for the uncached causal forward
without packed segments (SFT on unpacked rows, the RL update and log-probability passes)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cudnn_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, dtype, implementation: str = "cudnn") -> jax.Array:
    """Causal self-attention: q [B, T, H, hd], k, v [B, T, KV, hd] (grouped-query heads) -> [B, T, H*hd]
    in `dtype`. cuDNN takes bfloat16/float16 only; `implementation="xla"` runs the same call anywhere
    (the tests' path)."""
    b, t, h, hd = q.shape
    out = jax.nn.dot_product_attention(q.astype(dtype), k.astype(dtype), v.astype(dtype), scale=hd**-0.5,
                                       is_causal=True, implementation=implementation)
    return out.astype(dtype).reshape(b, t, h * hd)


def cudnn_supports(dtype) -> bool:
    return jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
