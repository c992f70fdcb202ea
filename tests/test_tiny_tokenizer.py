"""The shipped tiny tokenizer is exactly what its builder produces, encodes any text, and keeps the chat
and tool markup as single tokens."""

import json

from ascl_jax.data.tiny_tokenizer_build import build
from ascl_jax.models.tiny_tokenizer import FILE, tiny_tokenizer


def test_shipped_file_is_reproducible():
    assert json.loads(build().to_str()) == json.loads(FILE.read_text())


def test_round_trip_and_markup_tokens():
    tok = tiny_tokenizer()
    assert len(tok) == 1024
    for text in ["Hello, wörld! 12+7=19", "  spaces\n\ttabs", "日本語 🙂", "<tool_call>{\"a\": 1}</tool_call>"]:
        assert tok.decode(tok.encode(text)) == text
    ids = tok.encode("<think>x</think><tool_call>y</tool_call>")
    for tag in ("<think>", "</think>", "<tool_call>", "</tool_call>"):
        assert tok.convert_tokens_to_ids(tag) in ids
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]


def test_demo_text_is_compact():
    tok = tiny_tokenizer()
    call = '<tool_call>{"name": "consult_safety_rules", "arguments": {"category": "lockpicking"}}</tool_call>'
    assert len(tok.encode(call)) < len(call.encode()) / 3
