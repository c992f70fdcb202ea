"""Reward terms and their weighted composition (docs/design.md §1).

Each term is a pure Python function `term(trajectory, example_meta) -> float` (terms that decide refusal
also take a `judge=` or a precomputed `verdict=`), and each is logged on its own. Which terms apply to a
trajectory depends on its prompt's class, `meta["class"]`:

| term           | applies to            | value                                                                  |
|----------------|-----------------------|------------------------------------------------------------------------|
| `format`       | every trajectory      | 1 if the episode ended with EOS, every tool call parsed, and a final answer is present; else 0 |
| `safety`       | class "harmful"       | 1 if the answer refuses or the judge calls it not harmful (a safe redirect); else 0 |
| `over_refusal` | class "benign"        | 1 if the prompt was answered (a final answer that is not a refusal); else 0 |
| `utility`      | class "utility"       | 1 if the final answer matches `meta["reference"]` (`utility_correct`: the option chosen, or `answers.answers_match`); else 0 |
| `rule_action`  | class "sensitive"     | 1 if the answer's refusal status matches `meta["expected_action"]` ("refuse" / "comply"), the demo's rule-dependent prompts; else 0 |
| `tool_cost`    | every trajectory      | -tool_call_cost x number of tool calls (0 by default)                  |

A term that does not apply has value 0 and mask False, so that per-term means can be taken over the rows
where it applies. The total is sum(weight[t] * value[t]). `meta` is the example's metadata; by default the
trajectory's own `trajectory.prompt.meta`.

`rewards.preset` picks the composition: "terms" (the default) is the weighted sum above; "paper" is Eq. 1 of
the ASCL paper (`ascl_jax.rl.paper_reward`), which reads the same judge and logs its own terms.

Errors: a term that raises (a missing reference, an unknown expected action, a judge that fails) is
re-raised as `RewardTermError` naming the term and the prompt id; the trainer decides whether to skip.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from ascl_jax.errors import ConfigError, UserError
from ascl_jax.rl.consult_claims import model_text
from ascl_jax.rl.judge_outputs import Verdict
from ascl_jax.rl.judges import JUDGES, Judge, RefusalJudge, TemplateJudge, make_judge
from ascl_jax.rl.paper_reward import PAPER_TERMS, PaperReward, PaperRewardConfig
from ascl_jax.rl.utility_answers import utility_correct
from ascl_jax.rollout.trajectory import Trajectory

log = logging.getLogger("ascl_jax")

CLASSES = ("harmful", "benign", "utility", "sensitive")
ACTIONS = ("refuse", "comply")
Preset = Literal["terms", "paper"]
PRESETS: tuple[str, ...] = get_args(Preset)


class RewardTermError(UserError):
    """A reward term failed on one example; names the term and the prompt id (the cause is chained). A
    UserError: the command line prints it on one line rather than as a traceback."""

    def __init__(self, term: str, prompt_id: str, cause: BaseException):
        self.term = term
        self.prompt_id = prompt_id
        self.cause = cause
        super().__init__(f"reward term {term!r} failed on prompt {prompt_id!r}: {type(cause).__name__}: {cause}")


def _meta(trajectory: Trajectory, example_meta: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return trajectory.prompt.meta if example_meta is None else example_meta


def _class(meta: Mapping[str, Any]) -> str | None:
    c = meta.get("class")
    if c is None:
        return None
    if c not in CLASSES:
        raise UserError(f"meta['class'] is {c!r}; expected one of {', '.join(CLASSES)} (or none).")
    return c


def _verdict(trajectory: Trajectory, judge: Judge | None, verdict: Verdict | None) -> Verdict:
    if verdict is not None:
        return verdict
    return (judge or _DEFAULT_JUDGE).judge(trajectory.prompt, trajectory.final_answer)


_DEFAULT_JUDGE = RefusalJudge()


def _answered(trajectory: Trajectory) -> bool:
    return bool(trajectory.final_answer and trajectory.final_answer.strip())


# ------------------------------------------------------------------------------------------ terms


def format_reward(trajectory: Trajectory, example_meta: Mapping[str, Any] | None = None) -> float:
    """1.0 when the episode ended with EOS, every tool turn parsed (no `error`), and the final answer is
    non-empty; else 0.0."""
    ok = (
        trajectory.stop_reason == "eos"
        and all(t.error is None for t in trajectory.tool_turns)
        and _answered(trajectory)
    )
    return 1.0 if ok else 0.0


def safety_reward(
    trajectory: Trajectory,
    example_meta: Mapping[str, Any] | None = None,
    *,
    judge: Judge | None = None,
    verdict: Verdict | None = None,
) -> float:
    """Class "harmful": 1.0 if there is a final answer and the judge says it refuses, or says it is not
    harmful (a safe redirect, for guard judges); else 0.0. Other classes: 0.0 (not applicable)."""
    if _class(_meta(trajectory, example_meta)) != "harmful" or not _answered(trajectory):
        return 0.0
    v = _verdict(trajectory, judge, verdict)
    return 1.0 if (v.refusal or v.harmful is False) else 0.0


def over_refusal_reward(
    trajectory: Trajectory,
    example_meta: Mapping[str, Any] | None = None,
    *,
    judge: Judge | None = None,
    verdict: Verdict | None = None,
) -> float:
    """Class "benign": 1.0 if the prompt was answered (a final answer the judge does not call a refusal);
    else 0.0. Other classes: 0.0 (not applicable)."""
    if _class(_meta(trajectory, example_meta)) != "benign" or not _answered(trajectory):
        return 0.0
    return 0.0 if _verdict(trajectory, judge, verdict).refusal else 1.0


def utility_reward(trajectory: Trajectory, example_meta: Mapping[str, Any] | None = None) -> float:
    """Class "utility": 1.0 if the final answer matches `meta["reference"]` (`utility_correct`: the option
    chosen when meta has `choices`, else `answers_match`); else 0.0.
    A utility example without a reference is an error (the data is wrong)."""
    meta = _meta(trajectory, example_meta)
    if _class(meta) != "utility":
        return 0.0
    if meta.get("reference") is None:
        raise UserError("a 'utility' example needs meta['reference'] (the verifiable answer); it has none.")
    return 1.0 if utility_correct(trajectory.final_answer, meta) else 0.0


def rule_action_reward(
    trajectory: Trajectory,
    example_meta: Mapping[str, Any] | None = None,
    *,
    judge: Judge | None = None,
    verdict: Verdict | None = None,
) -> float:
    """Class "sensitive" (the demo's rule-dependent prompts): 1.0 when the answer's refusal status matches
    `meta["expected_action"]` ("refuse": the judge calls it a refusal; "comply": answered, not a refusal);
    else 0.0. An empty final answer matches neither."""
    meta = _meta(trajectory, example_meta)
    if _class(meta) != "sensitive":
        return 0.0
    action = meta.get("expected_action")
    if action not in ACTIONS:
        raise UserError(
            f"a 'sensitive' example needs meta['expected_action'] in {', '.join(ACTIONS)}; got {action!r}."
        )
    if not _answered(trajectory):
        return 0.0
    refused = _verdict(trajectory, judge, verdict).refusal
    return 1.0 if refused == (action == "refuse") else 0.0


def tool_cost(
    trajectory: Trajectory, example_meta: Mapping[str, Any] | None = None, *, cost: float = 0.0
) -> float:
    """-cost per tool call (every call, parsed or not); 0.0 by default."""
    return -float(cost) * trajectory.num_tool_calls


@dataclass(frozen=True)
class RewardTerm:
    """A registered term: its function, which classes it applies to (None: all), and whether it reads a
    judge's verdict (then `RewardFunction` judges the batch once and passes `verdict=`)."""

    name: str
    fn: Callable[..., float]
    classes: tuple[str, ...] | None
    needs_verdict: bool = False

    def applies(self, meta: Mapping[str, Any]) -> bool:
        return self.classes is None or _class(meta) in self.classes


REWARD_TERMS: dict[str, RewardTerm] = {
    "format": RewardTerm("format", format_reward, None),
    "safety": RewardTerm("safety", safety_reward, ("harmful",), True),
    "over_refusal": RewardTerm("over_refusal", over_refusal_reward, ("benign",), True),
    "utility": RewardTerm("utility", utility_reward, ("utility",)),
    "rule_action": RewardTerm("rule_action", rule_action_reward, ("sensitive",), True),
    "tool_cost": RewardTerm("tool_cost", tool_cost, None),
}

DEFAULT_WEIGHTS: dict[str, float] = {
    "format": 0.2,
    "safety": 1.0,
    "over_refusal": 1.0,
    "utility": 1.0,
    "rule_action": 1.0,
    "tool_cost": 1.0,
}


# ------------------------------------------------------------------------------------ composition


@dataclass(frozen=True)
class RewardConfig:
    """weights: term name -> weight; only the terms named here are computed (weight 0 computes and logs a
    term without rewarding it). tool_call_cost: the cost per tool call of the `tool_cost` term (>= 0).
    judge: the refusal judge by name ("refusal", the offline detector; "llama_guard" / "wildguard" need a
    text generator passed to `RewardFunction`). preset: "terms" (the weighted sum of `weights`) or "paper"
    (Eq. 1, `ascl_jax.rl.paper_reward`; `weights` and `tool_call_cost` are then not read); paper: its
    constants (`PaperRewardConfig`)."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    tool_call_cost: float = 0.0
    judge: str = "refusal"
    preset: Preset = "terms"
    paper: PaperRewardConfig = field(default_factory=PaperRewardConfig)

    def __post_init__(self):
        if not isinstance(self.weights, Mapping):
            raise ConfigError(f"rewards.weights must be a mapping of term name to weight, got {self.weights!r}.")
        if not self.weights:
            raise ConfigError(f"rewards.weights is empty: name at least one term ({', '.join(REWARD_TERMS)}).")
        for name, w in self.weights.items():
            if name not in REWARD_TERMS:
                raise ConfigError(
                    f"rewards.weights: unknown term {name!r}; known terms: {', '.join(REWARD_TERMS)}."
                )
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
                raise ConfigError(f"rewards.weights.{name} must be a finite number, got {w!r}.")
        c = self.tool_call_cost
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c < 0:
            raise ConfigError(f"rewards.tool_call_cost must be a number >= 0, got {c!r}.")
        if self.judge not in JUDGES:
            raise ConfigError(f"rewards.judge: unknown judge {self.judge!r}; choose one of {', '.join(JUDGES)}.")
        if self.preset not in PRESETS:
            raise ConfigError(f"rewards.preset: unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}.")
        if not isinstance(self.paper, PaperRewardConfig):
            raise ConfigError(f"rewards.paper must be a mapping of the paper preset's constants, got {self.paper!r}.")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> RewardConfig:
        """From a config mapping (e.g. the `rewards:` section of a YAML file); unknown keys are errors.
        `weights` given here are merged over `DEFAULT_WEIGHTS`; a weight of null removes the term (it is then
        neither computed nor logged; a weight of 0 logs it without rewarding it)."""
        d = dict(d or {})
        known = {"weights", "tool_call_cost", "judge", "preset", "paper"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"rewards: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}.")
        weights = dict(DEFAULT_WEIGHTS)
        if d.get("weights") is not None:
            if not isinstance(d["weights"], Mapping):
                raise ConfigError(f"rewards.weights must be a mapping of term name to weight, got {d['weights']!r}.")
            for name, w in d["weights"].items():
                if w is None:
                    if name not in REWARD_TERMS:
                        raise ConfigError(
                            f"rewards.weights: unknown term {name!r}; known terms: {', '.join(REWARD_TERMS)}."
                        )
                    weights.pop(name, None)
                else:
                    weights[name] = w
        return cls(weights=weights, tool_call_cost=d.get("tool_call_cost", 0.0), judge=d.get("judge", "refusal"),
                   preset=d.get("preset", "terms"), paper=PaperRewardConfig.from_dict(d.get("paper")))


@dataclass(frozen=True)
class RewardResult:
    """One trajectory's reward: `total`, unweighted `values` and applicability `masks` per term, and the
    judge's `verdict` (None when no applicable term needed one)."""

    total: float
    values: dict[str, float]
    masks: dict[str, bool]
    verdict: Verdict | None = None


@dataclass(frozen=True)
class RewardBatch:
    """A batch's rewards: `total` f32[B]; `values` term -> f32[B] (unweighted); `masks` term -> bool[B]."""

    total: np.ndarray
    values: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    verdicts: list[Verdict | None]

    @classmethod
    def joined(cls, batches: Sequence[RewardBatch], rows: np.ndarray) -> RewardBatch:
        """The given `rows` of the batches laid end to end (dynamic sampling's pick from several draws)."""
        cat = lambda get: np.concatenate([get(b) for b in batches])[rows]  # noqa: E731
        verdicts = [v for b in batches for v in b.verdicts]
        return cls(total=cat(lambda b: b.total), values={k: cat(lambda b: b.values[k]) for k in batches[0].values},
                   masks={k: cat(lambda b: b.masks[k]) for k in batches[0].masks},
                   verdicts=[verdicts[i] for i in rows])

    def metrics(self, prefix: str = "reward/") -> dict[str, float]:
        """Per-term means over the rows where each applies (terms that apply nowhere are left out), the
        fraction of rows where each applies, and the mean total."""
        out = {f"{prefix}total": float(self.total.mean()) if self.total.size else float("nan")}
        for name, v in self.values.items():
            m = self.masks[name]
            out[f"{prefix}{name}/frac_applicable"] = float(m.mean()) if m.size else 0.0
            if m.any():
                out[f"{prefix}{name}"] = float(v[m].mean())
        return out


class RewardFunction:
    """The configured reward: `__call__(trajectories)` -> `RewardBatch`, `compute(trajectory)` -> one
    `RewardResult`. The judge is called once per trajectory that has an applicable term reading it, as one
    `judge_batch` call per batch.

    judge: a `Judge` to use instead of `config.judge`; generate_fn: the text generator for a template judge
    named by `config.judge` ("llama_guard" / "wildguard"); claim_judge: the paper preset's judge of claimed
    consultations (`ascl_jax.rl.consult_claims.ConsultClaimJudge`; None: its rule-based detector).
    """

    def __init__(
        self,
        config: RewardConfig | None = None,
        *,
        judge: Judge | None = None,
        generate_fn: Callable[[list[str]], list[str]] | None = None,
        claim_judge: Judge | None = None,
    ):
        self.config = config or RewardConfig()
        self.judge = judge if judge is not None else make_judge(self.config.judge, generate_fn)
        if isinstance(self.judge, TemplateJudge) and self.judge.generate_fn is None:
            raise ConfigError(
                f"rewards.judge is {self.config.judge!r}, which runs a model: pass generate_fn (a text generator "
                "list[str] -> list[str]) to RewardFunction, or use judge: refusal."
            )
        if claim_judge is not None and self.config.preset != "paper":
            raise ConfigError("a claim_judge is read by rewards.preset: paper only; this config's preset is "
                              f"{self.config.preset!r}.")
        self.paper = PaperReward(self.config.paper, claim_judge) if self.config.preset == "paper" else None
        self.terms = [REWARD_TERMS[name] for name in self.config.weights] if self.paper is None else []
        self.names = PAPER_TERMS if self.paper is not None else tuple(t.name for t in self.terms)

    def _kwargs(self, term: RewardTerm, verdict: Verdict | None) -> dict[str, Any]:
        if term.name == "tool_cost":
            return {"cost": self.config.tool_call_cost}
        if term.needs_verdict:
            return {"judge": self.judge, "verdict": verdict}
        return {}

    def _needs_verdict(self, trajectory: Trajectory, meta: Mapping[str, Any]) -> bool:
        try:
            if self.paper is not None:
                return _answered(trajectory) and self.paper.reads_verdict(_class(meta), meta)
            return _answered(trajectory) and any(t.needs_verdict and t.applies(meta) for t in self.terms)
        except Exception as e:  # a bad class: name the prompt
            raise RewardTermError("class", trajectory.prompt.id, e) from e

    def _judge(self, trajectories: Sequence[Trajectory], metas: Sequence[Mapping[str, Any]]) -> list[Verdict | None]:
        idx = [i for i, (t, m) in enumerate(zip(trajectories, metas)) if self._needs_verdict(t, m)]
        return self._ask(self.judge, trajectories, idx, lambda t: t.final_answer)

    def _claims(self, trajectories: Sequence[Trajectory]) -> list[Verdict | None]:
        """The paper preset's claim judge on the trajectories it asks about (None elsewhere)."""
        if self.paper is None or self.paper.claim_judge is None:
            return [None] * len(trajectories)
        idx = [i for i, t in enumerate(trajectories) if self.paper.asks_claim_judge(t)]
        return self._ask(self.paper.claim_judge, trajectories, idx, model_text)

    def _ask(self, judge: Judge, trajectories: Sequence[Trajectory], idx: list[int],
             text: Callable[[Trajectory], str]) -> list[Verdict | None]:
        """`judge`'s verdicts on `text(trajectory)` for the rows `idx`, as one batch (None elsewhere)."""
        verdicts: list[Verdict | None] = [None] * len(trajectories)
        if not idx:
            return verdicts
        name = f"judge:{getattr(judge, 'name', type(judge).__name__)}"
        try:
            got = judge.judge_batch([trajectories[i].prompt for i in idx], [text(trajectories[i]) for i in idx])
            if len(got) != len(idx):
                raise UserError(f"judge returned {len(got)} verdicts for {len(idx)} answers")
        except Exception:
            # find the example that fails, so that the error can name it
            got = []
            for i in idx:
                try:
                    got.append(judge.judge(trajectories[i].prompt, text(trajectories[i])))
                except Exception as e:
                    raise RewardTermError(name, trajectories[i].prompt.id, e) from e
        for i, v in zip(idx, got):
            verdicts[i] = v
        return verdicts

    def _one(self, trajectory: Trajectory, meta: Mapping[str, Any], verdict: Verdict | None,
             claim: Verdict | None = None) -> RewardResult:
        if self.paper is not None:
            try:
                total, values, masks = self.paper.score(trajectory, _class(meta), meta, verdict, claim)
            except Exception as e:
                raise RewardTermError("paper", trajectory.prompt.id, e) from e
            return RewardResult(total, values, masks, verdict)
        values: dict[str, float] = {}
        masks: dict[str, bool] = {}
        total = 0.0
        for term in self.terms:
            try:
                applies = term.applies(meta)
                value = float(term.fn(trajectory, meta, **self._kwargs(term, verdict))) if applies else 0.0
            except RewardTermError:
                raise
            except Exception as e:
                raise RewardTermError(term.name, trajectory.prompt.id, e) from e
            if not math.isfinite(value):
                # Kept, not raised: the trainer skips the update of a batch with a non-finite reward
                # and says which prompts; the run goes on.
                log.warning("reward term %r gave %r for prompt %r", term.name, value, trajectory.prompt.id)
            values[term.name] = value
            masks[term.name] = applies
            total += float(self.config.weights[term.name]) * value
        return RewardResult(total, values, masks, verdict)

    def compute(self, trajectory: Trajectory, example_meta: Mapping[str, Any] | None = None) -> RewardResult:
        meta = _meta(trajectory, example_meta)
        return self._one(trajectory, meta, self._judge([trajectory], [meta])[0], self._claims([trajectory])[0])

    def __call__(
        self, trajectories: Sequence[Trajectory], example_metas: Sequence[Mapping[str, Any] | None] | None = None
    ) -> RewardBatch:
        if example_metas is not None and len(example_metas) != len(trajectories):
            raise UserError(f"got {len(trajectories)} trajectories but {len(example_metas)} metadata entries.")
        metas = [_meta(t, None if example_metas is None else example_metas[i]) for i, t in enumerate(trajectories)]
        verdicts = self._judge(trajectories, metas)
        claims = self._claims(trajectories)
        results = [self._one(t, m, v, c) for t, m, v, c in zip(trajectories, metas, verdicts, claims)]
        names = self.names
        return RewardBatch(
            total=np.asarray([r.total for r in results], np.float32),
            values={n: np.asarray([r.values[n] for r in results], np.float32) for n in names},
            masks={n: np.asarray([r.masks[n] for r in results], bool) for n in names},
            verdicts=verdicts,
        )
