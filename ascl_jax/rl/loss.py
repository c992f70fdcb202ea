"""Token log-probabilities and the clipped policy-gradient loss shared by GRPO, Dr.GRPO and IFPO
(docs/design.md §2).

The loss is returned as a (numerator, denominator) pair, never as a ratio: the loss a step minimises is
sum(numerators) / sum(denominators) over the whole global batch (all micro-batches, devices and hosts).
The denominators depend only on the loss masks, not on the parameters, so the gradient is
sum(grad numerators) / sum(denominators) and does not depend on how the batch was split.
"""

from __future__ import annotations

import numbers
from typing import Callable, Literal, get_args

import jax
import jax.numpy as jnp

from ascl_jax.errors import ConfigError
from ascl_jax.models.chunked_logprobs import token_stats

__all__ = ["KL_ESTIMATORS", "LOSS_AGGREGATIONS", "RATIO_LEVELS", "SEQ_DENOMINATORS", "Aggregation", "KlEstimator",
           "RatioLevel", "SeqDenominator", "policy_loss", "token_logprobs"]

_LOG_RATIO_CLIP = 20.0  # exp(±20) stays finite in float32; a larger step is meaningless anyway


def token_logprobs(logits: jax.Array, targets: jax.Array, *, temperature: float = 1.0) -> jax.Array:
    """log softmax(logits / temperature)[targets], per position.

    Args:
      logits: f32[B, T, V] (bf16 is upcast to float32).
      targets: i32[B, T], ids in [0, V); positions that the loss mask drops may hold any valid id.
      temperature: the sampling temperature (> 0) the rollout used, so that the ratio compares like with
        like.

    Returns:
      f32[B, T].

    Computed as the gathered logit minus logsumexp over the vocabulary (max-shifted, so stable) by
    `ascl_jax.models.chunked_logprobs`, the head SFT and RL use; under jit no [B, T, V] log-softmax copy
    is built next to the logits.
    """
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"token_logprobs wants logits [B, T, V] and targets [B, T], got {logits.shape} and {targets.shape}")
    # One formula for every log-probability in the project: the chunked head's, on logits already made
    # (its entropy and argmax outputs are dead code under jit).
    return token_stats(lambda x: x, logits, targets, temperature=temperature, chunk=0)[0]


# --- aggregations: (per-token loss [B, T], mask [B, T], norm_constant, all_rows) -> (numerator, denominator) -
# all_rows: the sequence means divide by every row of the batch, rows without a loss token included (verl's
# and TRL's convention), instead of by the rows that have one.


def _rows(mask, all_rows):
    if all_rows:
        return jnp.float32(mask.shape[0])
    return jnp.sum((jnp.sum(mask, axis=1) > 0).astype(jnp.float32))


def _token_mean(loss, mask, norm_constant, all_rows):
    del norm_constant, all_rows
    return jnp.sum(mask * loss), jnp.sum(mask)


def _seq_mean_token_mean(loss, mask, norm_constant, all_rows):
    del norm_constant
    tokens = jnp.sum(mask, axis=1)
    has = tokens > 0
    per_seq = jnp.sum(mask * loss, axis=1) / jnp.where(has, tokens, 1.0)
    return jnp.sum(jnp.where(has, per_seq, 0.0)), _rows(mask, all_rows)


def _seq_mean_token_sum_norm(loss, mask, norm_constant, all_rows):
    # Dr.GRPO: each sequence's token sum over a constant that does not depend on its length (default: the
    # padded length T; pass the max response length explicitly when micro-batches are padded to
    # different lengths, or the split would change the loss). Sequences without any loss token are not
    # counted (unless all_rows), so rows that only pad the batch out to the device count change nothing.
    c = loss.shape[1] if norm_constant is None else norm_constant
    return jnp.sum(mask * loss) / c, _rows(mask, all_rows)


