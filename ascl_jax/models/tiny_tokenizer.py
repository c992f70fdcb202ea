"""The tokenizer of the built-in small models: byte-level BPE (any text encodes) whose merges were
learned on the demo task's conversations and the default rule book, so that demo episodes are a few
hundred tokens rather than a thousand bytes. The trained file ships with the package
(`tiny_tokenizer.json`); `python -m ascl_jax.models.tiny_tokenizer` rebuilds it, deterministically.

ids 0..2 are the control tokens; the tool and reasoning tags are single tokens at the end of the
vocabulary (written by the model, so not "special")."""

from __future__ import annotations

import functools
import random
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

VOCAB_SIZE = 1024
CONTROL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TAG_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")
FILE = Path(__file__).with_name("tiny_tokenizer.json")
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    from ascl_jax.chat.formats import chat_format
    from ascl_jax.data.demo import DemoConfig, cold_start_conversation, context_distillation_conversation, demo_tool, make_prompts
    from ascl_jax.models.byte_tokenizer import byte_tokenizer
    from ascl_jax.rules import default_rulebook

    fmt = chat_format("chatml_compact", byte_tokenizer())
    texts = []
    for split in ("train", "eval"):
        prompts = make_prompts(DemoConfig(train_prompts=2000, eval_prompts=400), split)
        rng = random.Random(split)
        for p in prompts:
            tools = [demo_tool(p).schema]
            texts.append(fmt.render(cold_start_conversation(p, rng, 0.5), tools))
            texts.append(fmt.render(context_distillation_conversation(p, rng), None))
    texts += [f"{r.title}. {r.text}" for r in default_rulebook()]
    return texts


def build() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(TAG_TOKENS),
        special_tokens=list(CONTROL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Control and tag strings are single tokens already: keep them out of the merge statistics.
    texts = _corpus()
    for t in CONTROL_TOKENS + TAG_TOKENS:
        texts = [x.replace(t, " ") for x in texts]
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return tok


@functools.lru_cache(maxsize=1)
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(FILE)), eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


if __name__ == "__main__":
    build().save(str(FILE))
    print(f"wrote {FILE}")
