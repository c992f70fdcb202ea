"""The vocabulary of tool calls that every call syntax shares: the markup strings, a parsed call
(`ToolCall`) or what is wrong with it (`ToolCallError` and its `ToolCallErrorKind`), and how strictly a
turn is read (`ToolCallConfig`). Parsing is in `ascl_jax.chat.toolcall` (Hermes) and
`ascl_jax.chat.call_syntax` (every syntax)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ascl_jax.errors import ConfigError

TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"
THINK_START = "<think>"
THINK_END = "</think>"

CallsInReasoning = Literal["allow", "ignore", "reject"]
_CALLS_IN_REASONING = get_args(CallsInReasoning)


class ToolCallErrorKind(str, enum.Enum):
    """What is wrong with one `<tool_call>` block (compare with plain strings: `kind == "unclosed"`)."""

    MALFORMED_JSON = "malformed_json"
    NOT_OBJECT = "not_object"
    MISSING_NAME = "missing_name"
    UNKNOWN_TOOL = "unknown_tool"
    INVALID_ARGUMENTS = "invalid_arguments"
    TOO_MANY_CALLS = "too_many_calls"
    UNCLOSED = "unclosed"
    UNOPENED = "unopened"
    IN_REASONING = "in_reasoning"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ToolCall:
    """A valid call: the tool's `name`, its `arguments` (a JSON object), and the `raw` block as written."""

    name: str
    arguments: dict[str, Any]
    raw: str
    in_reasoning: bool = False


@dataclass(frozen=True)
class ToolCallError:
    """A call that cannot be run: `kind`, a `message` meant for the model, and the `raw` text it came from."""

    kind: ToolCallErrorKind
    message: str
    raw: str
    in_reasoning: bool = False


ParsedCall = ToolCall | ToolCallError


@dataclass(frozen=True)
class ToolCallConfig:
    """How strictly `parse_tool_calls` reads a turn.

    max_calls_per_turn: calls parsed per assistant turn; later ones become `too_many_calls` errors. The
        rollout stops a turn at its first `</tool_call>`, so 1 (the default) loses nothing there.
    calls_in_reasoning: "allow" (default; ASCL consults mid-reasoning), "ignore" or "reject" (see the module
        docstring).
    starts_in_reasoning: the text begins inside an open reasoning block (the generation prompt opened it).
    """

    max_calls_per_turn: int = 1
    calls_in_reasoning: CallsInReasoning = "allow"
    starts_in_reasoning: bool = False

    def __post_init__(self):
        if not isinstance(self.max_calls_per_turn, int) or self.max_calls_per_turn < 1:
            raise ConfigError(
                f"tool calls: max_calls_per_turn must be an integer >= 1, got {self.max_calls_per_turn!r}."
            )
        if self.calls_in_reasoning not in _CALLS_IN_REASONING:
            raise ConfigError(
                f"tool calls: calls_in_reasoning must be one of {', '.join(_CALLS_IN_REASONING)}, "
                f"got {self.calls_in_reasoning!r}."
            )
