"""Typed options of the RL stage: advantage estimator (IFPO by default), policy loss, and the step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ascl_jax.errors import ConfigError
from ascl_jax.models.decoder import Remat

# The options each registered estimator takes (see ascl_jax.rl.advantages.ADVANTAGE_ESTIMATORS).
_ESTIMATOR_OPTIONS = {
    "grpo": ("scale", "eps"),
    "drgrpo": ("eps",),
    "rloo": (),
    "ifpo": ("alpha", "max_weight", "scope", "scale", "positive_only", "eps"),
}


@dataclass(frozen=True)
class AdvantageConfig:
    """`estimator` picks the registered function; the rest are IFPO's options (DESIGN §1)."""

    estimator: Literal["grpo", "drgrpo", "rloo", "ifpo"] = "ifpo"
    behaviour: Literal["consulted", "num_calls", "category"] = "consulted"
    alpha: float = 1.0
    max_weight: float | None = None
    scope: Literal["group", "batch"] = "group"
    scale: Literal["std", "none"] = "std"
    positive_only: bool = False
    eps: float = 1e-6

    def estimator_options(self) -> dict:
        return {k: getattr(self, k) for k in _ESTIMATOR_OPTIONS[self.estimator]}


@dataclass(frozen=True)
class LossConfig:
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    kl_coef: float = 0.0  # 0: no reference model is kept
    kl_estimator: Literal["k1", "k3"] = "k1"
    agg: Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"] = "token_mean"
    norm_constant: float | None = None


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
    over-long reward penalty."""

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

    def __post_init__(self) -> None:
        for name in ("prompts_per_step", "epochs", "micro_batches", "max_consecutive_skips"):
            if getattr(self, name) < 1:
                raise ConfigError(f"rl.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0:
            raise ConfigError(f"rl.steps must be >= 0, got {self.steps}")
