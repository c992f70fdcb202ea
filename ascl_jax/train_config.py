"""The run config of `ascl train`: every stage's options in one typed tree, loaded from YAML with dotted
command-line overrides (`ascl train rl.rollout... rl.steps=40`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ascl_jax.data.demo import DemoConfig
from ascl_jax.errors import ConfigError
from ascl_jax.models.config import ComputeConfig
from ascl_jax.models.lora import LoRAConfig
from ascl_jax.parallel.mesh import MeshConfig
from ascl_jax.rl.config import AdvantageConfig, RLConfig
from ascl_jax.rl.paper_reward import PaperRewardConfig
from ascl_jax.rl.rewards import RewardConfig
from ascl_jax.rollout.sampling import SamplingConfig
from ascl_jax.rollout.tool_loop import RolloutConfig
from ascl_jax.sft.trainer import SFTConfig
from ascl_jax.training.optimizer import OptimizerConfig


@dataclass(frozen=True)
class DataConfig:
    """task "demo": the built-in task (see ascl_jax.data.demo). task "jsonl": your own files: `prompts`
    (RL prompts, ascl_jax.data.prompts format), `eval_prompts`, `sft` (cold-start conversations,
    ascl_jax.sft.data format; optional) and `rules` (a rule book; default: the built-in one)."""

    task: Literal["demo", "jsonl"] = "demo"
    prompts: str | None = None
    eval_prompts: str | None = None
    sft: str | None = None
    rules: str | None = None
    demo: DemoConfig = field(default_factory=DemoConfig)

    def __post_init__(self) -> None:
        if self.task == "jsonl" and not self.prompts:
            raise ConfigError("data.task=jsonl needs data.prompts (a JSONL file of prompts)")


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 10  # steps between checkpoints (0: only at the end of a stage)
    keep: int = 2
    # Where checkpoints go (default: RUN_DIR/checkpoints). A URL such as gs://BUCKET/PATH is written by
    # orbax and tensorstore directly, which is how multi-host TPU runs should keep them.
    directory: str | None = None


@dataclass(frozen=True)
class EvalConfig:
    """Greedy evaluation on the held-out prompts after each stage: all of them, or a fixed random
    `max_prompts` of them when there are more."""

    max_prompts: int = 96
    max_new_tokens: int = 96


@dataclass(frozen=True)
class LoggingConfig:
    """Where per-step metrics go besides metrics.jsonl: TensorBoard (RUN_DIR/tensorboard) and, when
    `wandb` is true, a Weights & Biases run (needs `pip install wandb`; its project and run name)."""

    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "ascl_jax"
    wandb_name: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    """model: a built-in name, .gguf file, HF folder or run folder; method: "ascl" (SFT cold start with the
    rule tool, then RL) or "context-distillation" (the baseline: SFT on conversations that recite the
    rules, no tool, no RL); lora: low-rank adapters (rank 0: full fine-tuning; rank > 0: the base weights
    stay frozen and only the adapters are trained and checkpointed); compute: the attention backend and
    the log-probability chunk (they change memory and speed, not results)."""

    model: str = "tiny"
    method: Literal["ascl", "context-distillation"] = "ascl"
    seed: int = 0
    run_dir: str = "runs/demo"
    dtype: Literal["float32", "bfloat16"] | None = None
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # 300 steps, the length of the SFT learning-rate schedule: the tiny model learns late to copy the
    # utility prompt's thing into its answer (seed 0: under half of the held-out utility prompts right
    # after 200 steps, all after 300). RL's 40 steps keep the whole demo near 10 minutes on 2 CPU cores.
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=300, batch_size=32, max_tokens=160))
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(
        group_size=8, max_prompt_tokens=96, max_new_tokens=96, max_tool_calls=2, max_tool_response_tokens=48,
        decode_chunk=16, sampling=SamplingConfig(temperature=1.0)))
    rl: RLConfig = field(default_factory=lambda: RLConfig(steps=40, prompts_per_step=8, advantage=AdvantageConfig()))
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        learning_rate=1e-4, warmup_steps=0, total_steps=40, min_lr_ratio=0.5, max_grad_norm=1.0))
    # The paper's reward (Eq. 1 of arXiv 2602.13562), with no cost per tool call. Its utility term is 0:
    # the paper trains RL on harmful and sensitive prompts only, and the demo's utility prompts, which
    # share the training split with the cold start, are to be evaluated, not rewarded.
    rewards: RewardConfig = field(default_factory=lambda: RewardConfig(
        preset="paper", paper=PaperRewardConfig(utility=0.0)))
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
