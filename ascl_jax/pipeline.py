"""The whole method as `ascl train` runs it: build the model, cold-start it by SFT, evaluate, train by RL,
evaluate again, and write the run folder (resolved config, metrics, checkpoints, final model, report).

A killed run restarted with the same config resumes from its checkpoints: the SFT stage is skipped once
done, RL continues at its last checkpoint, and the evaluations are recomputed (they are deterministic)."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import yaml
from etils import epath

from ascl_jax.chat.formats import ChatFormat, chat_format
from ascl_jax.config_io import to_dict
from ascl_jax.data import demo
from ascl_jax.data.prompts import check_output_folder, load_prompts
from ascl_jax.errors import ConfigError, UserError
from ascl_jax.eval.benchmarks import stratified_subset
from ascl_jax.eval.rollout_eval import check_positions, evaluate
from ascl_jax.models.lora_export import write_peft_adapter
from ascl_jax.models.config import ModelConfig
from ascl_jax.models.registry import RUN_MODEL_DIR, LoadedModel, export_hf, load_model
from ascl_jax.parallel.host import sync_processes
from ascl_jax.parallel.mesh import make_mesh
from ascl_jax.rl.rewards import RewardFunction
from ascl_jax.rl.trainer import RLSettings, RLTrainer
from ascl_jax.rollout.trajectory import Prompt
from ascl_jax.rules import TOOL_NAME, RuleTool, default_rulebook, load_rulebook, make_tool
from ascl_jax.sft.data import Conversation, encode_conversation, load_conversations, pack_examples
from ascl_jax.sft.packing import pack_rows
from ascl_jax.sft.trainer import SFTTrainer
from ascl_jax.train_config import TrainConfig
from ascl_jax.training.checkpoint import Checkpointer
from ascl_jax.training.metrics_log import MetricsLog, start_wandb, wandb_module
from ascl_jax.training.out_of_memory import out_of_memory_hint

RUN_ADAPTER_DIR = "adapter"  # with LoRA: the adapters as a PEFT folder
Progress = Callable[[str, int, int, dict[str, Any]], None]  # (stage, step, total, metrics)


@dataclass(frozen=True)
class TaskData:
    train: list[Prompt]
    eval: list[Prompt]
    sft: list[Conversation]
    tool_for: Callable[[Prompt], RuleTool | None]


def eval_selection(prompts: list[Prompt], max_prompts: int) -> list[Prompt]:
    """The held-out prompts evaluated after each stage: all of them, or a fixed random `max_prompts` of them
    spread evenly over the file's sets (an evaluation file lists its sets one after another, so its first N
    would be one set, and a few dozen drawn from the whole file can miss a class)."""
    if max_prompts <= 0:
        return []
    if len(prompts) <= max_prompts:
        return list(prompts)
    return stratified_subset(list(prompts), max_prompts, salt="stage-evaluation")


def task_data(cfg: TrainConfig, fmt: ChatFormat) -> TaskData:
    """Prompts, cold-start conversations and the rule tool of each prompt, for `cfg.data` and `cfg.method`."""
    use_tool = cfg.method == "ascl"
    if cfg.data.task == "demo":
        if use_tool and cfg.rollout.tool != TOOL_NAME:  # its episodes and cold start call that tool
            raise ConfigError(f"data.task=demo offers {TOOL_NAME}; rollout.tool={cfg.rollout.tool} needs "
                              "data.task=jsonl")
        d = cfg.data.demo
        train, ev = demo.make_prompts(d, "train"), demo.make_prompts(d, "eval")
        rng = random.Random(cfg.seed)
        if use_tool:
            convs = [Conversation(p.id, tuple(demo.cold_start_conversation(p, rng, d.cold_start_consult_probability)),
                                  (demo.demo_tool(p).schema,)) for p in train]
        else:
            convs = [Conversation(p.id, tuple(demo.context_distillation_conversation(p, rng))) for p in train]
        return TaskData(train, ev, convs, demo.demo_tool if use_tool else (lambda p: None))
    book = load_rulebook(cfg.data.rules) if cfg.data.rules else default_rulebook()
    tool = make_tool(cfg.rollout.tool, book)
    train = load_prompts(cfg.data.prompts)
    ev = load_prompts(cfg.data.eval_prompts) if cfg.data.eval_prompts else []
    convs = load_conversations(cfg.data.sft) if cfg.data.sft else []
    return TaskData(train, ev, convs, (lambda p: tool) if use_tool else (lambda p: None))


def run_training(cfg: TrainConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run every stage of `cfg`; returns {"results": {stage: summary}, "run_dir": ..., "report": ...}."""
    # Under several processes (jax.distributed) every process runs this same function; they share
    # `run_dir` (a shared file system), process 0 writes the files, orbax checkpoints are
    # written by all together.
    lead = jax.process_index() == 0
    if "://" in cfg.run_dir:
        raise UserError(f"run_dir={cfg.run_dir}: give a local or mounted folder (shared by all processes); "
                        "checkpoints can go to a URL with checkpoint.directory=gs://...")
    check_output_folder(cfg.run_dir, "run_dir")
    run_dir = Path(cfg.run_dir)
    record = to_dict(cfg)
    checkpoints = epath.Path(cfg.checkpoint.directory) if cfg.checkpoint.directory else run_dir / "checkpoints"
    _check_same_config(run_dir, record, checkpoints)

    # Everything that can be wrong with the config, the model or the data files fails here, before the
    # run folder is written: a fixed file and the same command then start the run.
    mesh = make_mesh(cfg.mesh)
    model = load_model(cfg.model, mesh=mesh, dtype=cfg.dtype, seed=cfg.seed, lora=cfg.lora, compute=cfg.compute)
    if model.chat_family is None:
        raise UserError(f"{cfg.model}: no chat format is known for this model")
    fmt = chat_format(model.chat_family, model.tokenizer)
    _check_model_limits(model.config, cfg)
    data = task_data(cfg, fmt)
    _check_prompt_lengths(data, fmt, cfg)
    sft_steps = cfg.sft.steps if data.sft else 0
    packed = None
    if sft_steps:
        examples = [encode_conversation(fmt, c) for c in data.sft]
        pad = model.config.pad_token_id or 0
        packed = (pack_rows(examples, pad, cfg.sft.max_tokens) if cfg.sft.packing
                  else pack_examples(examples, pad, cfg.sft.max_tokens))

    if cfg.logging.wandb:
        wandb_module()  # missing package: fail now, not after the run folder is written

    sync_processes("config checked")  # nobody reads config.yaml while process 0 rewrites it
    if lead:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    sync_processes("run folder written")
    wandb_run = (start_wandb(run_dir, cfg.logging.wandb_project, cfg.logging.wandb_name, record)
                 if cfg.logging.wandb else None)
    metrics = MetricsLog(run_dir, tensorboard=cfg.logging.tensorboard, wandb_run=wandb_run)
    results: dict[str, dict[str, Any]] = {}
    keep = cfg.checkpoint.keep
    eval_prompts = eval_selection(data.eval, cfg.eval.max_prompts)

    def run_eval(name: str, m: LoadedModel) -> None:
        if eval_prompts:
            with out_of_memory_hint(f"the evaluation ({name})", "lower eval.max_prompts or eval.max_new_tokens, "
                                    "or set rollout.slots to stream the prompts through fewer decode rows"):
                summary, trajs = evaluate(m, fmt, data.tool_for, eval_prompts, cfg.rollout,
                                          max_new_tokens=cfg.eval.max_new_tokens)
            results[name] = summary
            if not lead:
                return
            with (run_dir / f"eval_{name}.jsonl").open("w") as f:
                for t in trajs:
                    f.write(json.dumps(t.to_json()) + "\n")

    if sft_steps:
        sft = SFTTrainer(model, packed, dataclasses.replace(cfg.sft, steps=sft_steps), cfg.seed, metrics,
                         Checkpointer(checkpoints / "sft", keep), record)
        sft.restore_latest()
        with out_of_memory_hint("SFT", _sft_memory_fixes(cfg)):
            sft.run(cfg.checkpoint.every, on_step=_stage(progress, "sft", sft_steps))
        model = sft.current_model()
        del sft  # its optimizer state would otherwise stay in device memory through RL
    run_eval("after_sft" if sft_steps else "initial", model)

    if cfg.method == "ascl" and cfg.rl.steps:
        settings = RLSettings(seed=cfg.seed, rollout=cfg.rollout, rl=cfg.rl, optimizer=cfg.optimizer,
                              checkpoint_every=cfg.checkpoint.every)
        trainer = RLTrainer(model, fmt, data.tool_for, data.train, RewardFunction(cfg.rewards), settings, metrics,
                            Checkpointer(checkpoints / "rl", keep), record, step_offset=sft_steps)
        if not trainer.restore_latest():
            metrics.truncate_after(sft_steps)
        with out_of_memory_hint("RL", _rl_memory_fixes(cfg)):
            trainer.run(on_step=_stage(progress, "rl", cfg.rl.steps))
        model = trainer.current_model()
        run_eval("after_rl", model)
    metrics.close()
    export_hf(model, run_dir / RUN_MODEL_DIR)  # adapters merged: a plain HF checkpoint
    if cfg.lora.enabled:  # and the adapters alone, for PEFT on the base checkpoint
        write_peft_adapter(run_dir / RUN_ADAPTER_DIR, model.params, cfg.lora, cfg.model)
    return {"results": results, "run_dir": str(run_dir), "metrics": metrics.read()}


