"""Tool calls in the syntax of each chat family: parse a sampled turn, write a call, remove calls from an answer.

- `hermes` (Qwen, ChatML): `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks
  (`ascl_jax.chat.toolcall`).
- `llama3_json` (Llama 3.x): the whole turn is one object `{"name": ..., "parameters": {...}}` (optionally
  after `<|python_tag|>`). A turn that starts with `{"name"` is a call attempt and is checked; any other
  turn is an answer.
- `deepseek` (DeepSeek-R1): `<｜tool▁calls▁begin｜>` then per call `<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME`
  + "\\n```json\\nARGS\\n```" + `<｜tool▁call▁end｜>`, then `<｜tool▁calls▁end｜>`.

One `CallSyntaxSpec` per syntax (`CALL_SYNTAXES`, keyed by the names of `families.CallSyntax`); the
module functions look the syntax up there, and a name the table does not have is a `ConfigError`.
Every problem in a sampled turn becomes a `ToolCallError` whose message, meant for the model, ends with a
reminder in the family's own syntax; nothing here raises on model output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from ascl_jax.chat.families import (
    DEEPSEEK_CALL_BEGIN,
    DEEPSEEK_CALL_END,
    DEEPSEEK_CALLS_BEGIN,
    DEEPSEEK_CALLS_END,
    DEEPSEEK_SEP,
    CallSyntax,
)
from ascl_jax.chat.call_types import (TOOL_CALL_END, TOOL_CALL_START, ParsedCall, ToolCallConfig, ToolCallError,
                                     ToolCallErrorKind)
from ascl_jax.chat.toolcall import (call_example, check_call, hermes_how_to_call, json_error_detail, normalize_tools,
                                   parse_tool_calls, reasoning_spans, strip_tool_calls, tool_parameters)
from ascl_jax.errors import ConfigError

PYTHON_TAG = "<|python_tag|>"
_LLAMA_CALL_START = re.compile(r'\s*(?:' + re.escape(PYTHON_TAG) + r')?\s*\{\s*"name"\s*:')

Tools = Sequence[Mapping] | Mapping[str, Mapping] | None
Params = dict[str, dict] | None


@dataclass(frozen=True)
class CallSyntaxSpec:
    """How one call syntax is read and written (one entry of `CALL_SYNTAXES`).

    parse: (text, tools, config) -> list[ParsedCall]: the calls of one sampled turn; never raises on
        model output.
    render: (name, arguments as JSON text) -> str: the text a model writes to make that call.
    strip: (text) -> str: `text` without its calls.
    how_to_call: (params, name or None) -> str: a one-line reminder of the syntax (params: tool name ->
        parameters schema, or None when the tools are not known).
    """

    parse: Callable[[str, Tools, ToolCallConfig], list[ParsedCall]]
    render: Callable[[str, str], str]
    strip: Callable[[str], str]
    how_to_call: Callable[[Params, str | None], str]


def call_syntax_spec(syntax: str) -> CallSyntaxSpec:
    """The table entry of `syntax`; ConfigError naming the known syntaxes when there is none (an unknown
    name must not fall through to some other family's syntax)."""
    spec = CALL_SYNTAXES.get(syntax)
    if spec is None:
        raise ConfigError(f"Unknown call syntax {syntax!r}; known: {', '.join(CALL_SYNTAXES)}.")
    return spec


def parse_calls(syntax: CallSyntax, text: str, tools=None, config: ToolCallConfig | None = None) -> list[ParsedCall]:
    """The calls of one sampled turn (`text` as decoded, end-of-turn token strings removed)."""
    return call_syntax_spec(syntax).parse(text, tools, config or ToolCallConfig())


def call_text(syntax: CallSyntax, name: str, arguments: Mapping[str, Any]) -> str:
    """The text a model of this syntax writes to call `name` with `arguments` (the templates' own form)."""
    spec = call_syntax_spec(syntax)
    return spec.render(name, json.dumps(dict(arguments), ensure_ascii=False))


def strip_calls(syntax: CallSyntax, text: str) -> str:
    """`text` without its tool calls (an answer's visible text)."""
    return call_syntax_spec(syntax).strip(text)


def how_to_call(syntax: CallSyntax, params: dict[str, dict] | None, name: str | None = None) -> str:
    """A one-line reminder of the syntax, with the tool's parameters when they are known."""
    return call_syntax_spec(syntax).how_to_call(params, name)


def tools_system_text(syntax: CallSyntax, tools: Sequence[Mapping] | Mapping | None) -> str:
    """The tool section a family whose template ignores `tools` gets in its system prompt."""
    # the example first: an unknown syntax is the error to report, not whatever is wrong with the tools
    example = call_text(syntax, "<tool name>", {"<argument>": "<value>"}).replace('"<tool name>"', "<tool name>")
    listed = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in normalize_tools(tools))
    return ("## Tools\n\nYou may call these functions; each is described by a JSON schema:\n" + listed
            + "\n\nTo call one, write exactly:\n" + example
            + "\nand wait for its output, which comes back to you before you go on.")


