"""Chat formats: messages -> text -> tokens, the tool-turn delta, and what ends a turn, per model family.

A `ChatFormat` is a frozen dataclass holding a tokenizer, a Jinja chat template and a family name; the
work is done by the module functions below (`render`, `encode_conversation`, `prompt_tokens`,
`tool_turn_delta`, `final_answer`, ...), which the dataclass also offers as methods; the template step
under them (checking messages, marking untrusted text, running Jinja) is `ascl_jax.chat.template_render`. Families:

- `qwen3`: Qwen3's official template (hybrid thinking: the model opens `<think>` itself; with
  `enable_thinking=False` the generation prompt carries an empty `<think>\\n\\n</think>\\n\\n`);
- `qwen2_5`: Qwen2.5-Instruct's official template;
- `chatml`: `ascl_jax/chat/templates/chatml_tools.jinja`, ChatML for the SmolLM2 family with the same Hermes
  `<tool_call>` / `<tool_response>` tags (as plain text there: SmolLM2 has no such tokens).

All three use `<|im_start|>role\\n...<|im_end|>\\n` turns; tool results go back as a user turn of
`<tool_response>\\n...\\n</tool_response>` blocks.

- `llama3` and `deepseek_r1`: Llama 3.1-3.3 Instruct and DeepSeek-R1-Distill, with their published templates;
  their turn markup, end tokens and call syntax are described in `ascl_jax.chat.families`, which holds
  every family's fixed facts (`FamilySpec`); the calls are written and read by `ascl_jax.chat.call_syntax`.

**Token in, token out.** During a rollout the prompt is `prompt_tokens(messages, tools)`; the model samples
its turn; if the turn ended with a tool call, the host appends `tool_turn_delta(responses)` (end of the
assistant turn, the tool turn, the opening of the next assistant turn) and the model continues from the
same KV cache. The invariant, tested per family:

    prompt_tokens(msgs, tools) + sampled_1 + tool_turn_delta([r]) + sampled_2 + assistant_turn_end_tokens
        == encode_conversation(msgs + [assistant(sampled_1), tool(r), assistant(sampled_2)], tools)

where `sampled_k` is the model's text tokenized as the model writes it (`encode_assistant`), the
assistant messages are `assistant_message(text)`, and the first of `assistant_turn_end_tokens` is the eos
the model samples. Two things can break it, both outside the template's control, and neither touches
training, which always uses the tokens that were actually sampled:

- BPE: if the model sampled a non-canonical split of its text (e.g. `"Hel" "lo"`), no re-tokenization of
  the text gives those tokens back.
- Qwen3's template rewrites reasoning. It drops the `<think>` block of every assistant turn *before the last
  user query* (earlier exchanges of a multi-turn chat). The turns of one ASCL episode all come after its
  single user query (tool results are `tool` messages, which the template does not count as queries), so
  their reasoning is kept: the model saw it in its KV cache and the re-render shows it too. For those
  turns the template also re-formats the reasoning (`<think>\\n` + reasoning.strip() + `\\n</think>\\n\\n`),
  and leaves a turn without reasoning bare. This module renders the *intermediate* turns of the current
  exchange verbatim (it passes `reasoning_content=""`, which makes the official template print the content
  as it is), so a call made mid-reasoning (`<think>\\n... <tool_call>...</tool_call>`, no `</think>` yet) and a
  turn that started with an empty think block (non-thinking mode) re-render exactly as sampled. The *final*
  assistant turn always goes through the template's reformatting, so it re-renders exactly only when
  sampled in the template's canonical form (`<think>\\n...\\n</think>\\n\\n` + answer), which is how Qwen3
  writes it. Earlier exchanges keep the official behaviour (reasoning dropped), which is what the model
  sees when such a history is its prompt.

**Untrusted text.** Content of system, user and tool messages and every string in the tool schemas can
never become a control or markup token (a rule containing `<|im_end|>` cannot end a turn or forge a call);
`ascl_jax.chat.untrusted_text` says how. `render`, `encode_conversation`, `prompt_tokens` and
`tool_turn_delta` all follow that one rule, so the delta equality holds for any content.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ascl_jax.chat.call_syntax import call_text, parse_calls, strip_calls
from ascl_jax.chat.families import FAMILIES, FAMILY_SPECS, FamilySpec
from ascl_jax.chat.template_render import Message, Tools, render_marked
from ascl_jax.chat.template_text import chat_template_text
from ascl_jax.chat.call_types import THINK_END, ParsedCall, ToolCallConfig
from ascl_jax.chat.toolcall import reasoning_spans
from ascl_jax.chat.untrusted_text import Codec, codec_for, free_chars
from ascl_jax.errors import ChatError, ConfigError


# ------------------------------------------------------------------------------------- the dataclass


@dataclass(frozen=True)
class ChatFormat:
    """One model family's chat format: a tokenizer and a chat template (build it with `chat_format`).

    family: one of `FAMILIES` (see `ascl_jax.chat.families`).
    tokenizer: a Hugging Face fast tokenizer (treated as read-only).
    template: the Jinja chat template text.
    enable_thinking: Qwen3 only; False makes the generation prompt close an empty reasoning block.
    """

    family: str
    tokenizer: Any = field(repr=False)  # compared by identity
    template: str = field(repr=False)
    enable_thinking: bool = True
    _codec: Codec = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ConfigError(f"Unknown chat format {self.family!r}; choose one of: {', '.join(FAMILIES)}.")
        codec = codec_for(self.tokenizer)
        for needed in FAMILY_SPECS[self.family].required_tokens:
            if needed not in codec.added:
                raise ConfigError(
                    f"The {self.family} chat format needs {needed} as a single token, but this tokenizer does not "
                    "have it; pass the model's own tokenizer."
                )
        object.__setattr__(self, "_codec", codec)

    @property
    def spec(self) -> FamilySpec:
        return FAMILY_SPECS[self.family]

    @property
    def call_ends_turn(self) -> bool:
        """A call is a whole turn that ends with an end token (Llama 3), not at a call-end marker."""
        return self.spec.call_ends_turn

    # -- rendering and tokenization (see the module functions of the same names)

    def render(self, messages: Sequence[Message], tools: Tools = None, add_generation_prompt: bool = False) -> str:
        return render(self, messages, tools, add_generation_prompt)

    def encode_conversation(
        self, messages: Sequence[Message], tools: Tools = None, add_generation_prompt: bool = False
    ) -> list[int]:
        return encode_conversation(self, messages, tools, add_generation_prompt)

    def prompt_tokens(self, messages: Sequence[Message], tools: Tools = None) -> list[int]:
        return prompt_tokens(self, messages, tools)

    def tool_turn_delta(self, tool_responses: Sequence[str]) -> list[int]:
        return tool_turn_delta(self, tool_responses)

    def encode_assistant(self, text: str) -> list[int]:
        return encode_assistant(self, text)

    def encode_text(self, text: str) -> list[int]:
        return encode_text(self, text)

    def final_answer(self, text: str) -> str:
        return final_answer(self, text)

    def assistant_message(self, sampled_text: str, after_tool: bool = False) -> dict:
        return assistant_message(self, sampled_text, after_tool)

    def call_text(self, name: str, arguments: Mapping[str, Any]) -> str:
        """The text this family's model writes to call `name` (as its template renders a call)."""
        return call_text(self.spec.call_syntax, name, arguments)

    def parse_tool_calls(
        self, text: str, tools: Tools = None, config: ToolCallConfig | None = None
    ) -> list[ParsedCall]:
        return parse_turn_tool_calls(self, text, tools, config)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, every token included (markup and control tokens as their strings)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    # -- what ends a turn

    @functools.cached_property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Tokens that end the model's turn, the one the template writes first (`<|im_end|>`, `<|eot_id|>`,
        `<｜end▁of▁sentence｜>`), then the family's others and the tokenizer's eos where they exist."""
        ids = []
        for content in self.spec.end_tokens + (self.tokenizer.eos_token,):
            i = self._codec.added.get(content) if content else None
            if i is not None and i not in ids:
                ids.append(i)
        return tuple(ids)

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Text that ends a tool-calling turn (the host then parses the call and appends the tool turn);
        empty where a call ends the turn itself."""
        return (self.spec.call_end,) if self.spec.call_end else ()

    @functools.cached_property
    def tool_call_end_token_ids(self) -> tuple[int, ...]:
        """Token ids that end a tool-calling turn when sampled: `</tool_call>` where it is a single token
        (Qwen: 151658); empty where it is not (SmolLM2, DeepSeek), and then `tool_call_end_sequence` is the
        fast path."""
        i = self._codec.added.get(self.spec.call_end) if self.spec.call_end else None
        return (i,) if i is not None else ()

    @functools.cached_property
    def tool_call_end_sequence(self) -> tuple[int, ...]:
        """The canonical tokens of the call-end marker (one token for Qwen; empty where a call ends the turn).
        A model may also write it with other splits, so a decoder that stops on this suffix should also
        check `stop_strings` on the decoded text."""
        return tuple(encode_assistant(self, self.spec.call_end)) if self.spec.call_end else ()

    @functools.cached_property
    def tool_call_end_sequences(self) -> tuple[tuple[int, ...], ...]:
        """Every token sequence that ends a call: `tool_call_end_sequence`, and for each of the family's
        `call_end_contexts` the tokens of context + call end from the one where the call end begins (a
        multi-token marker whose first piece BPE merges with the text before it)."""
        seqs = [self.tool_call_end_sequence]
        end = self.spec.call_end
        for context in self.spec.call_end_contexts:
            ids = encode_assistant(self, context + end)
            # the shortest suffix whose text still holds the whole call end
            j = max(k for k in range(len(ids)) if self.decode(ids[k:]).endswith(end))
            if tuple(ids[j:]) not in seqs:
                seqs.append(tuple(ids[j:]))
        return tuple(seqs)

    def stop_token_ids(self, with_tools: bool) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
        """(token ids that end the episode, token sequences that hand the turn to the host for a tool call).
        Where a call ends the turn (Llama 3), with tools offered the turn's end tokens hand the row to the
        host, which ends the episode when the turn holds no call; only `<|end_of_text|>` ends it outright."""
        if not with_tools:
            return self.eos_token_ids, ()
        if not self.call_ends_turn:
            return self.eos_token_ids, self.tool_call_end_sequences
        turn_ends = tuple(self._codec.added[c] for c in self.spec.end_tokens[:2] if c in self._codec.added)
        return tuple(i for i in self.eos_token_ids if i not in turn_ends), tuple((i,) for i in turn_ends)

    def strip_end_tokens(self, text: str) -> str:
        """`text` without the strings of the end-of-turn tokens (decoded turns carry the sampled one)."""
        for i in self.eos_token_ids:
            content = next((c for c, j in self._codec.added.items() if j == i), None)
            if content:
                text = text.replace(content, "")
        return text

    @functools.cached_property
    def assistant_turn_end_tokens(self) -> tuple[int, ...]:
        """What the template writes after an assistant turn's text: `<|im_end|>` (the eos the model samples)
        and the newline the template adds after it."""
        marked, markers, sentinel = _render_with_sentinel(self, [])
        return tuple(self._codec.encode_marked(marked[marked.index(sentinel) + len(sentinel) :], markers))

    @functools.cached_property
    def generation_prefix(self) -> str:
        """Text the generation prompt adds after the assistant header (Qwen3 non-thinking:
        `<think>\\n\\n</think>\\n\\n`; DeepSeek-R1: `<think>\\n`; otherwise empty). The model's turn text
        starts after it."""
        probe = [{"role": "user", "content": "x"}]
        with_prompt = render(self, probe, None, True)
        without = render(self, probe, None, False)
        if not with_prompt.startswith(without):
            raise ChatError(f"The {self.family} template's generation prompt does not extend the conversation.")
        added = with_prompt[len(without) :]
        header = self.spec.assistant_header
        if not added.startswith(header):
            raise ChatError(f"The {self.family} template's generation prompt does not open an assistant turn.")
        return added[len(header) :]

    @functools.cached_property
    def continuation_prefix(self) -> str:
        """Text the tool-turn delta leaves after the last tool result, before the model's next text: the
        generation prefix where the delta opens a new assistant turn (ChatML, Llama 3); empty where the
        model goes on in the same turn (DeepSeek-R1)."""
        marked, markers, sentinel = _render_with_sentinel(self, ["x"])
        tail = marked[marked.index(sentinel) + len(sentinel):]
        header = self.spec.assistant_header
        return tail[tail.rindex(header) + len(header):].translate(str.maketrans("", "", markers)) \
            if header in tail else ""

    @functools.cached_property
    def starts_in_reasoning(self) -> bool:
        """Whether the generation prompt leaves a reasoning block open (the model's text starts inside it)."""
        spans = reasoning_spans(self.generation_prefix)
        return bool(spans) and not self.generation_prefix[: spans[-1][1]].endswith(THINK_END)


