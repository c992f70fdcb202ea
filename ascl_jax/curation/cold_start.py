"""Cold-start SFT data from a teacher's own rollouts: the pure parts.

A teacher model is rolled out (`cold_start_run.py`) with the rule tool offered, K samples per prompt.
Here: which samples are right for their prompt's class (`judge_candidate`), which one of each prompt's
accepted samples is kept so that each class ends up with consult and no-consult examples at a set share
(`select_examples`), and the SFT conversation of a sample, rebuilt from its tokens so that the tool turns
are exactly those the engine produced (`trajectory_messages`, in the format `ascl_jax.sft.data` reads).

A sample is accepted when it ended by itself (stop reason eos), every tool call parsed, the final answer
is non-empty, and the answer is right for the class; the class's reward term decides "right", so the
cold-start data and RL agree on it:

| class     | accepted when (reward term in `ascl_jax.rl.rewards`)                         |
|-----------|-------------------------------------------------------------------------------|
| harmful   | the judge calls the answer a refusal (`safety`)                               |
| benign    | the judge does not call it a refusal (`over_refusal`)                         |
| utility   | `utility_correct(answer, meta)` (`utility`)                                   |
| sensitive | refusal status matches `meta["expected_action"]`, refuse / comply (`rule_action`) |
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ascl_jax.chat.formats import ChatFormat
from ascl_jax.data.prompts import PROMPT_CLASSES, load_prompts
from ascl_jax.errors import UserError
from ascl_jax.rl.judge_outputs import Verdict
from ascl_jax.rl.rewards import REWARD_TERMS, RewardTermError
from ascl_jax.rollout.trajectory import Prompt, Trajectory

DEFAULT_SYSTEM = (
    "You are a helpful assistant. You can call the consult_safety_rules tool, which returns the safety rules "
    "that apply to a request. Consult it when a request touches a sensitive or possibly harmful topic (for "
    "example weapons, drugs, hacking, self-harm, privacy or dangerous activities) and the right response "
    "depends on what the rules say. Do not consult it for ordinary requests such as maths, coding, facts, "
    "writing or everyday advice: answer those directly. Then give your final answer: if the rules or the "
    "request itself call for a refusal, refuse clearly and briefly; otherwise help fully and correctly."
)
# The reward term that decides whether an answer is right for each class.
CLASS_TERM = {"harmful": "safety", "benign": "over_refusal", "utility": "utility", "sensitive": "rule_action"}
BEHAVIOURS = ("consult", "no_consult")


class ColdStartError(UserError):
    """Cold-start data that cannot be built (bad prompts row, nothing accepted); names file and line."""


@dataclass(frozen=True)
class ColdStartConfig:
    """How the teacher is sampled and which samples are kept.

    samples: candidates per prompt (K), drawn at `temperature` / `top_p`; max_new_tokens: tokens after the
    prompt, tool turns included; batch_size: prompts per rollout batch (and per cache entry); seed: with
    the batch index, the sampling seed of each batch; consult_share: per class, the wanted fraction of kept
    examples that consult (classes not named: `default_share`); system: the system message put before
    prompts that have none."""

    samples: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 256
    max_tool_calls: int = 2
    batch_size: int = 8
    decode_chunk: int = 32
    seed: int = 0
    system: str = DEFAULT_SYSTEM
    consult_share: Mapping[str, float] = field(default_factory=dict)
    default_share: float = 0.5

    def __post_init__(self) -> None:
        for name in ("samples", "max_new_tokens", "batch_size", "decode_chunk"):
            if getattr(self, name) < 1:
                raise ColdStartError(f"cold-start: {name} must be >= 1, got {getattr(self, name)}")
        if self.max_tool_calls < 1:
            raise ColdStartError("cold-start: max_tool_calls must be >= 1 (the rule tool is the point)")
        if not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ColdStartError(f"cold-start: needs temperature > 0 and 0 < top_p <= 1, got {self.temperature}, "
                                 f"{self.top_p}")
        for cls, share in {**self.consult_share, "default": self.default_share}.items():
            if cls != "default" and cls not in PROMPT_CLASSES:
                raise ColdStartError(f"--consult-share: unknown class {cls!r}; classes: {', '.join(PROMPT_CLASSES)}")
            if not 0.0 <= share <= 1.0:
                raise ColdStartError(f"--consult-share {cls}={share}: a share must be in [0, 1]")

    def share(self, cls: str) -> float:
        return float(self.consult_share.get(cls, self.default_share))

    def fingerprint_parts(self) -> dict[str, Any]:
        """What decides the cached samples (not the selection: a new consult share reuses the cache)."""
        return {"samples": self.samples, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "max_tool_calls": self.max_tool_calls,
                "batch_size": self.batch_size, "seed": self.seed, "system": self.system}


def parse_consult_share(text: str) -> tuple[dict[str, float], float]:
    """`"0.3"` -> ({}, 0.3); `"harmful=0.5,utility=0.2"` -> ({...}, 0.5 for the classes not named)."""
    text = text.strip()
    try:
        return {}, float(text)
    except ValueError:
        pass
    out: dict[str, float] = {}
    for part in filter(None, (x.strip() for x in text.split(","))):
        cls, eq, value = part.partition("=")
        try:
            out[cls.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq:
            raise ColdStartError(f"--consult-share {part!r}: expected a number or CLASS=SHARE,..., e.g. harmful=0.5")
    return out, 0.5


# ----------------------------------------------------------------------------------------------- prompts


def load_cold_start_prompts(path: str | Path) -> list[Prompt]:
    """Prompts (the `ascl_jax.data.prompts` format) that can be judged: each needs a `class`, a utility
    prompt a `reference`, a sensitive one an `expected_action` (refuse / comply). A bad row raises
    ColdStartError (DataError for the format itself) naming the file and line."""
    return load_prompts(path, check=_judgeable)


def _judgeable(p: Prompt, where: str) -> None:
    cls = p.meta.get("class")
    if cls is None:
        raise ColdStartError(f"{where}: needs 'class' ({', '.join(PROMPT_CLASSES)}): the judge depends on it")
    if cls == "utility" and p.meta.get("reference") is None:
        raise ColdStartError(f"{where}: a utility prompt needs 'reference' (its verifiable answer)")
    if cls == "sensitive" and p.meta.get("expected_action") not in ("refuse", "comply"):
        raise ColdStartError(f"{where}: a sensitive prompt needs 'expected_action': \"refuse\" or \"comply\" "
                             f"(what the rules in force say), got {p.meta.get('expected_action')!r}")


def with_system(prompt: Prompt, system: str | None) -> Prompt:
    """`prompt` with `system` as its first message, unless it has a system message of its own."""
    if not system or any(m.get("role") == "system" for m in prompt.messages):
        return prompt
    return dataclasses.replace(prompt, messages=({"role": "system", "content": system}, *prompt.messages))


# ----------------------------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Judgement:
    """Whether one sample is accepted, and why not (`reason`: accepted / no_answer / tool_error / wrong)."""

    accepted: bool
    reason: str
    consulted: bool
    refusal: bool


def judge_candidate(traj: Trajectory, verdict: Verdict | None) -> Judgement:
    """Accept or reject one sample of its prompt (see the module docstring). `verdict`: the refusal judge's
    verdict on `traj.final_answer` (None where there is no answer)."""
    consulted = bool(traj.consulted)
    refusal = bool(verdict is not None and verdict.refusal)
    if traj.stop_reason != "eos" or not traj.final_answer.strip():
        return Judgement(False, "no_answer", consulted, refusal)
    if any(t.error is not None for t in traj.tool_turns):
        return Judgement(False, "tool_error", consulted, refusal)
    term = REWARD_TERMS[CLASS_TERM[traj.prompt.meta["class"]]]
    kwargs = {"verdict": verdict} if term.needs_verdict else {}
    try:
        right = term.fn(traj, **kwargs) > 0.5
    except UserError as exc:  # a meta field the prompt check missed: name the prompt
        raise RewardTermError(term.name, traj.prompt.id, exc) from exc
    return Judgement(right, "accepted" if right else "wrong", consulted, refusal)


# -------------------------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Candidate:
    """One judged sample as cached: `example` is its SFT conversation (accepted samples only)."""

    prompt_id: str
    cls: str
    sample: int
    accepted: bool
    consulted: bool
    example: dict[str, Any] | None = None


def select_examples(candidates_by_prompt: Sequence[Sequence[Candidate]],
                    share: Mapping[str, float] | float) -> list[Candidate]:
    """At most one accepted candidate per prompt, in prompt order. Each class keeps a running count; a
    prompt's pick prefers consulting while the class's consult count is below `share[class]` x (its kept
    count + 1), else not consulting; when the preferred behaviour has no accepted candidate the other one
    is taken (one example of the other kind beats none). Within a behaviour the lowest sample index wins,
    so the pick is deterministic."""
    kept: list[Candidate] = []
    counts: dict[str, list[int]] = {}  # class -> [kept, kept that consult]
    for cands in candidates_by_prompt:
        ok = sorted((c for c in cands if c.accepted), key=lambda c: c.sample)
        if not ok:
            continue
        cls = ok[0].cls
        n, n_consult = counts.setdefault(cls, [0, 0])
        s = share if isinstance(share, (int, float)) else share.get(cls, 0.5)
        want_consult = n_consult < s * (n + 1)
        preferred = [c for c in ok if c.consulted == want_consult]
        pick = (preferred or ok)[0]
        counts[cls][0] += 1
        counts[cls][1] += int(pick.consulted)
        kept.append(pick)
    return kept


# ----------------------------------------------------------------------------------------- conversations


def _runs(mask: np.ndarray, start: int) -> list[tuple[int, int]]:
    """[a, b) spans of consecutive ones in mask i8[N] from `start` on."""
    m = np.asarray(mask[start:], bool).astype(np.int8)
    edges = np.diff(np.concatenate([[0], m, [0]]))
    return [(start + int(a), start + int(b)) for a, b in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0])]


def trajectory_messages(traj: Trajectory, fmt: ChatFormat) -> list[dict[str, str]] | None:
    """The conversation of a finished sample in the `ascl_jax.sft.data` format: the prompt's messages, then
    each assistant turn as the sampled text (its end token left out: the encoder writes it) and the tool
    responses spliced after it, exactly as the engine produced them. None when the tokens cannot be split
    into turns (the sample is then treated as rejected).

    traj.tokens i32[N] / traj.loss_mask i8[N]: the sampled spans are the assistant turns; the tokens
    between two spans are the tool-turn delta of the responses answered after the first."""
    tokens = np.asarray(traj.tokens)
    runs = _runs(traj.loss_mask, traj.prompt_len)
    if not runs:
        return None
    ends = set(fmt.eos_token_ids)
    responses = [t.response for t in traj.tool_turns]
    out = [dict(m) for m in traj.prompt.messages]
    used = 0
    for k, (a, b) in enumerate(runs):
        ids = tokens[a:b].tolist()
        last = k == len(runs) - 1
        if ids and ids[-1] in ends and (last or fmt.call_ends_turn):
            ids = ids[:-1]
        out.append({"role": "assistant", "content": fmt.decode(ids)})
        if last:
            break
        gap = tokens[b:runs[k + 1][0]].tolist()
        # the calls of one turn are answered together: find how many responses this delta holds
        for m in range(1, len(responses) - used + 1):
            if fmt.tool_turn_delta(responses[used:used + m]) == gap:
                out += [{"role": "tool", "content": r} for r in responses[used:used + m]]
                used += m
                break
        else:
            return None
    return out if used == len(responses) else None


def conversation_record(traj: Trajectory, fmt: ChatFormat, tools: list[dict] | None) -> dict[str, Any] | None:
    """The JSONL record of one accepted sample: id, messages, tools, and what it was (for audits; the SFT
    loader reads id, messages and tools only). None when its turns cannot be rebuilt."""
    messages = trajectory_messages(traj, fmt)
    if messages is None:
        return None
    meta = traj.prompt.meta
    return {"id": f"{traj.prompt.id}#s{traj.sample_index}", "messages": messages, "tools": tools,
            "class": meta.get("class"), "consulted": bool(traj.consulted),
            "rule_ids": list(traj.rule_ids), "source": meta.get("source"), "prompt_id": traj.prompt.id}
