"""Tool calls in the syntax of each chat family: parse a sampled turn, write a call, remove calls from an answer.

- `hermes` (Qwen, ChatML): `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks
  (`ascl_jax.chat.toolcall`).
- `llama3_json` (Llama 3.x): the whole turn is one object `{"name": ..., "parameters": {...}}` (optionally
  after `<|python_tag|>`). A turn that starts with `{"name"` is a call attempt and is checked; any other
  turn is an answer.
- `deepseek` (DeepSeek-R1): `<｜tool▁calls▁begin｜>` then per call `<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME`
  + "\\n```json\\nARGS\\n```" + `<｜tool▁call▁end｜>`, then `<｜tool▁calls▁end｜>`.

Every problem becomes a `ToolCallError` whose message, meant for the model, ends with a reminder in the
family's own syntax; nothing here raises on model output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ascl_jax.chat.families import (
    DEEPSEEK_CALL_BEGIN,
    DEEPSEEK_CALL_END,
    DEEPSEEK_CALLS_BEGIN,
    DEEPSEEK_CALLS_END,
    DEEPSEEK_SEP,
    CallSyntax,
)
from ascl_jax.chat.toolcall import (
    TOOL_CALL_END,
    TOOL_CALL_START,
    ParsedCall,
    ToolCallConfig,
    ToolCallError,
    ToolCallErrorKind,
    _how_to_call,
    call_example,
    check_call,
    json_error_detail,
    normalize_tools,
    parse_tool_calls,
    reasoning_spans,
    strip_tool_calls,
    tool_parameters,
)

PYTHON_TAG = "<|python_tag|>"
_LLAMA_CALL_START = re.compile(r'\s*(?:' + re.escape(PYTHON_TAG) + r')?\s*\{\s*"name"\s*:')


def parse_calls(syntax: CallSyntax, text: str, tools=None, config: ToolCallConfig | None = None) -> list[ParsedCall]:
    """The calls of one sampled turn (`text` as decoded, end-of-turn token strings removed)."""
    config = config or ToolCallConfig()
    if syntax == "hermes":
        return parse_tool_calls(text, tools, config)
    params = tool_parameters(tools)
    if syntax == "llama3_json":
        return _parse_llama3(text, params)
    return _parse_deepseek(text, params, config)


def call_text(syntax: CallSyntax, name: str, arguments: Mapping[str, Any]) -> str:
    """The text a model of this syntax writes to call `name` with `arguments` (the templates' own form)."""
    args = json.dumps(dict(arguments), ensure_ascii=False)
    if syntax == "hermes":
        return f'{TOOL_CALL_START}\n{{"name": "{name}", "arguments": {args}}}\n{TOOL_CALL_END}'
    if syntax == "llama3_json":
        return f'{{"name": "{name}", "parameters": {args}}}'
    return (f"{DEEPSEEK_CALLS_BEGIN}{DEEPSEEK_CALL_BEGIN}function{DEEPSEEK_SEP}{name}\n```json\n{args}\n```"
            f"{DEEPSEEK_CALL_END}{DEEPSEEK_CALLS_END}")


def strip_calls(syntax: CallSyntax, text: str) -> str:
    """`text` without its tool calls (an answer's visible text)."""
    if syntax == "hermes":
        return strip_tool_calls(text)
    if syntax == "llama3_json":
        return "" if _LLAMA_CALL_START.match(text) else text
    return _DEEPSEEK_BLOCK.sub("", text).replace(DEEPSEEK_CALLS_END, "")


def how_to_call(syntax: CallSyntax, params: dict[str, dict] | None, name: str | None = None) -> str:
    """A one-line reminder of the syntax, with the tool's parameters when they are known."""
    if syntax == "hermes":
        return _how_to_call(params, name)
    example = call_example(params, name)
    name, args, note = example if example is not None else ("<tool name>", "{...}", "")
    if syntax == "llama3_json":
        return f'Use, as your whole reply: {{"name": "{name}", "parameters": {args}}}{note}'
    return (f"Use: {DEEPSEEK_CALLS_BEGIN}{DEEPSEEK_CALL_BEGIN}function{DEEPSEEK_SEP}{name}\\n```json\\n{args}\\n```"
            f"{DEEPSEEK_CALL_END}{DEEPSEEK_CALLS_END}{note}")


def tools_system_text(syntax: CallSyntax, tools: Sequence[Mapping] | Mapping | None) -> str:
    """The tool section a family whose template ignores `tools` gets in its system prompt."""
    listed = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in normalize_tools(tools))
    example = call_text(syntax, "<tool name>", {"<argument>": "<value>"}).replace('"<tool name>"', "<tool name>")
    return ("## Tools\n\nYou may call these functions; each is described by a JSON schema:\n" + listed
            + "\n\nTo call one, write exactly:\n" + example
            + "\nand wait for its output, which comes back to you before you go on.")


