"""Messages and tools -> the chat template's text, with every untrusted string still marked.

The step under `ChatFormat.render`, `encode_conversation` and `tool_turn_delta` (ascl_jax/chat/formats.py):
messages are checked and their untrusted strings wrapped in a marker character (`chat/untrusted_text.py`)
so that encoding can keep them from becoming control or markup tokens; the family's tool section is
added where its template does not write one; the Jinja template runs once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ascl_jax.chat.call_syntax import tools_system_text
from ascl_jax.chat.families import FamilySpec
from ascl_jax.chat.toolcall import normalize_tools
from ascl_jax.chat.untrusted_text import Codec, free_chars, guard_value, strings_in
from ascl_jax.errors import ChatError

Message = Mapping[str, Any]
Tools = Sequence[Mapping] | Mapping[str, Mapping] | None
ROLES = ("system", "user", "assistant", "tool")
_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")


class ChatFormat(Protocol):
    """What rendering reads of a `ascl_jax.chat.formats.ChatFormat` (a protocol, so that this module, which
    formats.py imports, needs nothing from it)."""

    family: str
    tokenizer: Any
    template: str
    enable_thinking: bool
    _codec: Codec

    @property
    def spec(self) -> FamilySpec: ...


def _prepare(fmt: ChatFormat, messages: Sequence[Message], tools: Tools, marker: str) -> tuple[list[dict], list | None]:
    """Validated, guarded copies of the messages and tools, as the template will see them."""
    codec = fmt._codec
    guard_data = functools.partial(codec.guard, marker=marker, assistant=False)
    guard_assistant = functools.partial(codec.guard, marker=marker, assistant=True)
    out: list[dict] = []
    for k, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ChatError(f"Message {k} is {type(message).__name__}, not a dict with 'role' and 'content'.")
        role = message.get("role")
        if role not in ROLES:
            raise ChatError(f"Message {k} has role {role!r}; use one of: {', '.join(ROLES)}.")
        content = message.get("content")
        if role != "assistant" and not isinstance(content, (str, list)):
            raise ChatError(f"Message {k} ({role}) needs 'content' as a string, got {type(content).__name__}.")
        if role == "assistant" and content is None and not message.get("tool_calls"):
            raise ChatError(f"Message {k} (assistant) has neither 'content' nor 'tool_calls'.")
        guard = guard_assistant if role == "assistant" else guard_data
        out.append({key: (value if key == "role" else guard_value(value, guard)) for key, value in message.items()})
    if fmt.family == "qwen3":
        _qwen3_verbatim_intermediate_turns(out)
    tool_list = normalize_tools(tools)
    tool_list = guard_value(tool_list, guard_data) if tool_list else None
    if tool_list and fmt.spec.tools_in_system:
        section = guard_data(tools_system_text(fmt.spec.call_syntax, tool_list))
        if out and out[0]["role"] == "system" and isinstance(out[0].get("content"), str):
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + section}
        else:
            out.insert(0, {"role": "system", "content": section})
    return out, tool_list


def _qwen3_verbatim_intermediate_turns(messages: list[dict]) -> None:
    """Give the assistant turns between the last user query and the final message `reasoning_content=""`.

    Qwen3's template then prints their content as it is instead of re-formatting the reasoning it finds in
    it (the same text whenever the turn is in canonical form; the sampled text otherwise). Turns before the
    last query and the final message keep the template's own handling.
    """
    last_query = -1
    for k, m in enumerate(messages):
        if m["role"] == "user" and isinstance(m.get("content"), str):
            last_query = k
    for k in range(last_query + 1, len(messages) - 1):
        m = messages[k]
        if m["role"] == "assistant" and all(m.get(key) is None for key in _REASONING_KEYS):
            m["reasoning_content"] = ""


def render_marked(
    fmt: ChatFormat, messages: Sequence[Message], tools: Tools, add_generation_prompt: bool, extra: str = ""
) -> tuple[str, str]:
    """The rendered text with protection markers still in, and the marker character."""
    blob = extra + "".join(strings_in(list(messages))) + "".join(strings_in(tools if tools is not None else []))
    marker = free_chars(blob, 1)
    msgs, tool_list = _prepare(fmt, messages, tools, marker)
    if not msgs:
        raise ChatError("The conversation has no messages.")
    try:
        text = fmt.tokenizer.apply_chat_template(
            msgs,
            tools=tool_list,
            chat_template=fmt.template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            enable_thinking=fmt.enable_thinking,
        )
    except ChatError:
        raise
    except Exception as e:  # jinja2 errors, or a template raising on bad input
        raise ChatError(f"The {fmt.family} chat template cannot render this conversation: {e}") from e
    return text, marker