LOSS_AGGREGATIONS: dict[str, Callable] = {
    "token_mean": _token_mean,
    "seq_mean_token_mean": _seq_mean_token_mean,
    "seq_mean_token_sum_norm": _seq_mean_token_sum_norm,
}
# The config's field types (rl/config.py LossConfig) are these Literals; each list of names is written once.
Aggregation = Literal[tuple(LOSS_AGGREGATIONS)]
SeqDenominator = Literal["active", "all"]
RatioLevel = Literal["token", "sequence"]
SEQ_DENOMINATORS: tuple[str, ...] = get_args(SeqDenominator)
RATIO_LEVELS: tuple[str, ...] = get_args(RatioLevel)


def _kl_k1(logprobs, ref_logprobs):
    return logprobs - ref_logprobs


def _kl_k3(logprobs, ref_logprobs):
    # Schulman's k3 (>= 0, unbiased, low variance); the log-ratio is clipped like the policy ratio so
    # that exp cannot overflow.
    d = jnp.clip(ref_logprobs - logprobs, -_LOG_RATIO_CLIP, _LOG_RATIO_CLIP)
    return jnp.exp(d) - d - 1.0


KL_ESTIMATORS: dict[str, Callable] = {"k1": _kl_k1, "k3": _kl_k3}
KlEstimator = Literal[tuple(KL_ESTIMATORS)]


def _is_zero(x) -> bool:
    return isinstance(x, numbers.Real) and x == 0


