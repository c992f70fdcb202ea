"""Forward-pass throughput (prefill-style, no cache) and model load time."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ascl_jax.bench.timing import median_seconds
from ascl_jax.models.registry import load_model


def bench_forward(model_name: str, batch: int, seq_len: int, repeats: int = 5, dtype: str | None = None) -> dict:
    """Returns {load_seconds, forward_tokens_per_s, forward_seconds, gflops_per_s, params, ...}."""
    start = time.perf_counter()
    model = load_model(model_name, dtype=dtype)
    jax.block_until_ready(model.params)
    load_seconds = time.perf_counter() - start
    cfg = model.config
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, cfg.vocab_size, (batch, seq_len)), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(seq_len, dtype=jnp.int32), (batch, seq_len))

    @jax.jit
    def forward(params, tokens, positions):
        return nnx.merge(model.graphdef, params)(tokens, positions)[0]

    with jax.set_mesh(model.mesh):
        seconds = median_seconds(lambda: forward(model.params, tokens, positions), repeats)
    n = batch * seq_len
    return {
        "bench": "forward",
        "model": model_name,
        "params": cfg.num_params,
        "dtype": cfg.dtype,
        "batch": batch,
        "seq_len": seq_len,
        "devices": len(model.mesh.devices.flat),
        "load_seconds": round(load_seconds, 3),
        "forward_seconds": round(seconds, 4),
        "forward_tokens_per_s": round(n / seconds, 1),
        "gflops_per_s": round(cfg.flops_per_token(seq_len) * n / seconds / 1e9, 2),
    }
