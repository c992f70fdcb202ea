"""The optimizer shared by SFT and RL: AdamW with linear warmup and cosine decay, global-norm clipping."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import optax

from ascl_jax.errors import ConfigError


@dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 1e-5
    warmup_steps: int = 0
    total_steps: int = 1000  # cosine decays to `min_lr_ratio * learning_rate` at this step
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ConfigError(f"optimizer.learning_rate must be > 0, got {self.learning_rate}")
        if self.total_steps < 1 or self.warmup_steps < 0 or self.warmup_steps > self.total_steps:
            raise ConfigError(
                f"optimizer: need 0 <= warmup_steps <= total_steps and total_steps >= 1, got "
                f"warmup_steps={self.warmup_steps}, total_steps={self.total_steps}"
            )
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError(f"optimizer.max_grad_norm must be > 0 or null, got {self.max_grad_norm}")


def learning_rate_schedule(cfg: OptimizerConfig) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if cfg.warmup_steps else cfg.learning_rate,
        peak_value=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.total_steps,
        end_value=cfg.learning_rate * cfg.min_lr_ratio,
    )


@functools.lru_cache(maxsize=None)
def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """One object per config (optax transformations are stateless): the jitted update step is static in
    it, so trainers built from equal configs in one process (a resumed run, `ascl compare`) share its
    compiled program instead of compiling it again."""
    parts = [] if cfg.max_grad_norm is None else [optax.clip_by_global_norm(cfg.max_grad_norm)]
    parts.append(optax.adamw(learning_rate_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay))
    return optax.chain(*parts)


def optimizer_state_shardings(tx: optax.GradientTransformation, params, mesh):
    """Shardings of the optimizer state: each moment like its parameter, scalars replicated. `params` may
    be real or abstract (ShapeDtypeStructs with shardings)."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    abstract = jax.eval_shape(tx.init, params)
    return optax.tree_utils.tree_map_params(
        tx, lambda _, p: p.sharding, abstract, params,
        transform_non_params=lambda _: NamedSharding(mesh, PartitionSpec()),
    )


def init_optimizer_state(tx: optax.GradientTransformation, params, mesh):
    """The optimizer state, each moment sharded like its parameter (scalars replicated).

    A plain jitted `tx.init` leaves the zeros replicated: on an FSDP mesh every device would hold the
    whole of Adam's moments, and the first update would compile again for the changed layout."""
    import jax

    with jax.set_mesh(mesh):
        return jax.jit(tx.init, out_shardings=optimizer_state_shardings(tx, params, mesh))(params)
