"""Attention and log-probability heads side by side on this machine: forward + backward time and the
compiled program's temporaries, dense against blockwise attention and dense against chunked log-probs,
at several sequence lengths. Times are medians of interleaved rounds (`timing.interleaved_seconds`), so
the two variants of a row see the same load."""

from __future__ import annotations

import statistics

import jax
import jax.numpy as jnp

from ascl_jax.bench.timing import interleaved_seconds
from ascl_jax.models.attention import blockwise_attention, dense_attention
from ascl_jax.models.chunked_logprobs import token_stats


def _compiled(fn, *args):
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, compiled.memory_analysis().temp_size_in_bytes


def _pair(fns: dict, args, repeats: int) -> dict:
    """{name: (seconds, temporaries)} for each loss function's gradient."""
    compiled = {name: _compiled(jax.grad(fn, argnums=tuple(range(len(args)))), *args) for name, fn in fns.items()}
    times = interleaved_seconds({name: (lambda c=c: c(*args)) for name, (c, _) in compiled.items()}, repeats)
    return {name: (statistics.median(times[name]), compiled[name][1]) for name in fns}


def bench_attention(lengths: list[int], batch: int = 1, heads: int = 8, kv_heads: int = 2, head_dim: int = 64,
                    block: int = 512, repeats: int = 3, dtype: str = "float32") -> list[dict]:
    """Per length T: forward + backward seconds and compiled temporaries (MiB) of dense and blockwise
    causal attention over q [batch, T, heads, head_dim], k, v [batch, T, kv_heads, head_dim]."""
    dt = jnp.dtype(dtype)
    rows = []
    for t in lengths:
        ks = jax.random.split(jax.random.PRNGKey(t), 3)
        q = jax.random.normal(ks[0], (batch, t, heads, head_dim), dt)
        k = jax.random.normal(ks[1], (batch, t, kv_heads, head_dim), dt)
        v = jax.random.normal(ks[2], (batch, t, kv_heads, head_dim), dt)
        slot = jnp.arange(t)[None]
        fns = {"dense": lambda q, k, v: jnp.sum(dense_attention(q, k, v, slot, dtype=dt).astype(jnp.float32)),
               "blockwise": lambda q, k, v: jnp.sum(
                   blockwise_attention(q, k, v, slot, dtype=dt, block=block).astype(jnp.float32))}
        got = _pair(fns, (q, k, v), repeats)
        rows.append({"T": t, "dense_s": round(got["dense"][0], 4), "blockwise_s": round(got["blockwise"][0], 4),
                     "time_ratio": round(got["blockwise"][0] / got["dense"][0], 3),
                     "dense_temp_mib": round(got["dense"][1] / 2**20, 1),
                     "blockwise_temp_mib": round(got["blockwise"][1] / 2**20, 1)})
    return rows


def bench_logprobs(lengths: list[int], vocab: int = 32768, hidden: int = 512, chunk: int = 512,
                   repeats: int = 3) -> list[dict]:
    """Per length T: forward + backward seconds and temporaries (MiB) of one row's per-token
    log-probabilities and entropies, the whole [T, vocab] logits against chunks of `chunk` positions."""
    rows = []
    for t in lengths:
        ks = jax.random.split(jax.random.PRNGKey(t), 3)
        h = jax.random.normal(ks[0], (1, t, hidden))
        w = jax.random.normal(ks[1], (hidden, vocab)) * hidden**-0.5
        y = jax.random.randint(ks[2], (1, t), 0, vocab)

        def loss(c):
            return lambda h, w: sum(jnp.sum(x) for x in token_stats(lambda x: x @ w, h, y, chunk=c)[:2])

        got = _pair({"dense": loss(0), "chunked": loss(chunk)}, (h, w), repeats)
        rows.append({"T": t, "dense_s": round(got["dense"][0], 4), "chunked_s": round(got["chunked"][0], 4),
                     "time_ratio": round(got["chunked"][0] / got["dense"][0], 3),
                     "dense_temp_mib": round(got["dense"][1] / 2**20, 1),
                     "chunked_temp_mib": round(got["chunked"][1] / 2**20, 1)})
    return rows