_RESUMES = "the run folder resumes from its last checkpoint with new micro_batches / remat"


def _sft_memory_fixes(cfg: TrainConfig) -> str:
    sft = cfg.sft
    return (f"raise sft.micro_batches (now {sft.micro_batches}; it must divide sft.batch_size={sft.batch_size}), "
            f"set sft.remat=full (now {sft.remat}), or lower sft.max_tokens (now {sft.max_tokens}); {_RESUMES}")


def _rl_memory_fixes(cfg: TrainConfig) -> str:
    rl, rollout = cfg.rl, cfg.rollout
    rows = rl.prompts_per_step * rollout.group_size
    return (f"raise rl.micro_batches (now {rl.micro_batches}: {rows // rl.micro_batches} of the {rows} rollouts "
            f"of a step at once), set rl.remat=full (now {rl.remat}), or lower rollout.max_prompt_tokens / "
            f"rollout.max_new_tokens (now {rollout.max_prompt_tokens} / {rollout.max_new_tokens}); {_RESUMES}")


def _stage(progress: Progress | None, name: str, total: int):
    if progress is None:
        return None
    return lambda step, m: progress(name, step, total, m)


def _check_model_limits(mcfg: ModelConfig, cfg: TrainConfig) -> None:
    """Values that only the model can judge, checked before the run folder is written: a top-k beyond the
    vocabulary, token budgets beyond the positions the model was built for."""
    top_k = cfg.rollout.sampling.top_k
    if top_k > mcfg.vocab_size:
        raise UserError(f"rollout.sampling.top_k={top_k} is more than {cfg.model}'s vocabulary ({mcfg.vocab_size} "
                        "tokens); use at most that, or 0 for no top-k")
    for key, new in (("rollout.max_new_tokens", cfg.rollout.max_new_tokens),
                     ("eval.max_new_tokens", cfg.eval.max_new_tokens)):
        check_positions(mcfg.max_position_embeddings, dataclasses.replace(cfg.rollout, max_new_tokens=new),
                        f"{key}={new} with rollout.max_prompt_tokens={cfg.rollout.max_prompt_tokens}", cfg.model)
    if cfg.sft.max_tokens > mcfg.max_position_embeddings:
        raise UserError(f"sft.max_tokens={cfg.sft.max_tokens} is more than {cfg.model}'s "
                        f"{mcfg.max_position_embeddings} positions")


