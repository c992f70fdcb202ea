"""What a rollout hands to training: one `Trajectory` per sampled sequence (docs/design.md §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

STOP_REASONS = ("eos", "length", "tool_cap", "error")


@dataclass(frozen=True)
class Prompt:
    """One prompt of the data: its chat messages (system/user) and metadata that travels with it
    (e.g. `class`: harmful / benign / utility, `reference`: a verifiable answer)."""

    id: str
    messages: tuple[dict[str, Any], ...]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolTurn:
    """One tool call as the host saw it: the raw call text, the parsed call (or its error), the text
    returned to the model, and the rules that text holds."""

    raw: str
    name: str | None
    arguments: dict[str, Any] | None
    error: str | None
    response: str
    rule_ids: tuple[str, ...]
    truncated: bool


@dataclass(frozen=True)
class Trajectory:
    """tokens i32[N]: prompt + everything after it; loss_mask i8[N]: 1 exactly on tokens the policy
    sampled (0 on prompt, template deltas and tool text); sampler_logprobs f32[N]: the sampler's
    log-probability at sampled tokens, 0 elsewhere. `group_id` indexes the prompt in its batch; the
    `group_size` samples of a prompt share it."""

    prompt: Prompt
    group_id: int
    sample_index: int
    tokens: np.ndarray
    prompt_len: int
    loss_mask: np.ndarray
    sampler_logprobs: np.ndarray
    tool_turns: tuple[ToolTurn, ...]
    stop_reason: str
    completion_text: str
    final_answer: str

    @property
    def num_tool_calls(self) -> int:
        return len(self.tool_turns)

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(r for t in self.tool_turns for r in t.rule_ids)

    @property
    def consulted(self) -> bool:
        """Called the rule tool successfully at least once (rules came back)."""
        return any(t.error is None for t in self.tool_turns)

    @property
    def truncated(self) -> bool:
        """Stopped by the token budget (stop reason length), not by its own end."""
        return self.stop_reason == "length"

    @property
    def num_sampled(self) -> int:
        return int(self.loss_mask.sum())

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt.id,
            "group_id": self.group_id,
            "sample_index": self.sample_index,
            "meta": self.prompt.meta,
            "tokens": self.tokens.tolist(),
            "prompt_len": self.prompt_len,
            "loss_mask": self.loss_mask.tolist(),
            "sampler_logprobs": [round(float(x), 6) for x in self.sampler_logprobs],
            "num_tool_calls": self.num_tool_calls,
            "rule_ids": list(self.rule_ids),
            "tool_turns": [
                {"raw": t.raw, "name": t.name, "arguments": t.arguments, "error": t.error, "response": t.response,
                 "rule_ids": list(t.rule_ids), "truncated": t.truncated}
                for t in self.tool_turns
            ],
            "stop_reason": self.stop_reason,
            "completion": self.completion_text,
            "final_answer": self.final_answer,
        }
