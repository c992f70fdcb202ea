"""Run a model over benchmarks through the rollout engine (with the rule tool), one greedy rollout or K
samples per prompt, cache every finished item, and score them (`records.py`).

Resuming. Items are evaluated in fixed batches of the (limited) prompt list; after each batch its items
are appended to `<out>/cache/<model>/<benchmark>.jsonl` (one JSON line per item, flushed and synced).
A restarted evaluation reads that file, skips every batch whose items are all there and re-runs the
others as the same batches (so every item is decoded in the same batch as before, greedy or with the
batch's own sampling seed: the same tokens), so a killed evaluation restarted gives the same final numbers. Each line carries a key of what
decides its result (model, judge, rules, budgets); lines with another key are ignored. A torn last line
(a kill mid-write) is dropped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ascl_jax.chat.formats import ChatFormat
from ascl_jax.errors import UserError
from ascl_jax.eval import rollout_eval
from ascl_jax.eval.records import ItemCache, compute_metrics, item_record
from ascl_jax.models.registry import LoadedModel
from ascl_jax.rl.judge_outputs import QWEN3GUARD_NAMES, Verdict
from ascl_jax.rl.judges import CHAT_TEMPLATE_JUDGES, Judge
from ascl_jax.rollout.sampling import SamplingConfig
from ascl_jax.rollout.tool_loop import RolloutConfig
from ascl_jax.rollout.trajectory import Prompt
from ascl_jax.rules import ConsultSafetyRulesTool, RuleBook

CACHE_DIR = "cache"

# Called after each batch's items are written: (benchmark, batch index, records). Tests use it to kill an
# evaluation half-way; a progress display may use it too.
BatchHook = Callable[[str, int, list[dict[str, Any]]], None]


@dataclass(frozen=True)
class EvalConfig:
    """How a benchmark is run and scored.

    max_new_tokens: tokens after the prompt (tool turns included); max_tool_calls: rule-tool calls per
    item; use_tools: offer the rule tool; batch_size: prompts per rollout batch (the last batch is padded
    to it, so one program is compiled per prompt-length bucket); bootstrap: resamples for the 95%
    intervals (0: none); seed: the seed of the bootstrap and of the samples; system: an optional system
    message. samples: rollouts per prompt: 1 is one greedy rollout (avg@1); more are sampled at
    `temperature` / `top_p` and scored as avg@k and pass@k."""

    max_new_tokens: int = 256
    max_tool_calls: int = 2
    use_tools: bool = True
    batch_size: int = 8
    decode_chunk: int = 32
    bootstrap: int = 1000
    seed: int = 0
    system: str | None = None
    samples: int = 1
    temperature: float = 0.6
    top_p: float = 0.95

    def __post_init__(self):
        for name in ("max_new_tokens", "batch_size", "decode_chunk", "samples"):
            if getattr(self, name) < 1:
                raise UserError(f"eval: {name} must be >= 1, got {getattr(self, name)}")
        if self.max_tool_calls < 0 or self.bootstrap < 0:
            raise UserError("eval: max_tool_calls and bootstrap must be >= 0")
        if self.seed < 0:  # numpy's generator (the bootstrap) takes no negative seed
            raise UserError(f"eval: seed must be >= 0, got {self.seed}")
        if self.samples > 1 and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise UserError(f"eval: sampling needs temperature > 0 and 0 < top_p <= 1, got {self.temperature}, "
                            f"{self.top_p}")

    @property
    def sampling(self) -> SamplingConfig:
        """Greedy for one sample per prompt, else temperature / top-p sampling."""
        if self.samples == 1:
            return SamplingConfig(greedy=True)
        return SamplingConfig(temperature=self.temperature, top_p=self.top_p)

    def settings(self) -> dict[str, Any]:
        """What of the sampling decides an item's result (empty for greedy, so older caches stay valid)."""
        if self.samples == 1:
            return {}
        return {"samples": self.samples, "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}


class _RecordingJudge:
    """Passes judge_batch through to a judge and keeps the verdicts (evaluate() returns only summaries)."""

    def __init__(self, judge: Judge):
        self.inner = judge
        self.name = judge.name
        self.verdicts: list[Verdict] = []

    def judge(self, prompt: Prompt, answer: str) -> Verdict:
        return self.judge_batch([prompt], [answer])[0]

    def judge_batch(self, prompts: Sequence[Prompt], answers: Sequence[str]) -> list[Verdict]:
        out = list(self.inner.judge_batch(prompts, answers))
        self.verdicts.extend(out)
        return out


# -------------------------------------------------------------------------------------------- running


def fingerprint(**parts: Any) -> str:
    """A short hash of what decides an item's result (model, judge, rules, budgets)."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rulebook_hash(book: RuleBook | None) -> str | None:
    return None if book is None else hashlib.sha256(book.to_jsonl().encode()).hexdigest()[:16]


def _messages(p: Prompt, system: str | None) -> Prompt:
    if system is None or any(m.get("role") == "system" for m in p.messages):
        return p
    return dataclasses.replace(p, messages=({"role": "system", "content": system}, *p.messages))


def expand_samples(prompts: Sequence[Prompt], samples: int) -> list[Prompt]:
    """Each prompt `samples` times in a row, as `<id>#s<j>` with meta `base_id` and `sample` (unchanged
    for one sample), so the samples of a prompt are cached, resumed and grouped like any item."""
    if samples == 1:
        return list(prompts)
    return [dataclasses.replace(p, id=f"{p.id}#s{j}", meta={**p.meta, "base_id": p.id, "sample": j})
            for p in prompts for j in range(samples)]


def batch_seed(seed: int, benchmark: str, batch: int) -> int:
    """The sampling seed of one batch: fixed by (seed, benchmark, batch index), so a resumed evaluation
    draws the same samples, and no two batches share their random stream."""
    digest = hashlib.sha256(f"{seed}/{benchmark}/{batch}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class BenchmarkPlan:
    """One benchmark ready to roll out: its items (each prompt `samples` times, with the system message) and
    the rollout settings that fit its longest prompt."""

    name: str
    items: list[Prompt]
    rollout: RolloutConfig


def plan_benchmark(model: LoadedModel, fmt: ChatFormat, name: str, prompts: Sequence[Prompt],
                   tool: ConsultSafetyRulesTool | None, cfg: EvalConfig, where: str = "") -> BenchmarkPlan:
    """The items and rollout of one benchmark; raises UserError (naming the benchmark and its longest
    prompt) when they cannot run on `model`, before anything is rolled out or cached."""
    if not prompts:
        raise UserError(f"{where}benchmark {name!r}: no prompts to evaluate")
    items = expand_samples([_messages(p, cfg.system) for p in prompts], cfg.samples)
    rollout = rollout_eval.longest_prompt_rollout(
        fmt, items, [tool.schema] if tool is not None else None, model.config.max_position_embeddings,
        where=f"{where}benchmark {name!r}: ", fix="lower --max-new-tokens or --limit the prompts", group_size=1,
        max_new_tokens=cfg.max_new_tokens, max_tool_calls=cfg.max_tool_calls, decode_chunk=cfg.decode_chunk)
    return BenchmarkPlan(name, items, rollout)


def run_benchmark(
    model: LoadedModel,
    fmt: ChatFormat,
    name: str,
    prompts: Sequence[Prompt],
    cache_path: str | Path,
    judge: Judge,
    tool: ConsultSafetyRulesTool | None,
    cfg: EvalConfig,
    key: str,
    on_batch: BatchHook | None = None,
    log: Callable[[str], None] | None = None,
    plan: BenchmarkPlan | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate `prompts` (batched, cached per item in `cache_path`), return (metrics, records in prompt order).
    `plan`: `plan_benchmark`'s result when the caller checked it already."""
    plan = plan or plan_benchmark(model, fmt, name, prompts, tool, cfg)
    prompts, rollout = plan.items, plan.rollout
    cache = ItemCache(cache_path, key)
    done = cache.load()
    bs = cfg.batch_size
    n_batches = -(-len(prompts) // bs)
    reused = sum(1 for p in prompts if p.id in done)
    if log:
        log(f"{name}: {len(prompts)} prompts, {reused} cached, {n_batches} batches of {bs}")
    for b in range(n_batches):
        chunk = prompts[b * bs:(b + 1) * bs]
        if all(p.id in done for p in chunk):
            continue
        padded = chunk + [dataclasses.replace(chunk[-1], id=f"{chunk[-1].id}#pad{i}") for i in range(bs - len(chunk))]
        recorder = _RecordingJudge(judge)
        _, trajs = rollout_eval.evaluate(model, fmt, lambda p: tool, padded, rollout, judge=recorder,
                                         batch_size=bs, max_new_tokens=cfg.max_new_tokens,
                                         sampling=cfg.sampling, seed=batch_seed(cfg.seed, name, b))
        new = [item_record(t, v, key) for t, v in zip(trajs[:len(chunk)], recorder.verdicts[:len(chunk)])]
        new = [r for r in new if r["id"] not in done]
        cache.append(new)
        done.update({r["id"]: r for r in new})
        if log:
            log(f"{name}: batch {b + 1}/{n_batches} done ({sum(1 for p in prompts if p.id in done)}/{len(prompts)})")
        if on_batch is not None:
            on_batch(name, b, new)
    records = [done[p.id] for p in prompts]
    return compute_metrics(records, cfg.bootstrap, cfg.seed), records


def evaluate_benchmarks(
    model: LoadedModel,
    benchmarks: dict[str, Sequence[Prompt]],
    out_dir: str | Path,
    judge: Judge,
    rulebook: RuleBook | None,
    cfg: EvalConfig,
    *,
    label: str,
    model_spec: str,
    judge_spec: str | None = None,
    judge_max_new_tokens: int | None = None,
    on_batch: BatchHook | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every benchmark for one model: {"model", "config", "benchmarks": {name: metrics}, "overall": metrics}.
    Item caches go to `<out_dir>/cache/<label>/<benchmark>.jsonl`. `judge_max_new_tokens`: the judge model's
    token budget (None for the offline judge); it is part of the cache key, since a cut-short rubric output
    cannot be read."""
    from ascl_jax.chat.formats import chat_format

    if model.chat_family is None or model.tokenizer is None:
        raise UserError(f"{model_spec}: no chat format or tokenizer is known for this model; it cannot be evaluated")
    fmt = chat_format(model.chat_family, model.tokenizer)
    tool = ConsultSafetyRulesTool(rulebook) if cfg.use_tools and rulebook is not None else None
    settings = {"max_new_tokens": cfg.max_new_tokens, "max_tool_calls": cfg.max_tool_calls,
                "use_tools": tool is not None, "system": cfg.system, **cfg.settings()}
    # the judge budget joins the key only when there is one, so caches of offline-judge runs stay valid
    budget = {"judge_max_new_tokens": judge_max_new_tokens} if judge_max_new_tokens is not None else {}
    key = fingerprint(model=model_spec, dtype=str(model.config.dtype), judge=judge.name, judge_model=judge_spec,
                      rules=rulebook_hash(rulebook) if tool is not None else None, batch_size=cfg.batch_size,
                      **settings, **budget)
    # every benchmark checked before the first is rolled out: a prompt too long for the model fails at once
    plans = {name: plan_benchmark(model, fmt, name, prompts, tool, cfg, where=f"{model_spec}: ")
             for name, prompts in benchmarks.items()}
    per: dict[str, Any] = {}
    all_records: list[dict[str, Any]] = []
    for name, prompts in benchmarks.items():
        metrics, records = run_benchmark(
            model, fmt, name, prompts, Path(out_dir) / CACHE_DIR / label / f"{name}.jsonl", judge, tool, cfg, key,
            on_batch=on_batch, log=(lambda m: log(f"[{label}] {m}")) if log else None, plan=plans[name])
        per[name] = metrics
        all_records += records
    return {
        "model": model_spec,
        "config": {**settings, "judge": judge.name, "judge_model": judge_spec, **budget,
                   "batch_size": cfg.batch_size, "bootstrap": cfg.bootstrap, "seed": cfg.seed, "cache_key": key},
        "benchmarks": per,
        "overall": compute_metrics(all_records, cfg.bootstrap, cfg.seed, by_category=False),
    }


# -------------------------------------------------------------------------------------- model judges

# Tokens a judge model may write when --judge-max-new-tokens is not given: a guard model answers in a few
# tokens; the StrongREJECT rubric asks for an overall reasoning and a reasoning line per item before each
# answer (the reference implementation allows 1000). Qwen3Guard writes three lines, the categories possibly several.
JUDGE_MAX_NEW_TOKENS = {"llama_guard": 32, "wildguard": 32, "strongreject_rubric": 512,
                        **dict.fromkeys(QWEN3GUARD_NAMES, 64)}


def judge_budget(name: str, max_new_tokens: int | None = None) -> int | None:
    """The tokens judge `name` may write: `max_new_tokens` when given, else its default; None for the
    offline refusal judge, which writes nothing."""
    if name not in JUDGE_MAX_NEW_TOKENS:
        return None
    return max_new_tokens or JUDGE_MAX_NEW_TOKENS[name]


def guard_generate_fn(model: LoadedModel, max_new_tokens: int = 32, batch_size: int = 8
                      ) -> Callable[[list[str]], list[str]]:
    """A text generator over a judge model loaded by this project (greedy): each input is the full judge
    prompt (a guard template, or a chat rendered by `chat_render_fn`, already holding the model's special
    tokens), tokenized as is."""
    from ascl_jax.rollout.generate import generate

    if model.tokenizer is None:
        raise UserError(f"{model.name}: the judge model has no tokenizer; put tokenizer.json in its folder")
    tok = model.tokenizer

    def run(texts: list[str]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(texts), batch_size):
            chunk = [list(tok.encode(t, add_special_tokens=False)) or [model.config.pad_token_id or 0]
                     for t in texts[start:start + batch_size]]
            n = len(chunk)
            chunk += [chunk[-1]] * (batch_size - n)  # one compiled shape per prompt-length bucket
            gens = generate(model, chunk, max_new_tokens)
            out += [tok.decode(g.tokens, skip_special_tokens=True) for g in gens[:n]]
        return out

    return run


def chat_render_fn(model: LoadedModel) -> Callable[[list[dict]], str]:
    """The judge model's chat template as a function: messages -> prompt text with the generation prompt.

    The template is the tokenizer's own (`chat_template` of the checkpoint: the one the judge was tuned
    with); a tokenizer without one falls back to the chat format this project knows for the model
    (`model.chat_family`). Thinking is off (Qwen3 templates read `enable_thinking`; others ignore it), so
    the judge's budget goes to the answer lines, not to a reasoning block. As for the guard templates, the
    text is then tokenized as is (`guard_generate_fn`): a control-token string inside the judged answer is
    read as that token."""
    from ascl_jax.chat.formats import chat_format

    tok = model.tokenizer
    if tok is None:
        raise UserError(f"{model.name}: the judge model has no tokenizer; put tokenizer.json in its folder")
    if tok.chat_template:
        def render(messages: list[dict]) -> str:
            try:
                return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                               enable_thinking=False)
            except Exception as exc:  # jinja errors, or a template that refuses e.g. a system message
                raise UserError(f"{model.name}: its chat template cannot render the judge prompt: {exc}") from exc

        return render
    if model.chat_family is None:
        raise UserError(f"{model.name}: the judge model has no chat template (tokenizer_config.json "
                        "chat_template) and no known chat format; the rubric judge needs one")
    fmt = chat_format(model.chat_family, tok, enable_thinking=False)
    return lambda messages: fmt.render(messages, add_generation_prompt=True)


def make_eval_judge(name: str, judge_model: str | None = None, *, max_new_tokens: int | None = None,
                    batch_size: int = 8, dtype: str | None = None) -> Judge:
    """The judge `ascl eval --judge` names: "refusal" (offline), a guard model ("llama_guard",
    "wildguard") or the StrongREJECT rubric ("strongreject_rubric", any instruction-tuned model, prompted
    through its chat template), run from a local checkpoint (`judge_model`: anything `load_model` takes)
    through this project's own model code. `max_new_tokens`: the judge's budget (default:
    `JUDGE_MAX_NEW_TOKENS` of the judge)."""
    from ascl_jax.rl.judges import EVAL_JUDGES, make_judge

    if name not in EVAL_JUDGES:
        raise UserError(f"unknown judge {name!r}; choose one of {', '.join(EVAL_JUDGES)}")
    if name == "refusal":
        if judge_model:
            raise UserError("--judge-model is for model judges (--judge llama_guard, wildguard or strongreject_rubric)")
        return make_judge("refusal")
    if not judge_model:
        raise UserError(f"--judge {name} needs --judge-model PATH (a local checkpoint folder of the judge model)")
    from ascl_jax.models.registry import load_model

    lm = load_model(judge_model, dtype=dtype)
    budget = judge_budget(name, max_new_tokens)
    if budget >= lm.config.max_position_embeddings:  # else it fails at the first judged batch, after its rollout
        raise UserError(f"--judge-max-new-tokens {budget} leaves no room for the judge prompt in {judge_model}'s "
                        f"{lm.config.max_position_embeddings} positions")
    generate_fn = guard_generate_fn(lm, budget, batch_size)
    render_fn = chat_render_fn(lm) if name in CHAT_TEMPLATE_JUDGES else None
    return make_judge(name, generate_fn, render_fn)


def stderr_log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