def chat_format(
    family: str = "qwen3", tokenizer=None, *, enable_thinking: bool = True, template: str | None = None
) -> ChatFormat:
    """The `ChatFormat` of `family` (one of `FAMILIES`: "qwen3", "qwen2_5", "chatml", "chatml_compact",
    "llama3", "deepseek_r1").

    tokenizer: the model's tokenizer, e.g. `ascl_jax.models.qwen_tokenizer.qwen_tokenizer("qwen3")` for the
        Qwen families or `ascl_jax.models.gguf.load_gguf(smollm2_gguf_path()).tokenizer` for "chatml". It is
        an argument rather than a default so that `chat/` needs nothing from `models/` (docs/design.md §3).
    template: overrides the packaged template of the family (Jinja text).
    """
    if family not in FAMILIES:
        raise ConfigError(f"Unknown chat format {family!r}; choose one of: {', '.join(FAMILIES)}.")
    if tokenizer is None:
        raise ConfigError(
            f"The {family} chat format needs the model's tokenizer, e.g. chat_format('qwen3', qwen_tokenizer('qwen3')) "
            "or chat_format('chatml', load_gguf(smollm2_gguf_path()).tokenizer)."
        )
    return ChatFormat(
        family=family,
        tokenizer=tokenizer,
        template=template if template is not None else chat_template_text(FAMILY_SPECS[family].template),
        enable_thinking=enable_thinking,
    )


# -------------------------------------------------------------------------------------- rendering


def render(
    fmt: ChatFormat, messages: Sequence[Message], tools: Tools = None, add_generation_prompt: bool = False
) -> str:
    """The conversation as text, as the template writes it (equal to the tokenizer's own
    `apply_chat_template(..., tokenize=False)` except for the protections described in the module docstring)."""
    text, marker = render_marked(fmt, messages, tools, add_generation_prompt)
    return text.replace(marker, "")


def encode_conversation(
    fmt: ChatFormat, messages: Sequence[Message], tools: Tools = None, add_generation_prompt: bool = False
) -> list[int]:
    """The token ids of the rendered conversation; untrusted text never yields control or markup tokens."""
    text, marker = render_marked(fmt, messages, tools, add_generation_prompt)
    return fmt._codec.encode_marked(text, marker)


def prompt_tokens(fmt: ChatFormat, messages: Sequence[Message], tools: Tools = None) -> list[int]:
    """The prompt the model continues: the conversation plus the opening of the assistant's turn."""
    return encode_conversation(fmt, messages, tools, add_generation_prompt=True)


def _render_with_sentinel(fmt: ChatFormat, tool_responses: Sequence[str]) -> tuple[str, str, str]:
    for k, r in enumerate(tool_responses):
        if not isinstance(r, str):
            raise ChatError(f"Tool response {k} is {type(r).__name__}, not a string.")
    sentinel = free_chars("".join(tool_responses), 2)[1]  # differs from the marker, which is the first free one
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": sentinel}]
    messages += [{"role": "tool", "content": r} for r in tool_responses]
    text, marker = render_marked(fmt, messages, None, bool(tool_responses), extra=sentinel)
    if text.count(sentinel) != 1:
        raise ChatError(f"The {fmt.family} template does not render an assistant turn's content verbatim.")
    return text, marker, sentinel


def tool_turn_delta(fmt: ChatFormat, tool_responses: Sequence[str]) -> list[int]:
    """The tokens to append after an assistant turn that ended with a tool call (its last sampled token ends
    the call marker, `</tool_call>` or `<｜tool▁calls▁end｜>`; where a call ends the turn, Llama 3, it is the
    turn's end token, which the delta then leaves out): the end of that turn, the tool turn with every
    response, and the opening of the next assistant turn. For Qwen:
    `<|im_end|>\\n<|im_start|>user\\n<tool_response>\\n...\\n</tool_response><|im_end|>\\n<|im_start|>assistant\\n`.
    The responses are untrusted text: they never yield control or markup tokens.
    """
    if not tool_responses:
        raise ChatError("tool_turn_delta needs at least one tool response (use the error message for a failed call).")
    text, marker, sentinel = _render_with_sentinel(fmt, list(tool_responses))
    delta = text[text.index(sentinel) + len(sentinel) :]
    ids = fmt._codec.encode_marked(delta, marker)
    if not ids or ids[0] not in fmt._codec.added.values():
        # the delta must start at a control token, or its first piece could merge with the sampled text
        raise ChatError(f"The {fmt.family} template does not end an assistant turn with a control token.")
    if fmt.call_ends_turn:
        if ids[0] not in fmt.eos_token_ids:
            raise ChatError(f"The {fmt.family} template does not end a call turn with an end-of-turn token.")
        ids = ids[1:]  # the model sampled that end token itself
    return ids


