"""The state the SFT and RL trainers share: the model's parameters split into a trained and a frozen part,
the optimizer and its state, and loading and saving them through a checkpointer."""

from __future__ import annotations

import dataclasses
from typing import Any

from ascl_jax.models.lora import join, trainable_split
from ascl_jax.models.registry import LoadedModel
from ascl_jax.training.checkpoint import Checkpointer, model_record, restore_newest
from ascl_jax.training.optimizer import (
    OptimizerConfig,
    init_optimizer_state,
    learning_rate_schedule,
    make_optimizer,
)


class TrainerState:
    """Parameters and optimizer of a trainer, set up from `model` and `optimizer`.

    `params`: the trained part of the model's nnx.State, `frozen` the rest (with LoRA adapters, the base
    weights; otherwise an empty state), each array with the model's dtype and sharding; the model is
    `join(params, frozen)`. `opt_state`: the optax state of `tx` for `params`, each moment sharded like
    its parameter. `lr_schedule(step)`: the learning rate (f32[]) of optimizer step `step`."""

    def __init__(self, model: LoadedModel, optimizer: OptimizerConfig, checkpointer: Checkpointer | None = None,
                 config_record: dict[str, Any] | None = None):
        """`config_record`: the resolved run config, saved in each checkpoint's meta; its `model` and `lora`
        sections must match when restoring."""
        self.model, self.checkpointer = model, checkpointer
        self.config_record = config_record or {}
        self.tx = make_optimizer(optimizer)
        self.lr_schedule = learning_rate_schedule(optimizer)
        # With LoRA adapters only they are trained (and optimised and checkpointed); the base stays frozen.
        self.params, self.frozen = trainable_split(model.params)
        self.opt_state = init_optimizer_state(self.tx, self.params, model.mesh)

    def load_newest(self) -> dict[str, Any] | None:
        """Replace `params` and `opt_state` by the newest checkpoint's and return its meta; None (nothing
        changed) without a checkpointer or a checkpoint."""
        restored = restore_newest(self.checkpointer, self.params, self.opt_state, self.config_record,
                                  self.model.config)
        if restored is None:
            return None
        self.params, self.opt_state, meta = restored
        return meta

    def save_checkpoint(self, step: int, meta: dict[str, Any]) -> None:
        """Checkpoint `params` and `opt_state` as `step`, with `meta` plus the run config and the model's
        config (what `load_newest` checks); nothing without a checkpointer."""
        if self.checkpointer is None:
            return
        self.checkpointer.save(step, self.params, self.opt_state,
                               {**meta, "config": self.config_record, "model_config": model_record(self.model.config)})

    def current_model(self) -> LoadedModel:
        """The model with the trained parameters."""
        return dataclasses.replace(self.model, params=join(self.params, self.frozen))
