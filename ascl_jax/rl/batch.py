"""From trajectories to the arrays of an update: packing, the trainer's log-probabilities, the RL loss."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ascl_jax.models.decoder import Remat
from ascl_jax.rl.config import LossConfig
from ascl_jax.rl.loss import policy_loss
from ascl_jax.rollout.trajectory import Trajectory


def pack_width(lengths: Sequence[int], minimum: int = 64, step: int = 2048) -> int:
    """Padded width: the next power of two up to `step`, then the next multiple of `step`, so a run
    compiles its update for a few widths only and a reasoning-length row (1,024 + 8,192 tokens: 10,240
    wide) does not pay for the next power of two (16,384)."""
    width = minimum
    while width < max(lengths) and width < step:
        width *= 2
    return width if width >= max(lengths) else -(-max(lengths) // step) * step


def pack(trajectories: Sequence[Trajectory], pad_id: int) -> dict[str, np.ndarray]:
    """tokens i32[B, W], loss_mask f32[B, W], sampler_logprobs f32[B, W] (right-padded)."""
    width = pack_width([len(t.tokens) for t in trajectories])
    b = len(trajectories)
    tokens = np.full((b, width), pad_id, np.int32)
    mask = np.zeros((b, width), np.float32)
    sampler = np.zeros((b, width), np.float32)
    for i, t in enumerate(trajectories):
        n = len(t.tokens)
        tokens[i, :n] = t.tokens
        mask[i, :n] = t.loss_mask
        sampler[i, :n] = t.sampler_logprobs
    return {"tokens": tokens, "loss_mask": mask, "sampler_logprobs": sampler}


def _shifted_logprobs(model: nnx.Module, tokens: jax.Array, temperature: float,
                      remat: Remat = "none") -> tuple[jax.Array, jax.Array]:
    """(logprobs f32[B, W], entropy f32[B, W]): position t holds token t's log-probability given tokens < t
    (position 0 holds 0), and the entropy of that predictive distribution. The head runs chunk by chunk
    (`ModelConfig.logprob_chunk`): the [B, W, V] logits are never held whole."""
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    hidden, _ = model.hidden_states(tokens, positions, remat=remat)
    lp, entropy, _ = model.token_stats(hidden[:, :-1], tokens[:, 1:], temperature)
    pad = jnp.zeros((tokens.shape[0], 1), jnp.float32)
    return jnp.concatenate([pad, lp], axis=1), jnp.concatenate([pad, entropy], axis=1)


@functools.partial(jax.jit, static_argnames=("graphdef", "temperature", "num_micro"))
def sequence_logprobs(graphdef, params, tokens, *, temperature: float, num_micro: int):
    """Log-probabilities and entropies f32[B, W] of `tokens` under `params`, micro-batch by micro-batch."""
    b, w = tokens.shape
    micro = tokens.reshape(num_micro, b // num_micro, w)
    model = nnx.merge(graphdef, params)
    lp, ent = jax.lax.map(lambda t: _shifted_logprobs(model, t, temperature), micro)
    return lp.reshape(b, w), ent.reshape(b, w)


def rl_loss(model: nnx.Module, mb: dict[str, jax.Array], *, loss: LossConfig, temperature: float,
            remat: Remat = "none"):
    """The policy loss of one micro-batch as (numerator, denominator, metric sums); `remat` is the decoder's
    rematerialisation policy.

    mb: tokens i32[b, W], loss_mask f32[b, W], old_logprobs f32[b, W], advantages f32[b];
    ref_logprobs f32[b, W] when loss.kl_coef > 0; is_weights f32[b, W] under a mismatch correction."""
    lp, _ = _shifted_logprobs(model, mb["tokens"], temperature, remat)
    return policy_loss(
        lp, mb["old_logprobs"], mb["advantages"], mb["loss_mask"],
        ref_logprobs=mb.get("ref_logprobs"), is_weights=mb.get("is_weights"), **loss.loss_options(),
    )
