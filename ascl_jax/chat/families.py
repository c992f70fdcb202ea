"""What differs between the chat families: turn markup, the tokens that end a turn, how a tool call is written.

One `FamilySpec` per family (`FAMILY_SPECS`); `ascl_jax.chat.formats` does the work for all of them with
the family's own published template. Families:

- `qwen3`, `qwen2_5`, `chatml`, `chatml_compact`: `<|im_start|>role\\n...<|im_end|>\\n` turns, Hermes calls
  (`<tool_call>{"name": ..., "arguments": ...}</tool_call>`), tool results as a user turn of
  `<tool_response>` blocks.
- `llama3`: Llama 3.1 / 3.2 / 3.3 Instruct. `<|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>`
  turns; a call is the whole assistant turn, one JSON object `{"name": ..., "parameters": {...}}`, ended
  by the turn's end token (`<|eot_id|>`, or `<|eom_id|>`, which Llama writes after a call when the system
  turn says `Environment: ipython`); the result comes back as an `ipython` turn (the template writes a
  string result JSON-quoted). The template puts the tool schemas in the first user turn.
- `deepseek_r1`: DeepSeek-R1-Distill-Qwen / -Llama. `<｜User｜>` / `<｜Assistant｜>` markers, the generation
  prompt opens `<think>\\n`; a call is `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME`
  + "\\n```json\\nARGS\\n```" + `<｜tool▁call▁end｜><｜tool▁calls▁end｜>`, results come back between
  `<｜tool▁outputs▁begin｜>` and `<｜tool▁outputs▁end｜>`, and the model continues its turn after them
  without a new header. The published template never renders the tool schemas, so this family writes
  them into the system prompt (`tools_in_system`). In the distilled models' tokenizers the tool markers
  are plain text (several tokens each), not added tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CallSyntax = Literal["hermes", "llama3_json", "deepseek"]


@dataclass(frozen=True)
class FamilySpec:
    """One family's fixed facts.

    template: the file in `ascl_jax/chat/templates/` (the family's published template, verbatim).
    required_tokens: control tokens the tokenizer must have as single added tokens.
    assistant_header: the text that opens an assistant turn in the generation prompt.
    end_tokens: tokens that end the model's turn, the template's own end of an assistant turn first.
    call_syntax: how the model writes a tool call.
    call_end: text whose sampling ends a tool-calling turn (None: the call ends the turn itself, so the
        turn's end tokens hand the row to the host).
    tools_in_system: the template ignores `tools`; the format writes the schemas into the system prompt.
    call_end_contexts: text that usually comes right before `call_end`; where the call end is several
        tokens, BPE may merge its first piece with that text, so each context gives one more token
        sequence that ends a call.
    """

    template: str
    required_tokens: tuple[str, ...]
    assistant_header: str
    end_tokens: tuple[str, ...]
    call_syntax: CallSyntax = "hermes"
    call_end: str | None = "</tool_call>"
    tools_in_system: bool = False
    call_end_contexts: tuple[str, ...] = ()

    @property
    def call_ends_turn(self) -> bool:
        """A call is a whole turn, ended by an end token (Llama 3): the tool loop reads every ended turn."""
        return self.call_end is None


_CHATML = dict(required_tokens=("<|im_start|>", "<|im_end|>"), assistant_header="<|im_start|>assistant\n",
               end_tokens=("<|im_end|>", "<|endoftext|>"))

LLAMA3_END_TOKENS = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")
DEEPSEEK_EOS = "<｜end▁of▁sentence｜>"
DEEPSEEK_CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
DEEPSEEK_CALLS_END = "<｜tool▁calls▁end｜>"
DEEPSEEK_CALL_BEGIN = "<｜tool▁call▁begin｜>"
DEEPSEEK_CALL_END = "<｜tool▁call▁end｜>"
DEEPSEEK_SEP = "<｜tool▁sep｜>"

FAMILY_SPECS: dict[str, FamilySpec] = {
    "qwen3": FamilySpec(template="qwen3", **_CHATML),
    "qwen2_5": FamilySpec(template="qwen2_5", **_CHATML),
    "chatml": FamilySpec(template="chatml_tools", **_CHATML),
    "chatml_compact": FamilySpec(template="chatml_compact", **_CHATML),
    "llama3": FamilySpec(
        template="llama3",
        required_tokens=("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        assistant_header="<|start_header_id|>assistant<|end_header_id|>\n\n",
        end_tokens=LLAMA3_END_TOKENS,
        call_syntax="llama3_json",
        call_end=None,
    ),
    "deepseek_r1": FamilySpec(
        template="deepseek_r1",
        required_tokens=(DEEPSEEK_EOS, "<｜User｜>", "<｜Assistant｜>"),
        assistant_header="<｜Assistant｜>",
        end_tokens=(DEEPSEEK_EOS,),
        call_syntax="deepseek",
        call_end=DEEPSEEK_CALLS_END,
        tools_in_system=True,
        call_end_contexts=(DEEPSEEK_CALL_END, "```", "\n", " "),
    ),
}
FAMILIES = tuple(FAMILY_SPECS)


def family_of_template(template: str | None) -> str | None:
    """The family whose markup a checkpoint's own chat template uses (None: not one of the marked ones;
    ChatML templates are told apart by architecture)."""
    if not template:
        return None
    if "<|start_header_id|>" in template:
        return "llama3"
    if "<｜Assistant｜>" in template:
        return "deepseek_r1"
    return None
