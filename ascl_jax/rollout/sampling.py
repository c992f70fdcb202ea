"""Token sampling: greedy, temperature, top-k and top-p, with the sampler's log-probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ascl_jax.errors import ConfigError


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is drawn. `top_k=0` and `top_p=1.0` disable those filters.

    The recorded log-probability is that of the temperature-scaled full distribution, which is what the
    trainer recomputes; top-k/top-p only restrict which tokens can be drawn."""

    greedy: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not self.greedy and self.temperature <= 0:
            raise ConfigError(f"sampling.temperature must be > 0 (or set greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"sampling.top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"sampling.top_p must be in (0, 1], got {self.top_p}")


def sample(logits: jax.Array, rng: jax.Array, cfg: SamplingConfig) -> tuple[jax.Array, jax.Array]:
    """Draw one token per row from logits f32[B, V]; returns (tokens i32[B], logprobs f32[B]).

    `rng` is one key per row (key[B]) so that a row's draw does not depend on the other rows of the
    batch or on how the batch is sharded."""
    temperature = 1.0 if cfg.greedy else cfg.temperature
    scaled = logits.astype(jnp.float32) / temperature
    logprobs = jax.nn.log_softmax(scaled, axis=-1)
    if cfg.greedy:
        tokens = jnp.argmax(scaled, axis=-1)
    else:
        filtered = scaled
        if cfg.top_k > 0:
            kth = jax.lax.top_k(filtered, cfg.top_k)[0][:, -1:]
            filtered = jnp.where(filtered < kth, -jnp.inf, filtered)
        if cfg.top_p < 1.0:
            order = jnp.argsort(-filtered, axis=-1)
            sorted_logits = jnp.take_along_axis(filtered, order, axis=-1)
            cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
            # keep the smallest prefix whose mass reaches top_p (the first token always stays)
            keep_sorted = (cum - jax.nn.softmax(sorted_logits, axis=-1)) < cfg.top_p
            keep = jnp.zeros_like(keep_sorted).at[jnp.arange(order.shape[0])[:, None], order].set(keep_sorted)
            filtered = jnp.where(keep, filtered, -jnp.inf)
        tokens = jax.vmap(lambda k, l: jax.random.categorical(k, l))(rng, filtered)
    tokens = tokens.astype(jnp.int32)
    return tokens, jnp.take_along_axis(logprobs, tokens[:, None], axis=-1)[:, 0]


def row_keys(seed: int, row_ids: np.ndarray) -> jax.Array:
    """One key per row from its global id (key[N]): a row's samples do not depend on batch layout."""
    base = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(row_ids, jnp.uint32))
