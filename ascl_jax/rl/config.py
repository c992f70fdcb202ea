"""Typed options of the RL stage: advantage estimator (IFPO by default), policy loss, and the step."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ascl_jax.errors import ConfigError
from ascl_jax.models.decoder import Remat
from ascl_jax.rl.advantages import (
    ESTIMATOR_OPTIONS,
    IFPO_ALPHA,
    IFPO_W_MAX,
    IFPO_W_MIN,
    BehaviourKind,
    EstimatorName,
    IfpoWeighting,
    Scale,
    Scope,
    check_ifpo_options,
)
from ascl_jax.rl.correction import CORRECTION_LEVELS, CORRECTION_MODES
from ascl_jax.rl.loss import Aggregation, KlEstimator, RatioLevel, SeqDenominator

# The choices of each field come from the module that implements them (its registry or Literal), so a name
# added there is valid here; correction.py keeps its names as tuples.
CorrectionLevel = Literal[CORRECTION_LEVELS]
CorrectionMode = Literal[CORRECTION_MODES]


@dataclass(frozen=True)
class AdvantageConfig:
    """`estimator` picks the registered function; the rest are its options (docs/design.md §1). behaviour: IFPO's
    key (consulted: any call, malformed too; consulted_ok: a call that returned rules; num_calls;
    category). weighting: IFPO's weight, "paper" (Eq. 3 of arXiv 2602.13562: (G/n_b)^alpha over its group
    mean) or "inverse_count" (the earlier (G/(K·n_b))^alpha; its exact former default is alpha 1.0, w_min
    and w_max null); alpha: the exponent (the paper's τ = 0.5); w_min, w_max: clip bounds of the weight
    (null: none), 0.5 and 3.0 by this project's choice, which at alpha 0.5 leaves every weight of a group
    of 8 unclipped (see ifpo_advantages). scale: std (the group's), batch (the batch's std, TRL's
    scale_rewards="batch") or none; std_ddof: 0, or 1 as verl and TRL; eps: added to the std (verl 1e-6,
    TRL 1e-4)."""

    estimator: EstimatorName = "ifpo"
    behaviour: BehaviourKind = "consulted"
    weighting: IfpoWeighting = "paper"
    alpha: float = IFPO_ALPHA
    w_min: float | None = IFPO_W_MIN
    w_max: float | None = IFPO_W_MAX
    scope: Scope = "group"
    scale: Scale = "std"
    positive_only: bool = False
    eps: float = 1e-6
    std_ddof: int = 0

    def __post_init__(self) -> None:
        if self.std_ddof not in (0, 1):
            raise ConfigError(f"rl.advantage.std_ddof must be 0 or 1, got {self.std_ddof}")
        check_ifpo_options(self.weighting, self.alpha, self.w_min, self.w_max, prefix="rl.advantage.")

    def estimator_options(self) -> dict:
        return {k: getattr(self, k) for k in ESTIMATOR_OPTIONS[self.estimator]}


@dataclass(frozen=True)
class LossConfig:
    """The policy loss (`rl/loss.py`): PPO clip bounds, dual clip, KL penalty (kl_clamp: bound on the
    per-token KL value, verl's 10 for k3), aggregation (seq_denominator: the sequence means over the rows
    with a loss token, "active", or over all rows, "all", as verl and TRL), and ratio_level: "token"
    (GRPO) or "sequence" (GSPO)."""

    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    kl_coef: float = 0.0  # 0: no reference model is kept
    kl_estimator: KlEstimator = "k1"
    kl_clamp: float | None = None
    agg: Aggregation = "token_mean"
    norm_constant: float | None = None
    seq_denominator: SeqDenominator = "active"
    ratio_level: RatioLevel = "token"

    def __post_init__(self) -> None:
        if self.kl_clamp is not None and self.kl_clamp <= 0:
            raise ConfigError(f"rl.loss.kl_clamp must be > 0 (verl: 10) or null, got {self.kl_clamp}")

    def loss_options(self) -> dict[str, Any]:
        """policy_loss's keyword options: every field, under its own name, so a field added here reaches the
        loss without a second list (tests/test_option_names.py checks the names against policy_loss)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class CorrectionConfig:
    """Sampler/trainer mismatch correction (`rl/correction.py`). level: none | token | sequence |
    geometric; mode: truncate (TIS) | mask (MIS); cap: the weight's upper bound C (verl 2.0, TRL 3.0);
    floor: mask mode's lower bound (null: 1/cap)."""

    level: CorrectionLevel = "none"
    mode: CorrectionMode = "truncate"
    cap: float = 2.0
    floor: float | None = None

    def __post_init__(self) -> None:
        if not self.cap > 0:
            raise ConfigError(f"rl.correction.cap must be > 0, got {self.cap}")
        if self.floor is not None and not 0 <= self.floor < self.cap:
            raise ConfigError(f"rl.correction.floor must be in [0, cap={self.cap}), got {self.floor}")


@dataclass(frozen=True)
class DynamicSamplingConfig:
    """DAPO's dynamic sampling: groups whose rollouts all got the same reward give no gradient; they are
    dropped and more prompts drawn until rl.prompts_per_step groups with a spread are in hand, at most
    max_draws rollout batches a step (the first included). Short after max_draws, the batch is filled up
    with dropped groups (no gradient, the shapes stay fixed)."""

    enabled: bool = False
    max_draws: int = 4

    def __post_init__(self) -> None:
        if self.max_draws < 1:
            raise ConfigError(f"rl.dynamic_sampling.max_draws must be >= 1, got {self.max_draws}")


@dataclass(frozen=True)
class OverlongConfig:
    """DAPO's soft over-long punishment: a completion of L tokens (everything after the prompt) within
    `buffer` tokens of the budget rollout.max_new_tokens gets a reward penalty rising linearly from 0 to
    `penalty` at the budget. buffer 0: off."""

    buffer: int = 0
    penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.buffer < 0:
            raise ConfigError(f"rl.overlong.buffer must be >= 0, got {self.buffer}")
        if self.penalty < 0:
            raise ConfigError(f"rl.overlong.penalty must be >= 0, got {self.penalty}")


@dataclass(frozen=True)
class RLConfig:
    """steps: optimizer steps of RL; prompts_per_step x rollout.group_size rollouts make a step's batch;
    epochs (mu): policy updates per batch; micro_batches: gradient accumulation per update (and micro-batches
    of the log-probability passes); remat: the decoder's rematerialisation in the update (none | full |
    dots_saveable | dots_with_no_batch_dims_saveable: less memory, more compute; `ascl plan` shows which fits);
    mask_truncated: rows that hit the token budget (stop reason length) are left out of the loss (DAPO's
    over-long filtering; they still count in their group's advantage baseline); overlong: DAPO's soft
    over-long reward penalty; correction: sampler/trainer mismatch correction (TIS / MIS);
    dynamic_sampling: DAPO's group filtering."""

    steps: int = 20
    prompts_per_step: int = 8
    epochs: int = 1
    micro_batches: int = 1
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    max_consecutive_skips: int = 3
    remat: Remat = "none"
    mask_truncated: bool = False
    overlong: OverlongConfig = field(default_factory=OverlongConfig)
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)

    def __post_init__(self) -> None:
        for name in ("prompts_per_step", "epochs", "micro_batches", "max_consecutive_skips"):
            if getattr(self, name) < 1:
                raise ConfigError(f"rl.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0:
            raise ConfigError(f"rl.steps must be >= 0, got {self.steps}")
