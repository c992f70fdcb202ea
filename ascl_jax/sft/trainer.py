"""Cold-start supervised training: the same update step, optimizer, checkpoints and metrics as RL."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import numpy as np

from ascl_jax.data.prompts import prompt_batches
from ascl_jax.errors import ConfigError
from ascl_jax.models.decoder import Remat
from ascl_jax.models.registry import LoadedModel
from ascl_jax.parallel.host import put_global
from ascl_jax.parallel.sharding import batch_sharding
from ascl_jax.sft.loss import sft_loss_fn
from ascl_jax.training.checkpoint import Checkpointer
from ascl_jax.training.metrics_log import MetricsLog
from ascl_jax.training.optimizer import OptimizerConfig
from ascl_jax.training.state import TrainerState
from ascl_jax.training.update import update_step


@dataclass(frozen=True)
class SFTConfig:
    """steps: optimizer steps (0 skips the stage); batch_size conversations a step; max_tokens: the
    longest example allowed (a longer one is an error; examples are padded to the data's longest,
    rounded up to 16); remat: the decoder's rematerialisation (none | full | dots_saveable |
    dots_with_no_batch_dims_saveable); packing: conversations packed into rows of max_tokens
    (`ascl_jax.sft.packing`), batch_size then counts packed rows."""

    steps: int = 300
    batch_size: int = 32
    micro_batches: int = 1
    max_tokens: int = 512
    remat: Remat = "none"
    packing: bool = False
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        learning_rate=3e-3, warmup_steps=20, total_steps=300, min_lr_ratio=0.1, weight_decay=0.0))

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.micro_batches < 1 or self.max_tokens < 8:
            raise ConfigError("sft: steps >= 0, batch_size >= 1, micro_batches >= 1 and max_tokens >= 8 are required")
        if self.batch_size % self.micro_batches:
            raise ConfigError(f"sft.micro_batches={self.micro_batches} must divide sft.batch_size={self.batch_size}")


class SFTTrainer(TrainerState):
    def __init__(self, model: LoadedModel, data: dict[str, np.ndarray], cfg: SFTConfig, seed: int,
                 metrics: MetricsLog | None = None, checkpointer: Checkpointer | None = None,
                 config_record: dict | None = None):
        """`data`: tokens i32[N, W] and loss_mask f32[N, W] (`ascl_jax.sft.data.pack_examples`), and for
        packed rows segments and positions i32[N, W] (`ascl_jax.sft.packing.pack_rows`)."""
        super().__init__(model, cfg.optimizer, checkpointer, config_record)
        self.data, self.cfg, self.metrics = data, cfg, metrics
        n = len(data["tokens"])
        # Real tokens per row: a packed row's segments; an unpadded row ends with its last loss token
        # (every conversation ends with the end-of-turn token it is trained to write).
        self.row_tokens = (np.count_nonzero(data["segments"] >= 0, axis=1) if "segments" in data else
                           np.where(data["loss_mask"].any(1), data["loss_mask"].shape[1] -
                                    np.argmax(data["loss_mask"][:, ::-1] > 0, axis=1), 0))
        self.batches = prompt_batches(n, min(cfg.batch_size, n), seed)
        self.loss_fn = sft_loss_fn(cfg.remat)
        self.step = 0

    def restore_latest(self) -> bool:
        meta = self.load_newest()
        if meta is None:
            return False
        self.step = int(meta["sft_step"])
        # Lines after a finished SFT stage belong to the next stage (RL), which truncates its own.
        if self.metrics is not None and self.step < self.cfg.steps:
            self.metrics.truncate_after(self.step)
        return True

    def run(self, checkpoint_every: int = 0, on_step: Callable[[int, dict], None] | None = None) -> None:
        while self.step < self.cfg.steps:
            t0 = time.perf_counter()
            idx = np.asarray(self.batches[self.step])
            batch = {k: put_global(v[idx], batch_sharding(self.model.mesh, self.model.rules, v[idx].shape))
                     for k, v in self.data.items()}
            with jax.set_mesh(self.model.mesh):
                self.params, self.opt_state, m = update_step(
                    self.model.graphdef, self.params, self.opt_state, batch, loss_fn=self.loss_fn, tx=self.tx,
                    num_micro=self.cfg.micro_batches, frozen=self.frozen,
                )
            tokens = max(float(m["token_count"]), 1.0)
            seconds = time.perf_counter() - t0
            metrics = {
                "sft/loss": float(m["loss"]),
                "sft/token_accuracy": float(m["correct_sum"]) / tokens,
                "sft/grad_norm": float(m["grad_norm"]),
                "sft/learning_rate": float(self.lr_schedule(self.step)),
                "sft/skipped": float(m["skipped"]),
                "sft/tokens_per_s": float(batch["tokens"].size) / seconds,
                "sft/real_tokens_per_s": float(self.row_tokens[idx].sum()) / seconds,  # padding left out
                "sft/padding_fraction": 1.0 - float(self.row_tokens[idx].sum()) / batch["tokens"].size,
            }
            self.step += 1
            if self.metrics is not None:
                self.metrics.write(self.step, metrics)
            if on_step is not None:
                on_step(self.step, metrics)
            if checkpoint_every and (self.step % checkpoint_every == 0 or self.step == self.cfg.steps):
                self.save_checkpoint(self.step, {"sft_step": self.step})
