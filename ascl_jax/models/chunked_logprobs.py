"""Per-token log-probabilities and entropies without the [B, T, vocab] logits.

The tokens are cut into chunks of `chunk` positions and a scan projects one chunk at a time to its
float32 logits, reduces them to (log-probability of the target, entropy, whether the target is the
argmax) and drops them. The chunk body is rematerialised: the backward pass recomputes each chunk's
logits from its hidden states instead of keeping them, so the peak is one chunk's [B, chunk, V] logits
(and their cotangent) in the forward and the backward alike. At Qwen3's vocabulary (151,936) and 8,192
tokens a row's full logits are 4.9 GB in float32; a 512-token chunk's are 0.31 GB.

Fused cross-entropy kernels return a sum or a mean; RL needs every token's log-probability (the ratio,
the KL, the correction weights are per token), which is why this is a scan and not such a kernel.
"""

from __future__ import annotations

import numbers
from typing import Callable

import jax
import jax.numpy as jnp

from ascl_jax.errors import ConfigError

__all__ = ["token_stats"]


def _stats(logits: jax.Array, targets: jax.Array, temperature) -> tuple[jax.Array, jax.Array, jax.Array]:
    """logits f32[..., V], targets i32[...] -> (log-probability, entropy, target-is-argmax) f32[...] each."""
    x = logits.astype(jnp.float32)
    if not (isinstance(temperature, numbers.Real) and temperature == 1):
        x = x / temperature
    # The row max is subtracted from the picked logit and inside the sum separately, so large logits lose
    # no precision in `picked - lse`; it carries no gradient (the result does not depend on it).
    mx = jax.lax.stop_gradient(jnp.max(x, axis=-1))
    mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
    shifted = x - mx[..., None]
    log_z = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))
    picked = jnp.take_along_axis(shifted, targets.astype(jnp.int32)[..., None], axis=-1)[..., 0]
    probs = jnp.exp(shifted - log_z[..., None])
    entropy = log_z - jnp.sum(probs * shifted, axis=-1)
    hit = (jnp.argmax(x, axis=-1) == targets).astype(jnp.float32)
    return picked - log_z, entropy, hit


def token_stats(project: Callable[[jax.Array], jax.Array], hidden: jax.Array, targets: jax.Array, *,
                temperature: float = 1.0, chunk: int = 512) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Log-probability, entropy and argmax hit of each target under softmax(project(hidden) / temperature).

    Args:
      project: hidden [B, C, D] -> float32 logits [B, C, V] (the model's output head).
      hidden: [B, T, D] in the compute dtype; position t predicts targets[:, t].
      targets: i32[B, T], ids in [0, V).
      temperature: the sampling temperature (> 0).
      chunk: positions per chunk (0: all at once, the dense path).

    Returns:
      (logprob f32[B, T], entropy f32[B, T], hit f32[B, T]: 1 where the target is the argmax). The value
      and gradient equal those of the dense computation (tests/test_chunked_logprobs.py).
    """
    if isinstance(temperature, numbers.Real) and temperature <= 0:
        raise ConfigError(f"temperature={temperature!r} must be > 0 for log-probabilities")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
        raise ConfigError(f"logprob_chunk={chunk!r} must be a non-negative int (0: no chunking)")
    b, t = targets.shape
    if chunk == 0 or t <= chunk:
        return _stats(project(hidden), targets, temperature)
    n = -(-t // chunk)
    pad = n * chunk - t
    h = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0))).reshape(b, n, chunk, hidden.shape[-1]).swapaxes(0, 1)
    y = jnp.pad(targets, ((0, 0), (0, pad))).reshape(b, n, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def body(h_c, y_c):
        return _stats(project(h_c), y_c, temperature)

    _, out = jax.lax.scan(lambda c, xs: (c, body(*xs)), None, (h, y))
    return tuple(o.swapaxes(0, 1).reshape(b, n * chunk)[:, :t] for o in out)