def policy_loss(
    logprobs: jax.Array,
    old_logprobs: jax.Array,
    advantages: jax.Array,
    loss_mask: jax.Array,
    *,
    ref_logprobs: jax.Array | None = None,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    kl_coef: float = 0.0,
    kl_estimator: KlEstimator = "k1",
    agg: Aggregation = "token_mean",
    norm_constant: float | None = None,
    ratio_level: RatioLevel = "token",
    kl_clamp: float | None = None,
    seq_denominator: SeqDenominator = "active",
    is_weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """PPO-clip policy loss with optional dual clip and KL penalty, as a (numerator, denominator) pair.

    Per loss token (ℓ = logprobs, ℓ_old = old_logprobs, A = the row's advantage, m = loss_mask):
        token ratio:    ρ_t = exp(clip(ℓ_t − ℓ_old,t, −20, 20))
        sequence ratio (GSPO, Zheng et al. 2025; verl's gspo loss, TRL importance_sampling_level="sequence"):
                        s = exp(Σ_t m·(ℓ − ℓ_old) / Σ_t m), and per token ρ_t = exp(clip(ℓ_t − sg(ℓ_t) + sg(log s),
                        −20, 20)): every token's ratio is the sequence's, its gradient s·∇ℓ_t (GSPO-token)
        L = max(−A·ρ, −A·clip(ρ, 1 − clip_low, 1 + clip_high))
        dual clip c > 1 (as verl / tunix): for A < 0, L = min(L, −A·c)
        mismatch correction: L ← w·L with the given (detached) importance weights w (see rl/correction.py)
        KL: k1 = ℓ − ℓ_ref, or k3 = exp(d) − d − 1 with d = clip(ℓ_ref − ℓ, −20, 20), then optionally
            clipped to [−kl_clamp, kl_clamp] (verl clamps k3 at 10); L += kl_coef · KL
    Aggregation over the mask m (S = rows with at least one loss token, or all B rows when seq_denominator
    is "all", as verl and TRL count):
        token_mean:              num = Σ m·L,                          den = Σ m
        seq_mean_token_mean:     num = Σ_{i∈S} Σ_t m·L / Σ_t m,        den = |S|
        seq_mean_token_sum_norm: num = Σ m·L / norm_constant (def. T), den = |S|   (Dr.GRPO)
    GSPO's paper aggregates with seq_mean_token_mean (verl forces it); with token_mean the ratio is still
    the sequence's but longer rows weigh more.

    Args:
      logprobs: f32[B, T] under the policy being trained (differentiated).
      old_logprobs: f32[B, T] under the policy that sampled (no gradient flows into them).
      advantages: f32[B] (broadcast over the row's tokens) or f32[B, T].
      loss_mask: f32[B, T] (bool/int accepted); 1 on tokens the policy sampled. Masked positions may hold
        any values (even nan/inf): they are replaced before use, so neither loss nor gradient sees them.
      ref_logprobs: f32[B, T] under the reference policy, or None (then kl_coef must be 0).
      clip_low, clip_high: ε_low, ε_high >= 0.
      dual_clip: c > 1, or None.
      kl_coef: β.
      kl_estimator: "k1" or "k3".
      agg: one of LOSS_AGGREGATIONS.
      norm_constant: the Dr.GRPO constant for "seq_mean_token_sum_norm" (ignored otherwise).
      ratio_level: "token" (PPO, GRPO) or "sequence" (GSPO).
      kl_clamp: bound on |KL| per token (> 0), or None.
      seq_denominator: "active" (rows with a loss token) or "all" (every row), for the sequence means.
      is_weights: f32[B, T] >= 0, the sampler-mismatch importance weights (no gradient), or None.

    Returns:
      (numerator f32[], denominator f32[], metrics) where metrics are sums and counts that add across
      micro-batches: token_count, seq_count, pg_loss_sum, kl_sum, ratio_sum, ppo_kl_sum (Σ ℓ_old − ℓ),
      neg_logprob_sum, advantage_sum, clip_frac_sum (clipped term active), clip_low_frac_sum (A < 0,
      ρ < 1 − ε_low), clip_high_frac_sum (A > 0, ρ > 1 + ε_high), dual_clip_frac_sum, and
      seq_ratio_sum / seq_ratio_dev_sum (Σ over rows with a loss token of s and of |s − 1|; divide by
      seq_count). Divide a token *_sum by the summed token_count for a mean.
    """
    if ratio_level not in RATIO_LEVELS:
        raise ConfigError(f"ratio_level={ratio_level!r} is not valid; choose one of {', '.join(map(repr, RATIO_LEVELS))}")
    if seq_denominator not in SEQ_DENOMINATORS:
        raise ConfigError(f"seq_denominator={seq_denominator!r} is not valid; choose one of "
                          f"{', '.join(map(repr, SEQ_DENOMINATORS))}")
    if kl_clamp is not None and isinstance(kl_clamp, numbers.Real) and kl_clamp <= 0:
        raise ConfigError(f"kl_clamp={kl_clamp!r} must be > 0 (verl uses 10), or None for no clamp")
    if kl_estimator not in KL_ESTIMATORS:
        raise ConfigError(f"kl_estimator={kl_estimator!r} is not valid; choose one of {', '.join(map(repr, KL_ESTIMATORS))}")
    if agg not in LOSS_AGGREGATIONS:
        raise ConfigError(f"agg={agg!r} is not valid; choose one of {', '.join(map(repr, LOSS_AGGREGATIONS))}")
    for name, value in (("clip_low", clip_low), ("clip_high", clip_high)):
        if isinstance(value, numbers.Real) and value < 0:
            raise ConfigError(f"{name}={value!r} must be >= 0")
    if dual_clip is not None and isinstance(dual_clip, numbers.Real) and dual_clip <= 1:
        raise ConfigError(f"dual_clip={dual_clip!r} must be > 1 (it bounds −A·ρ for A < 0), or None to disable")
    if norm_constant is not None and isinstance(norm_constant, numbers.Real) and norm_constant <= 0:
        raise ConfigError(f"norm_constant={norm_constant!r} must be > 0 (or None for the padded length T)")
    if ref_logprobs is None and not _is_zero(kl_coef):
        raise ConfigError(f"kl_coef={kl_coef!r} needs ref_logprobs (a reference policy); set kl_coef to 0 or pass them")

    logprobs = jnp.asarray(logprobs, jnp.float32)
    if logprobs.ndim != 2:
        raise ValueError(f"logprobs must be [B, T], got shape {logprobs.shape}")
    for name, x in (("old_logprobs", old_logprobs), ("loss_mask", loss_mask), ("ref_logprobs", ref_logprobs),
                    ("is_weights", is_weights)):
        if x is not None and jnp.shape(x) != logprobs.shape:
            raise ValueError(f"{name} has shape {jnp.shape(x)}, logprobs {logprobs.shape}: they must match")
    adv = jnp.asarray(advantages, jnp.float32)
    if adv.shape == logprobs.shape[:1]:
        adv = adv[:, None]
    elif adv.shape != logprobs.shape:
        raise ValueError(f"advantages must be [B] or [B, T], got {adv.shape} for logprobs {logprobs.shape}")

    mask = jnp.asarray(loss_mask).astype(jnp.float32)
    on = mask > 0
    # Replace masked positions *before* any arithmetic: 0·nan is nan, and a where after the fact would
    # still send nan into the gradient through the branch it discarded.
    lp = jnp.where(on, logprobs, 0.0)
    old = jax.lax.stop_gradient(jnp.where(on, jnp.asarray(old_logprobs, jnp.float32), 0.0))

    sg = jax.lax.stop_gradient
    tokens = jnp.sum(mask, axis=1)
    has = tokens > 0
    seq_log_ratio = sg(jnp.sum(mask * (lp - old), axis=1) / jnp.where(has, tokens, 1.0))
    if ratio_level == "sequence":
        log_ratio = jnp.clip(lp - sg(lp) + seq_log_ratio[:, None], -_LOG_RATIO_CLIP, _LOG_RATIO_CLIP)
    else:
        log_ratio = jnp.clip(lp - old, -_LOG_RATIO_CLIP, _LOG_RATIO_CLIP)
    ratio = jnp.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    pg = jnp.maximum(unclipped, clipped)
    if dual_clip is not None:
        bound = -adv * dual_clip
        dual_active = (adv < 0) & (pg > bound)
        pg = jnp.where(adv < 0, jnp.minimum(pg, bound), pg)
    else:
        dual_active = jnp.zeros(pg.shape, bool)
    if is_weights is not None:
        pg = pg * sg(jnp.where(on, jnp.asarray(is_weights, jnp.float32), 0.0))

    if ref_logprobs is not None:
        ref = sg(jnp.where(on, jnp.asarray(ref_logprobs, jnp.float32), 0.0))
        kl = KL_ESTIMATORS[kl_estimator](lp, ref)
        if kl_clamp is not None:
            kl = jnp.clip(kl, -kl_clamp, kl_clamp)
    else:
        kl = jnp.zeros_like(pg)
    per_token = pg if _is_zero(kl_coef) else pg + kl_coef * kl

    numerator, denominator = LOSS_AGGREGATIONS[agg](per_token, mask, norm_constant, seq_denominator == "all")

    def msum(x):
        return sg(jnp.sum(mask * x))

    adv_b = jnp.broadcast_to(adv, pg.shape)
    seq_ratio = jnp.exp(jnp.clip(seq_log_ratio, -_LOG_RATIO_CLIP, _LOG_RATIO_CLIP))
    metrics = {
        "token_count": sg(jnp.sum(mask)),
        "seq_count": sg(jnp.sum(has.astype(jnp.float32))),
        "pg_loss_sum": msum(pg),
        "kl_sum": msum(kl),
        "ratio_sum": msum(ratio),
        "ppo_kl_sum": msum(old - lp),
        "neg_logprob_sum": msum(-lp),
        "advantage_sum": msum(adv_b),
        "clip_frac_sum": msum((clipped > unclipped).astype(jnp.float32)),
        "clip_low_frac_sum": msum(((adv_b < 0) & (ratio < 1.0 - clip_low)).astype(jnp.float32)),
        "clip_high_frac_sum": msum(((adv_b > 0) & (ratio > 1.0 + clip_high)).astype(jnp.float32)),
        "dual_clip_frac_sum": msum(dual_active.astype(jnp.float32)),
        "seq_ratio_sum": sg(jnp.sum(jnp.where(has, seq_ratio, 0.0))),
        "seq_ratio_dev_sum": sg(jnp.sum(jnp.where(has, jnp.abs(seq_ratio - 1.0), 0.0))),
    }
    return numerator, denominator, metrics
