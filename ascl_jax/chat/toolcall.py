"""Parse Hermes-style tool calls out of the text an assistant generated.

The model calls a tool by writing

    <tool_call>
    {"name": "consult_safety_rules", "arguments": {"category": "cyber", "query": "port scanning"}}
    </tool_call>

`parse_tool_calls(text, tools, config)` returns one entry per `<tool_call>` block, in order: a `ToolCall`
when the block is a valid call of a known tool, or a `ToolCallError` that says what is wrong. Nothing
here ever raises on model output: every problem becomes a `ToolCallError` whose `message` is written
to be shown to the model inside the tool response, so that it can correct itself on its next try.

Error kinds (`ToolCallErrorKind`, a `str` enum, so `error.kind == "malformed_json"` works):

- `malformed_json`: the text between the tags is not one JSON value;
- `not_object`: it is JSON but not an object (a list, a string, ...);
- `missing_name`: no `"name"`, or a name that is not a non-empty string;
- `unknown_tool`: a name that is not among the tools offered;
- `invalid_arguments`: `"arguments"` missing (when the tool has required parameters), not an object, or not
  valid for the tool's JSON schema (required keys, types, enums, ... see `ascl_jax.chat.json_schema`);
- `too_many_calls`: more calls in one turn than `config.max_calls_per_turn` (the first ones are parsed,
  every later one gets this error);
- `unclosed`: a `<tool_call>` without its `</tool_call>` (for example a turn cut off by the length limit);
- `unopened`: a `</tool_call>` without a `<tool_call>` before it;
- `in_reasoning`: a call written inside the reasoning block while `calls_in_reasoning="reject"`.

Calls inside the reasoning block (`<think>` ... `</think>`): ASCL's point is that the model consults the
safety rules *while* it reasons, so by default such calls are parsed like any other
(`calls_in_reasoning="allow"`). `"ignore"` treats a call inside the reasoning block as part of the
thought (it is neither returned nor counted), as most serving stacks do; `"reject"` returns an
`in_reasoning` error for it, which tells the model to close its reasoning before calling. The reasoning
block runs from `<think>` to `</think>`, or to the end of the text when it is still open (a turn that
stopped at `</tool_call>` in the middle of its reasoning); a `</think>` with no `<think>` before it (a
template whose generation prompt already opened the block) makes everything before it reasoning, and
`starts_in_reasoning=True` says that the text began inside an open block.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ascl_jax.chat.call_types import (THINK_END, THINK_START, TOOL_CALL_END, TOOL_CALL_START, ParsedCall, ToolCall,
                                     ToolCallConfig, ToolCallError, ToolCallErrorKind)
from ascl_jax.chat.json_schema import json_type, short_json, validate_arguments
from ascl_jax.errors import ConfigError

# ----------------------------------------------------------------------------------------------- tools


def normalize_tools(tools: Sequence[Mapping] | Mapping[str, Mapping] | None) -> list[dict]:
    """Tools in the OpenAI form the chat templates expect: `{"type": "function", "function": {...}}`.

    Accepts that form, bare function schemas (`{"name": ..., "description": ..., "parameters": ...}`), or a
    mapping from tool name to its parameters schema.
    """
    if tools is None:
        return []
    if isinstance(tools, Mapping):
        return [
            {"type": "function", "function": {"name": name, "parameters": dict(schema or {})}}
            for name, schema in tools.items()
        ]
    out = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            raise ConfigError(f"A tool must be a JSON schema object, got {type(tool).__name__}: {tool!r}.")
        if "function" in tool:
            out.append(dict(tool))
        elif "name" in tool:
            out.append({"type": "function", "function": dict(tool)})
        else:
            raise ConfigError(f"A tool schema needs a 'name' (or a 'function' with one): {tool!r}.")
    return out


def tool_parameters(tools: Sequence[Mapping] | Mapping[str, Mapping] | None) -> dict[str, dict] | None:
    """Tool name -> its parameters schema (None when `tools` is None: any name is accepted, nothing checked)."""
    if tools is None:
        return None
    params = {}
    for tool in normalize_tools(tools):
        fn = tool["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"A tool schema has no usable name: {tool!r}.")
        params[name] = dict(fn.get("parameters") or {"type": "object", "properties": {}})
    return params


# ------------------------------------------------------------------------------------------- reasoning


def reasoning_spans(
    text: str, *, starts_in_reasoning: bool = False, start: str = THINK_START, end: str = THINK_END
) -> list[tuple[int, int]]:
    """The `[begin, end)` character spans of the reasoning blocks in `text`, tags included.

    A block runs from `start` to the next `end`, or to the end of the text when it is never closed. An
    `end` with no `start` before it closes a block that began at the start of the text (or at the
    previous block's end).
    """
    spans = []
    pos = 0
    open_at = 0 if starts_in_reasoning else None
    while pos <= len(text):
        if open_at is None:
            i, j = text.find(start, pos), text.find(end, pos)
            if j != -1 and (i == -1 or j < i):
                # a close without an open: the block began where the previous one ended
                spans.append((pos if spans else 0, j + len(end)))
                pos = j + len(end)
                continue
            if i == -1:
                break
            open_at, pos = i, i + len(start)
        else:
            j = text.find(end, pos)
            if j == -1:
                spans.append((open_at, len(text)))
                break
            spans.append((open_at, j + len(end)))
            open_at, pos = None, j + len(end)
    return spans


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


# ------------------------------------------------------------------------------------------- parsing


def parse_tool_calls(
    text: str,
    tools: Sequence[Mapping] | Mapping[str, Mapping] | None = None,
    config: ToolCallConfig | None = None,
) -> list[ParsedCall]:
    """Every `<tool_call>` block of one assistant turn, in order, as a `ToolCall` or a `ToolCallError`.

    text: the assistant's text for this turn, as decoded (markup tags such as `<tool_call>` included).
    tools: the tools offered (OpenAI form, bare function schemas, or name -> parameters schema); with None
        any name is accepted and arguments are only checked to be an object.
    config: `ToolCallConfig` (limits and the handling of calls inside the reasoning block).

    Never raises on model output. Text outside the tags is ignored; an empty list means no call.
    """
    config = config or ToolCallConfig()
    params = tool_parameters(tools)
    spans = reasoning_spans(text, starts_in_reasoning=config.starts_in_reasoning)
    results: list[ParsedCall] = []
    n_calls = 0  # blocks counted against max_calls_per_turn
    pos = 0
    while True:
        i = text.find(TOOL_CALL_START, pos)
        stray = text.find(TOOL_CALL_END, pos)
        if stray != -1 and (i == -1 or stray < i):
            in_reasoning = _inside(stray, spans)
            if not (in_reasoning and config.calls_in_reasoning == "ignore"):
                results.append(
                    ToolCallError(
                        ToolCallErrorKind.UNOPENED,
                        f"Found {TOOL_CALL_END} without a {TOOL_CALL_START} before it, so no tool was called. "
                        + hermes_how_to_call(params),
                        text[pos : stray + len(TOOL_CALL_END)].strip(),
                        in_reasoning,
                    )
                )
            pos = stray + len(TOOL_CALL_END)
            continue
        if i == -1:
            break
        in_reasoning = _inside(i, spans)
        j = text.find(TOOL_CALL_END, i + len(TOOL_CALL_START))
        nxt = text.find(TOOL_CALL_START, i + len(TOOL_CALL_START))
        if j == -1 or (nxt != -1 and nxt < j):
            # unclosed: runs to the next opening tag or to the end of the text
            stop = len(text) if nxt == -1 else nxt
            raw = text[i:stop]
            pos = stop
            if in_reasoning and config.calls_in_reasoning == "ignore":
                continue
            results.append(
                ToolCallError(
                    ToolCallErrorKind.UNCLOSED,
                    f"The tool call was not closed: end it with {TOOL_CALL_END} right after the JSON object. "
                    + hermes_how_to_call(params),
                    raw,
                    in_reasoning,
                )
            )
            continue
        raw = text[i : j + len(TOOL_CALL_END)]
        body = text[i + len(TOOL_CALL_START) : j]
        pos = j + len(TOOL_CALL_END)
        if in_reasoning and config.calls_in_reasoning == "ignore":
            continue
        if in_reasoning and config.calls_in_reasoning == "reject":
            results.append(
                ToolCallError(
                    ToolCallErrorKind.IN_REASONING,
                    f"Tool calls are not accepted inside the reasoning block: finish your reasoning with "
                    f"{THINK_END}, then write the call.",
                    raw,
                    True,
                )
            )
            continue
        n_calls += 1
        if n_calls > config.max_calls_per_turn:
            results.append(
                ToolCallError(
                    ToolCallErrorKind.TOO_MANY_CALLS,
                    f"Only {config.max_calls_per_turn} tool call(s) per turn are run; this one was skipped. "
                    "Wait for the tool response, then call again if you still need to.",
                    raw,
                    in_reasoning,
                )
            )
            continue
        results.append(_parse_one(body, raw, params, in_reasoning))
    return results


def _parse_one(body: str, raw: str, params: dict[str, dict] | None, in_reasoning: bool) -> ParsedCall:
    try:
        obj = json.loads(body.strip())
    except (json.JSONDecodeError, RecursionError) as e:
        return ToolCallError(
            ToolCallErrorKind.MALFORMED_JSON,
            f"The tool call is not valid JSON ({json_error_detail(e)}). Write exactly one JSON object between "
            f"{TOOL_CALL_START} and {TOOL_CALL_END}. " + hermes_how_to_call(params),
            raw, in_reasoning,
        )
    return check_call(obj, raw, params, in_reasoning)


def json_error_detail(e: Exception) -> str:
    """Where a JSON text broke, for an error message meant for the model."""
    return f"{e.msg} at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)


HowToCall = Callable[[dict[str, dict] | None, str | None], str]


def check_call(
    obj: Any, raw: str, params: dict[str, dict] | None, in_reasoning: bool, how: HowToCall | None = None,
    arguments_key: str = "arguments",
) -> ParsedCall:
    """A decoded call object `{"name": ..., arguments_key: {...}}` checked against the tools offered
    (`params`: name -> parameters schema, None: any name): a `ToolCall`, or a `ToolCallError` whose
    message ends with `how(params, name)`, the family's reminder of the call syntax."""
    how = how or hermes_how_to_call

    def error(kind: ToolCallErrorKind, message: str) -> ToolCallError:
        return ToolCallError(kind, message, raw, in_reasoning)

    if not isinstance(obj, dict):
        return error(
            ToolCallErrorKind.NOT_OBJECT,
            f"The tool call must be a JSON object, not {json_type(obj)}. " + how(params, None),
        )
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        got = "no \"name\"" if "name" not in obj else f"\"name\" = {short_json(name)}"
        return error(
            ToolCallErrorKind.MISSING_NAME,
            f"The tool call has {got}; it needs \"name\": the tool's name as a string. " + how(params, None),
        )
    if params is not None and name not in params:
        available = ", ".join(f'"{n}"' for n in params) or "none"
        return error(
            ToolCallErrorKind.UNKNOWN_TOOL,
            f"There is no tool named {short_json(name)}. Available tools: {available}. " + how(params, None),
        )
    schema = params.get(name) if params is not None else None
    if arguments_key not in obj:
        if schema is not None and schema.get("required"):
            return error(
                ToolCallErrorKind.INVALID_ARGUMENTS,
                f"The call of \"{name}\" has no \"{arguments_key}\". " + how(params, name),
            )
        arguments: Any = {}
    else:
        arguments = obj[arguments_key]
        if isinstance(arguments, str):
            # some models write the arguments as a JSON-encoded string, as the OpenAI API does
            try:
                arguments = json.loads(arguments)
            except (json.JSONDecodeError, RecursionError):
                pass
    if not isinstance(arguments, dict):
        return error(
            ToolCallErrorKind.INVALID_ARGUMENTS,
            f"\"{arguments_key}\" must be a JSON object, not {json_type(arguments)}. "
            + how(params, name if params is not None else None),
        )
    if schema is not None:
        problems = validate_arguments(arguments, schema)
        if problems:
            return error(
                ToolCallErrorKind.INVALID_ARGUMENTS,
                f"The arguments of \"{name}\" are not valid: " + "; ".join(problems) + ". " + how(params, name),
            )
    return ToolCall(name=name, arguments=arguments, raw=raw, in_reasoning=in_reasoning)


def _placeholder(schema: Mapping) -> str:
    if "enum" in schema and schema["enum"]:
        return "<one of " + ", ".join(short_json(v) for v in schema["enum"]) + ">"
    t = schema.get("type")
    t = t if isinstance(t, str) else (t[0] if isinstance(t, list) and t else "value")
    return f"<{t}>"


def call_example(params: dict[str, dict] | None, name: str | None = None) -> tuple[str, str, str] | None:
    """(tool name, its arguments as a JSON-like example object, a "(required: ...)" note) for a reminder
    of the call syntax; None when the tool is not known."""
    if params and name is None and len(params) == 1:
        name = next(iter(params))
    if not (params and name in params):
        return None
    schema = params[name]
    props = schema.get("properties") or {}
    required = list(schema.get("required") or [])
    shown = required + [k for k in props if k not in required]
    args = ", ".join(f'"{k}": {_placeholder(props.get(k) or {})}' for k in shown)
    note = f" (required: {', '.join(required)})" if required else ""
    return name, "{" + args + "}", note


def hermes_how_to_call(params: dict[str, dict] | None, name: str | None = None) -> str:
    """A one-line reminder of the call format, with the tool's parameters when they are known."""
    example = call_example(params, name)
    if example is not None:
        name, args, note = example
        return f'Use: {TOOL_CALL_START}{{"name": "{name}", "arguments": {args}}}{TOOL_CALL_END}{note}'
    return f'Use: {TOOL_CALL_START}{{"name": <tool name>, "arguments": {{...}}}}{TOOL_CALL_END}'


# ------------------------------------------------------------------------------------- text helpers

_CALL_BLOCK = re.compile(re.escape(TOOL_CALL_START) + r".*?(?:" + re.escape(TOOL_CALL_END) + r"|\Z)", re.DOTALL)


def after_reasoning(text: str, *, starts_in_reasoning: bool = False) -> str:
    """What follows the last reasoning block, tool-call blocks removed ("" when that block never closed)."""
    spans = reasoning_spans(text, starts_in_reasoning=starts_in_reasoning)
    if spans:
        a, b = spans[-1]
        if not text[a:b].endswith(THINK_END):
            return ""
        text = text[b:]
    return strip_tool_calls(text)


def strip_tool_calls(text: str) -> str:
    """`text` without its `<tool_call>` blocks (an unclosed one is removed to the end) or stray `</tool_call>`."""
    return _CALL_BLOCK.sub("", text).replace(TOOL_CALL_END, "")
