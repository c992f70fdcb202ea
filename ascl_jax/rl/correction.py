"""Sampler/trainer mismatch correction: importance weights between the policy as the trainer computes it
and as the rollout engine sampled it.

The rollout engine and the update compute the same policy's log-probabilities with different programs
(a decode step over a KV cache against a full forward, other fusions, bf16 rounding), so the tokens were
drawn from a slightly different distribution π_sampler than the π_old the PPO ratio starts from. With
ρ = π_old / π_sampler (the trainer's log-probability at the rollout's weights minus the sampler's):

    level "token":     w_t = ρ_t
    level "sequence":  w_t = Π_t ρ_t = exp(Σ_t m·(ℓ_old − ℓ_sampler)) for every token of the row
    level "geometric": w_t = exp(Σ_t m·(ℓ_old − ℓ_sampler) / Σ_t m) (the per-token geometric mean)
    mode "truncate" (TIS): w ← min(w, cap)                               (verl rollout_is, TRL *_truncate)
    mode "mask" (MIS):     tokens with w outside [floor, cap] (floor default 1/cap) leave the loss mask
                           (numerator and denominator, as verl's rollout_rs); the others keep w.

The weights multiply the clipped policy-gradient term per token (not the KL term), detached; log-ratios
are clipped to ±20 before exp, as verl does."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ascl_jax.errors import ConfigError

__all__ = ["CORRECTION_LEVELS", "CORRECTION_MODES", "mismatch_weights"]

CORRECTION_LEVELS = ("none", "token", "sequence", "geometric")
CORRECTION_MODES = ("truncate", "mask")
_LOG_CLIP = 20.0


def mismatch_weights(
    trainer_logprobs: jax.Array,
    sampler_logprobs: jax.Array,
    loss_mask: jax.Array,
    *,
    level: str,
    mode: str = "truncate",
    cap: float = 2.0,
    floor: float | None = None,
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """Importance weights of the sampled tokens (see the module docstring).

    Args:
      trainer_logprobs: f32[B, T], ℓ_old: the trainer's log-probabilities at the weights that sampled.
      sampler_logprobs: f32[B, T], the rollout engine's.
      loss_mask: f32[B, T], 1 on sampled tokens; other positions may hold anything.
      level: "token", "sequence" or "geometric".
      mode: "truncate" or "mask".
      cap, floor: the bounds (floor None: 1/cap; used by mask only).

    Returns:
      (weights f32[B, T] (0 off the mask), loss_mask f32[B, T] (the input's, less the masked tokens),
      metrics of sums over the input mask's tokens and rows: is_token_count, is_seq_count,
      is_weight_sum (raw w, before truncation), is_weight_max, is_weight_min, is_bounded_sum (tokens
      whose w was truncated or masked), is_bounded_seq_sum (rows with at least one), log_ratio_abs_sum).
    """
    if level not in CORRECTION_LEVELS[1:]:
        raise ConfigError(f"level={level!r} is not valid; choose one of {', '.join(map(repr, CORRECTION_LEVELS[1:]))}")
    if mode not in CORRECTION_MODES:
        raise ConfigError(f"mode={mode!r} is not valid; choose one of {', '.join(map(repr, CORRECTION_MODES))}")
    mask = jnp.asarray(loss_mask, jnp.float32)
    on = mask > 0
    d = jnp.where(on, jnp.asarray(trainer_logprobs, jnp.float32) - jnp.asarray(sampler_logprobs, jnp.float32), 0.0)
    tokens = jnp.sum(mask, axis=1, keepdims=True)
    has = tokens > 0
    if level == "token":
        log_w = d
    elif level == "sequence":
        log_w = jnp.broadcast_to(jnp.sum(d, axis=1, keepdims=True), d.shape)
    else:
        log_w = jnp.broadcast_to(jnp.sum(d, axis=1, keepdims=True) / jnp.where(has, tokens, 1.0), d.shape)
    raw = jnp.exp(jnp.clip(log_w, -_LOG_CLIP, _LOG_CLIP))
    if mode == "truncate":
        bounded = raw > cap
        weights = jnp.minimum(raw, cap)
        new_mask = mask
    else:
        lo = 1.0 / cap if floor is None else floor
        bounded = (raw > cap) | (raw < lo)
        weights = raw
        new_mask = jnp.where(bounded, 0.0, mask)
    bounded = bounded & on
    weights = jax.lax.stop_gradient(jnp.where(new_mask > 0, weights, 0.0))
    metrics = {
        "is_token_count": jnp.sum(mask),
        "is_seq_count": jnp.sum(has.astype(jnp.float32)),
        "is_weight_sum": jnp.sum(jnp.where(on, raw, 0.0)),
        "is_weight_max": jnp.max(jnp.where(on, raw, -jnp.inf)),
        "is_weight_min": jnp.min(jnp.where(on, raw, jnp.inf)),
        "is_bounded_sum": jnp.sum(bounded.astype(jnp.float32)),
        "is_bounded_seq_sum": jnp.sum(jnp.any(bounded, axis=1).astype(jnp.float32)),
        "log_ratio_abs_sum": jnp.sum(jnp.abs(d)),
    }
    return weights, new_mask, metrics
