"""The offline Qwen tokenizer: known ids, added tokens at their real ids, round trips, official chat templates."""

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ascl_jax.errors import ConfigError
from ascl_jax.chat.template_text import chat_template_text
from ascl_jax.models.qwen_tokenizer import QWEN_ADDED_TOKENS, qwen_tokenizer


@pytest.fixture(scope="module")
def tok():
    return qwen_tokenizer("qwen3")


def ids(tok, text):
    return tok.encode(text, add_special_tokens=False)


# ids published with Qwen2/2.5 material (READMEs, model cards, tokenization dumps)
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello", [9707]),
        ("Hello world", [9707, 1879]),
        ("system", [8948]),
        ("user", [872]),
        ("assistant", [77091]),
        ("\n", [198]),
        ("You are a helpful assistant.", [2610, 525, 264, 10950, 17847, 13]),
        ("What is the capital of France?", [3838, 374, 279, 6722, 315, 9625, 30]),
        (" You are Qwen, created by Alibaba Cloud.", [1446, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13]),
    ],
)
def test_known_ids(tok, text, expected):
    assert ids(tok, text) == expected


def test_chat_prompt_matches_published_ids():
    # a Qwen2.5-Instruct prompt as tokenized by the official tokenizer (default system prompt, one question)
    tok = qwen_tokenizer("qwen2_5")
    got = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    assert got == [
        151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525, 264, 10950,
        17847, 13, 151645, 198, 151644, 872, 198, 3838, 374, 279, 6722, 315, 9625, 30, 151645, 198, 151644,
        77091, 198,
    ]  # fmt: skip
    assert ids(tok, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n") == [
        151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198,
    ]  # fmt: skip


def test_digits_are_split_one_by_one(tok):
    # Qwen's regex splits numbers into single digits (\p{N}), unlike cl100k's \p{N}{1,3}
    assert [tok.decode([i]) for i in ids(tok, "12345")] == ["1", "2", "3", "4", "5"]


def test_added_tokens_at_their_real_ids(tok):
    assert len(QWEN_ADDED_TOKENS) == 26
    for token_id, content, special in QWEN_ADDED_TOKENS:
        assert tok.convert_tokens_to_ids(content) == token_id
        assert ids(tok, content) == [token_id]
        assert tok.decode([token_id]) == content
    assert len(tok) == 151669
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 151645)
    assert (tok.pad_token, tok.pad_token_id) == ("<|endoftext|>", 151643)
    assert tok.bos_token is None
    assert ids(tok, "<tool_call>") == [151657] and ids(tok, "</tool_call>") == [151658]
    assert ids(tok, "<think>") == [151667] and ids(tok, "</think>") == [151668]
    assert ids(tok, "<tool_response>") == [151665] and ids(tok, "</tool_response>") == [151666]


def test_markup_tokens_are_not_special(tok):
    # as in Qwen's files: skip_special_tokens drops control tokens but keeps <think>/<tool_call>
    text = "<|im_start|>assistant\n<think>\nhm\n</think>\n\n<tool_call>\n{}\n</tool_call><|im_end|>"
    kept = "assistant\n<think>\nhm\n</think>\n\n<tool_call>\n{}\n</tool_call>"
    assert tok.decode(ids(tok, text), skip_special_tokens=True) == kept
    specials = {c for _, c, s in QWEN_ADDED_TOKENS if s}
    assert set(tok.all_special_tokens) == specials
    assert not {"<tool_call>", "</tool_call>", "<think>", "</think>", "<tool_response>"} & set(tok.all_special_tokens)


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog.",
        "def f(x):\n    return x ** 2  # square\n\n\n\tindented\r\nwindows line",
        "日本語のテキスト、中文文本，한국어 텍스트",
        "emoji 😀🎉👩‍👩‍👧 and symbols ∑∫√ ← → «quotes» — dashes… ",
        "   leading and trailing spaces   ",
        "Ünïcödé ñ ç ß ø å",
        "1234567890 3.14159 -42 1e-9 0xDEADBEEF",
        "<|im_start|>user\nhi<|im_end|>\n<think>x</think>",
        "",
    ],
)
def test_round_trip(tok, text):
    assert tok.decode(ids(tok, text)) == text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80))
def test_round_trip_any_text(tok, text):
    # the normalizer is NFC, as in Qwen's tokenizer.json
    assert tok.decode(ids(tok, text)) == unicodedata.normalize("NFC", text)


def test_cached():
    assert qwen_tokenizer("qwen3") is qwen_tokenizer("qwen3")
    assert qwen_tokenizer("qwen2_5") is not qwen_tokenizer("qwen3")
    assert qwen_tokenizer("qwen2_5").backend_tokenizer.get_vocab_size() == 151669


def test_unknown_format():
    with pytest.raises(ConfigError, match="qwen3, qwen2_5"):
        qwen_tokenizer("llama")
    with pytest.raises(ConfigError, match="chatml_tools"):
        chat_template_text("nope")


TOOL = {
    "type": "function",
    "function": {
        "name": "consult_safety_rules",
        "description": "Look up the safety rules.",
        "parameters": {
            "type": "object",
            "properties": {"category": {"type": "string"}, "query": {"type": "string"}},
            "required": ["category"],
        },
    },
}

CONVERSATION = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "Can I mix bleach and ammonia?"},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": "Chemical safety question; check the rules.",
        "tool_calls": [
            {
                "type": "function",
                "function": {
                    "name": "consult_safety_rules",
                    "arguments": {"category": "chemical", "query": "bleach ammonia"},
                },
            }
        ],
    },
    {"role": "tool", "content": "Rule H2: warn about toxic gas."},
    {
        "role": "assistant",
        "content": "No. Mixing them releases toxic chloramine gas.",
        "reasoning_content": "The rule says warn.",
    },
]

TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name": "consult_safety_rules", "description": "Look up the safety rules.", '
    '"parameters": {"type": "object", "properties": {"category": {"type": "string"}, "query": {"type": "string"}}, '
    '"required": ["category"]}}}\n</tools>\n\n'
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
)


def test_qwen3_template_renders_tools_call_response_and_answer(tok):
    text = tok.apply_chat_template(CONVERSATION, tools=[TOOL], tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a careful assistant.\n\n" + TOOLS_HEADER + "<|im_start|>user\n"
        "Can I mix bleach and ammonia?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nChemical safety question; check the rules.\n</think>\n\n"
        '<tool_call>\n{"name": "consult_safety_rules", "arguments": {"category": "chemical", "query": "bleach ammonia"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nRule H2: warn about toxic gas.\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n<think>\nThe rule says warn.\n</think>\n\n"
        "No. Mixing them releases toxic chloramine gas.<|im_end|>\n"
    )


def test_qwen3_generation_prompt_and_thinking_switch(tok):
    msgs = [{"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_qwen3_drops_reasoning_of_earlier_exchanges(tok):
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "<think>\nsecret\n</think>\n\nA"},
        {"role": "user", "content": "b"},
    ]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
        "<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\n"
    )


def test_qwen2_5_template_renders_tools_call_response_and_answer():
    tok = qwen_tokenizer("qwen2_5")
    msgs = [m for m in CONVERSATION]
    text = tok.apply_chat_template(msgs, tools=[TOOL], tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a careful assistant.\n\n" + TOOLS_HEADER + "<|im_start|>user\n"
        "Can I mix bleach and ammonia?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "consult_safety_rules", "arguments": '
        '{"category": "chemical", "query": "bleach ammonia"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\nRule H2: warn about toxic gas.\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nNo. Mixing them releases toxic chloramine gas.<|im_end|>\n"
    )
