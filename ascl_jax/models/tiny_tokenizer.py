"""The tokenizer of the built-in small models: byte-level BPE (any text encodes) whose merges were
learned on the demo task's conversations and the default rule book, so that demo episodes are a few
hundred tokens rather than a thousand bytes. The trained file ships with the package
(`tiny_tokenizer.json`); `python -m ascl_jax.data.tiny_tokenizer_build` rebuilds it, deterministically,
from the demo's data (which is where the vocabulary comes from, so the builder lives with it).

ids 0..2 are the control tokens; the tool and reasoning tags are single tokens at the end of the
vocabulary (written by the model, so not "special")."""

from __future__ import annotations

import functools
from pathlib import Path

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

VOCAB_SIZE = 1024
CONTROL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TAG_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")
FILE = Path(__file__).with_name("tiny_tokenizer.json")
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@functools.lru_cache(maxsize=1)
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(FILE)), eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast
