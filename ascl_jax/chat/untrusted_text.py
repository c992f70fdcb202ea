"""Untrusted text: the tokenizer tables that keep content from ever becoming a control token.

Content of system, user and tool messages (prompts, rules, tool output) and every
string in the tool schemas can never become a control or markup token: a rule containing `<|im_end|>`,
`<|im_start|>assistant` or `<tool_call>` is tokenized as ordinary byte-level pieces, so it cannot end a
turn, forge a turn or forge a call. In assistant content the markup tokens the model writes itself
(`<think>`, `</think>`, `<tool_call>`, `</tool_call>`, ...: the tokenizer's non-special added tokens) are
recognised, the special ones (`<|im_end|>`, `<|im_start|>`, `<|endoftext|>`) are not. How: before rendering,
each occurrence of a protected token string in such text gets an invisible marker character inserted
after its first character, so the template's output contains control tokens only where the template
itself wrote them; the rendered text is then split at the real control tokens, and the text between them
(markers removed) is encoded by a copy of the tokenizer that has no added tokens at all. The renderers of
`ascl_jax.chat.formats` (`render`, `encode_conversation`, `prompt_tokens`, `tool_turn_delta`) all follow this one rule, so the delta equality
holds for any content. For text without protected strings the tokens are the tokenizer's ordinary
encoding of `render(...)` (so, for canonical turns, its own `apply_chat_template(..., tokenize=True)`). Note
that the tokenizer's `split_special_tokens=True` is not enough for this: it still matches the non-special
added tokens, such as Qwen's `<tool_call>`. One visible consequence, which is the point: Qwen3's template
treats a *user* message wrapped in `<tool_response>...</tool_response>` as a tool result; here it stays a user
query.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Mapping
from typing import Any

from tokenizers import Tokenizer

from ascl_jax.errors import ChatError, ConfigError


class Codec:
    """Per-tokenizer tables: the added tokens, the patterns that find them, and a copy with no added tokens."""

    def __init__(self, tokenizer):
        backend = tokenizer.backend_tokenizer
        decoder = backend.get_added_tokens_decoder()  # id -> AddedToken
        self.added: dict[str, int] = {tok.content: i for i, tok in decoder.items()}
        self.special = frozenset(tok.content for tok in decoder.values() if tok.special)
        self.control_re = _alternation(self.added)
        self.special_re = _alternation(self.special)
        spec = json.loads(backend.to_str())
        spec["added_tokens"] = []
        self.plain = Tokenizer.from_str(json.dumps(spec))
        added_ids = set(self.added.values())
        for content in self.added:
            if added_ids & set(self.encode_plain(content)):
                raise ConfigError(
                    f"This tokenizer's BPE merges rebuild the control token {content!r} from plain text, so "
                    "untrusted text could forge it; use a tokenizer whose control tokens are added tokens only."
                )

    def encode_plain(self, text: str) -> list[int]:
        return self.plain.encode(text, add_special_tokens=False).ids if text else []

    def encode_marked(self, text: str, markers: str) -> list[int]:
        """Split `text` at real added tokens; encode the rest (marker characters removed) as plain text."""
        ids: list[int] = []
        pos = 0
        strip = str.maketrans("", "", markers)
        if self.control_re is not None:
            for m in self.control_re.finditer(text):
                if m.start() > pos:
                    ids += self.encode_plain(text[pos : m.start()].translate(strip))
                ids.append(self.added[m.group()])
                pos = m.end()
        if pos < len(text):
            ids += self.encode_plain(text[pos:].translate(strip))
        return ids

    def guard(self, text: str, marker: str, *, assistant: bool) -> str:
        """Break every protected token string in `text` with `marker` (all added tokens, or only special ones)."""
        pattern = self.special_re if assistant else self.control_re
        if pattern is None:
            return text
        return pattern.sub(lambda m: m.group()[0] + marker + m.group()[1:], text)


def _alternation(strings) -> re.Pattern | None:
    strings = sorted(strings, key=len, reverse=True)
    return re.compile("|".join(re.escape(s) for s in strings)) if strings else None


_CODECS: "weakref.WeakKeyDictionary[Any, Codec]" = weakref.WeakKeyDictionary()


def codec_for(tokenizer) -> Codec:
    """The tokenizer's `Codec`, built once per tokenizer object (the tables take a while to build)."""
    try:
        return _CODECS[tokenizer]
    except (KeyError, TypeError):
        pass
    codec = Codec(tokenizer)
    try:
        _CODECS[tokenizer] = codec
    except TypeError:
        pass
    return codec


def free_chars(blob: str, n: int) -> str:
    """`n` private-use characters that do not occur in `blob` (markers and sentinels)."""
    out = []
    for cp in range(0xF0000, 0xFFFFE):
        c = chr(cp)
        if c not in blob:
            out.append(c)
            if len(out) == n:
                return "".join(out)
    raise ChatError("The conversation uses every private-use character, so it cannot be marked; remove them.")


def strings_in(value: Any):
    """Every string in a nested value of mappings (keys too), lists and tuples."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings_in(v)


def guard_value(value: Any, guard) -> Any:
    """`value` with `guard` applied to every string in it (mapping keys too)."""
    if isinstance(value, str):
        return guard(value)
    if isinstance(value, Mapping):
        return {guard(k) if isinstance(k, str) else k: guard_value(v, guard) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [guard_value(v, guard) for v in value]
    return value