def _check_prompt_lengths(data: TaskData, fmt: ChatFormat, cfg: TrainConfig) -> None:
    """Every prompt, rendered with its tool, fits rollout.max_prompt_tokens (checked before the run starts,
    not at the step that draws it)."""
    limit = cfg.rollout.max_prompt_tokens
    for p in [*data.train, *eval_selection(data.eval, cfg.eval.max_prompts)]:
        tool = data.tool_for(p)
        n = len(fmt.prompt_tokens(list(p.messages), [tool.schema] if tool is not None else None))
        if n > limit:
            # What the schema alone costs tells a user whether any prompt can fit the budget.
            bare = len(fmt.prompt_tokens(list(p.messages), None)) if tool is not None else n
            raise UserError(f"prompt {p.id!r} is {n} tokens with the rule tool's schema; rollout.max_prompt_tokens "
                            f"is {limit} (the schema alone takes {n - bare}): raise it or shorten the prompt")


# Settings that trade memory for compute and leave the run's mathematics alone (gradient accumulation over
# more micro-batches, layers recomputed in the backward pass, the attention backend and the log-probability
# chunk): a run that ran out of memory resumes with them.
MEMORY_SETTINGS = (("sft", "micro_batches"), ("sft", "remat"), ("rl", "micro_batches"), ("rl", "remat"),
                   ("compute", "attention"), ("compute", "attention_block"), ("compute", "logprob_chunk"))


def _without_memory_settings(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    for section, key in MEMORY_SETTINGS:
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k != key}
    return {k: v for k, v in out.items() if v != {}}  # a section of memory settings alone: as if absent


def _check_same_config(run_dir: Path, record: dict[str, Any], checkpoints: epath.Path) -> None:
    """A run folder belongs to one config: resuming it with another would mix two runs (`MEMORY_SETTINGS`
    may differ). A folder that holds no metrics and no checkpoint has no run in it yet (e.g. a start that
    stopped on a bad file)."""
    path = run_dir / "config.yaml"
    if not path.exists():
        return
    started = (run_dir / "metrics.jsonl").exists() or any(
        (checkpoints / stage).exists() and any((checkpoints / stage).iterdir()) for stage in ("sft", "rl"))
    if not started:
        return
    old = _without_memory_settings(yaml.safe_load(path.read_text()))
    new = _without_memory_settings(record)
    if old != new:
        diffs = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise UserError(
            f"{run_dir} holds a run with another config (differs in: {', '.join(diffs)}); "
            "use a new run_dir=... or delete the folder"
        )