def encode_assistant(fmt: ChatFormat, text: str) -> list[int]:
    """Tokens of text the model writes: markup tokens (`<think>`, `<tool_call>`, ...) are recognised; control
    tokens (`<|im_end|>`, ...) are not (the model ends its turn by sampling eos, not by writing its name)."""
    marker = free_chars(text, 1)
    return fmt._codec.encode_marked(fmt._codec.guard(text, marker, assistant=True), marker)


def encode_text(fmt: ChatFormat, text: str) -> list[int]:
    """Tokens of untrusted text (rules, prompts, tool output): ordinary byte-level pieces only."""
    return fmt._codec.encode_plain(text)


def assistant_message(fmt: ChatFormat, sampled_text: str, after_tool: bool = False) -> dict:
    """The assistant message whose rendering is the generation prompt's opening plus `sampled_text`
    (`after_tool`: the turn the model wrote after a tool turn, which opens with `continuation_prefix`)."""
    prefix = fmt.continuation_prefix if after_tool else fmt.generation_prefix
    return {"role": "assistant", "content": prefix + sampled_text}


# ------------------------------------------------------------------------------------ reading turns


def parse_turn_tool_calls(
    fmt: ChatFormat, text: str, tools: Tools = None, config: ToolCallConfig | None = None
) -> list[ParsedCall]:
    """`toolcall.parse_tool_calls` on one sampled turn, knowing whether the format's prompt opened reasoning."""
    config = config or ToolCallConfig()
    if fmt.starts_in_reasoning and not config.starts_in_reasoning:
        config = dataclasses.replace(config, starts_in_reasoning=True)
    return parse_calls(fmt.spec.call_syntax, fmt.strip_end_tokens(text), tools, config)


def final_answer(fmt: ChatFormat, text: str) -> str:
    """The answer in an assistant turn's text: what follows its last reasoning block, with tool calls and
    end-of-turn token strings removed, stripped. Empty when the reasoning block was never closed.

    Pass the text of the last assistant turn (decoded with its markup tokens, e.g. `fmt.decode(ids)`).
    """
    spans = reasoning_spans(text, starts_in_reasoning=fmt.starts_in_reasoning)
    if spans:
        a, b = spans[-1]
        if not text[a:b].endswith(THINK_END):
            return ""
        text = text[b:]
    return strip_calls(fmt.spec.call_syntax, fmt.strip_end_tokens(text)).strip()
