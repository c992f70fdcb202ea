"""Rebuilds the built-in small models' tokenizer (`ascl_jax/models/tiny_tokenizer.json`) from the demo's
conversations and the default rule book: `python -m ascl_jax.data.tiny_tokenizer_build`. Deterministic;
`tests/test_tiny_tokenizer.py` checks that the shipped file is what this writes. Run it after changing
the demo's texts or the rule book."""

from __future__ import annotations

import random

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from ascl_jax.chat.formats import chat_format
from ascl_jax.data.demo import DemoConfig, cold_start_conversation, context_distillation_conversation, demo_tool, make_prompts
from ascl_jax.models.byte_tokenizer import byte_tokenizer
from ascl_jax.models.tiny_tokenizer import CONTROL_TOKENS, FILE, TAG_TOKENS, VOCAB_SIZE
from ascl_jax.rules import default_rulebook


def _corpus() -> list[str]:
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


if __name__ == "__main__":
    build().save(str(FILE))
    print(f"wrote {FILE}")