# ------------------------------------------------------------------------------------------- Llama 3


def _how_llama(params, name):
    return how_to_call("llama3_json", params, name)


def _parse_llama3(text: str, params: dict[str, dict] | None) -> list[ParsedCall]:
    if not _LLAMA_CALL_START.match(text):
        return []
    raw = text.strip()
    body = raw[len(PYTHON_TAG):].strip() if raw.startswith(PYTHON_TAG) else raw
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as e:
        return [ToolCallError(ToolCallErrorKind.MALFORMED_JSON,
                              f"The tool call is not valid JSON ({json_error_detail(e)}). " + _how_llama(params, None),
                              raw)]
    key = "arguments" if isinstance(obj, dict) and "parameters" not in obj and "arguments" in obj else "parameters"
    return [check_call(obj, raw, params, False, _how_llama, arguments_key=key)]


# ------------------------------------------------------------------------------------------ DeepSeek

_DEEPSEEK_BLOCK = re.compile(re.escape(DEEPSEEK_CALLS_BEGIN) + r".*?(?:" + re.escape(DEEPSEEK_CALLS_END) + r"|\Z)",
                             re.DOTALL)
_FENCE = re.compile(r"\A\s*```(?:json)?\s*\n?(.*?)\n?\s*```\s*\Z", re.DOTALL)


def _how_deepseek(params, name):
    return how_to_call("deepseek", params, name)


def _parse_deepseek(text: str, params: dict[str, dict] | None, config: ToolCallConfig) -> list[ParsedCall]:
    spans = reasoning_spans(text, starts_in_reasoning=config.starts_in_reasoning)
    results: list[ParsedCall] = []
    n_calls = 0
    pos = 0
    while True:
        i = text.find(DEEPSEEK_CALL_BEGIN, pos)
        if i == -1:
            break
        in_reasoning = any(a <= i < b for a, b in spans)
        j = text.find(DEEPSEEK_CALL_END, i)
        nxt = text.find(DEEPSEEK_CALL_BEGIN, i + len(DEEPSEEK_CALL_BEGIN))
        if j == -1 or (nxt != -1 and nxt < j):
            stop = len(text) if nxt == -1 else nxt
            raw, pos = text[i:stop], stop
            if not (in_reasoning and config.calls_in_reasoning == "ignore"):
                results.append(ToolCallError(
                    ToolCallErrorKind.UNCLOSED,
                    f"The tool call was not closed with {DEEPSEEK_CALL_END}. " + _how_deepseek(params, None),
                    raw, in_reasoning))
            continue
        raw, body = text[i : j + len(DEEPSEEK_CALL_END)], text[i + len(DEEPSEEK_CALL_BEGIN) : j]
        pos = j + len(DEEPSEEK_CALL_END)
        if in_reasoning and config.calls_in_reasoning == "ignore":
            continue
        if in_reasoning and config.calls_in_reasoning == "reject":
            results.append(ToolCallError(ToolCallErrorKind.IN_REASONING,
                                         "Tool calls are not accepted inside the reasoning block: finish your "
                                         "reasoning with </think>, then write the call.", raw, True))
            continue
        n_calls += 1
        if n_calls > config.max_calls_per_turn:
            results.append(ToolCallError(
                ToolCallErrorKind.TOO_MANY_CALLS,
                f"Only {config.max_calls_per_turn} tool call(s) per turn are run; this one was skipped. "
                "Wait for the tool output, then call again if you still need to.", raw, in_reasoning))
            continue
        results.append(_deepseek_one(body, raw, params, in_reasoning))
    return results


def _deepseek_one(body: str, raw: str, params, in_reasoning: bool) -> ParsedCall:
    if DEEPSEEK_SEP not in body:
        return ToolCallError(ToolCallErrorKind.MISSING_NAME,
                             f"The tool call has no {DEEPSEEK_SEP} before the tool's name. "
                             + _how_deepseek(params, None), raw, in_reasoning)
    rest = body.split(DEEPSEEK_SEP, 1)[1]
    name, _, args_text = rest.partition("\n")
    fenced = _FENCE.match(args_text)
    args_text = fenced.group(1) if fenced else args_text
    try:
        arguments = json.loads(args_text) if args_text.strip() else {}
    except (json.JSONDecodeError, RecursionError) as e:
        return ToolCallError(ToolCallErrorKind.MALFORMED_JSON,
                             f"The arguments are not valid JSON ({json_error_detail(e)}). "
                             + _how_deepseek(params, name.strip() or None), raw, in_reasoning)
    return check_call({"name": name.strip(), "arguments": arguments}, raw, params, in_reasoning, _how_deepseek)
