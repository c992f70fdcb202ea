"""Low-rank adapters (LoRA, Hu et al. 2021) on the decoder's projections.

A targeted kernel W [in, out] gains A [in, r] and B [r, out]; the projection computes
x @ W + (x @ A) @ B * (alpha / r). B starts at zero, so a fresh adapter leaves the model unchanged
(PEFT's default initialisation: A uniform in +-1/sqrt(in), B zero). Adapters are `LoRAParam`s, a kind of
`nnx.Param`: a state that holds any of them trains them alone and keeps every other parameter frozen
(`trainable_split`); the rollout applies them on the fly, never merging per step."""

from __future__ import annotations

from dataclasses import dataclass

from flax import nnx

from ascl_jax.errors import ConfigError

ATTENTION_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
ALL_TARGETS = ATTENTION_TARGETS + MLP_TARGETS


class LoRAParam(nnx.Param):
    """An adapter matrix: trained while the base parameters stay frozen."""


@dataclass(frozen=True)
class LoRAConfig:
    """rank 0: no adapters (full fine-tuning). alpha: the scale numerator (scale = alpha / rank).
    targets: the projections that get adapters (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)."""

    rank: int = 0
    alpha: float = 16.0
    targets: tuple[str, ...] = ALL_TARGETS

    def __post_init__(self) -> None:
        if self.rank < 0:
            raise ConfigError(f"lora.rank must be >= 0 (0: no adapters), got {self.rank}")
        if self.rank and self.alpha <= 0:
            raise ConfigError(f"lora.alpha must be > 0, got {self.alpha}")
        bad = [t for t in self.targets if t not in ALL_TARGETS]
        if bad or not self.targets:
            raise ConfigError(f"lora.targets: unknown {bad or '(empty)'}; choose among {', '.join(ALL_TARGETS)}")
        object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    @property
    def scale(self) -> float:
        return self.alpha / self.rank if self.rank else 0.0

    def targets_of(self, module: str) -> tuple[str, ...]:
        """The targeted projections of "attn" or "mlp"."""
        names = ATTENTION_TARGETS if module == "attn" else MLP_TARGETS
        return tuple(t for t in names if self.enabled and t in self.targets)


def has_adapters(state: nnx.State) -> bool:
    return any(isinstance(v, LoRAParam) for _, v in nnx.to_flat_state(state))


def trainable_split(state: nnx.State) -> tuple[nnx.State, nnx.State]:
    """(trainable, frozen): the adapters and everything else when the state holds adapters, otherwise
    every parameter and an empty state."""
    if not has_adapters(state):
        return state, nnx.State({})
    return nnx.split_state(state, LoRAParam, ...)


def join(trainable: nnx.State, frozen: nnx.State) -> nnx.State:
    """The whole state again (inverse of `trainable_split`)."""
    return nnx.merge_state(trainable, frozen)