def _example(params: Params, name: str | None) -> tuple[str, str, str]:
    """(name, arguments, note) for a reminder; placeholders when the tool is not known."""
    example = call_example(params, name)
    return example if example is not None else ("<tool name>", "{...}", "")


# -------------------------------------------------------------------------------------------- Hermes


def _render_hermes(name: str, args: str) -> str:
    return f'{TOOL_CALL_START}\n{{"name": "{name}", "arguments": {args}}}\n{TOOL_CALL_END}'


# ------------------------------------------------------------------------------------------- Llama 3


def _render_llama(name: str, args: str) -> str:
    return f'{{"name": "{name}", "parameters": {args}}}'


def _strip_llama(text: str) -> str:
    # a call is the whole turn, so a turn that opens as one has no answer text
    return "" if _LLAMA_CALL_START.match(text) else text


def _how_llama(params: Params, name: str | None) -> str:
    name, args, note = _example(params, name)
    return f'Use, as your whole reply: {{"name": "{name}", "parameters": {args}}}{note}'


def _parse_llama3(text: str, tools: Tools, config: ToolCallConfig) -> list[ParsedCall]:
    # one call per turn and no reasoning block to look inside, so `config` has nothing to decide here
    params = tool_parameters(tools)
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


def _render_deepseek(name: str, args: str) -> str:
    return (f"{DEEPSEEK_CALLS_BEGIN}{DEEPSEEK_CALL_BEGIN}function{DEEPSEEK_SEP}{name}\n```json\n{args}\n```"
            f"{DEEPSEEK_CALL_END}{DEEPSEEK_CALLS_END}")


def _strip_deepseek(text: str) -> str:
    return _DEEPSEEK_BLOCK.sub("", text).replace(DEEPSEEK_CALLS_END, "")


def _how_deepseek(params: Params, name: str | None) -> str:
    # the newlines are written as \\n: the reminder is one line
    name, args, note = _example(params, name)
    return (f"Use: {DEEPSEEK_CALLS_BEGIN}{DEEPSEEK_CALL_BEGIN}function{DEEPSEEK_SEP}{name}\\n```json\\n{args}\\n```"
            f"{DEEPSEEK_CALL_END}{DEEPSEEK_CALLS_END}{note}")


def _parse_deepseek(text: str, tools: Tools, config: ToolCallConfig) -> list[ParsedCall]:
    params = tool_parameters(tools)
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


# --------------------------------------------------------------------------------------------- table

CALL_SYNTAXES: dict[CallSyntax, CallSyntaxSpec] = {
    "hermes": CallSyntaxSpec(parse=parse_tool_calls, render=_render_hermes, strip=strip_tool_calls,
                             how_to_call=hermes_how_to_call),
    "llama3_json": CallSyntaxSpec(parse=_parse_llama3, render=_render_llama, strip=_strip_llama,
                                  how_to_call=_how_llama),
    "deepseek": CallSyntaxSpec(parse=_parse_deepseek, render=_render_deepseek, strip=_strip_deepseek,
                               how_to_call=_how_deepseek),
}
# `CallSyntax` (chat/families.py) is the one list of names; a name added there without an entry here, or
# the other way round, fails at import rather than at the first call in that syntax.
if tuple(CALL_SYNTAXES) != get_args(CallSyntax):
    raise ImportError(f"CALL_SYNTAXES has {tuple(CALL_SYNTAXES)}, CallSyntax names {get_args(CallSyntax)}.")
