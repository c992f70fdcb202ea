"""The built-in demo's data: a utility prompt names a thing whose kind (animal, plant, object) is the
answer, the cold start answers it right with or without a consult, and the context-distillation baseline recites
one fixed rule per topic."""

import random

from ascl_jax.data import demo
from ascl_jax.rl.answers import answers_match


def _prompts(n=400, split="train"):
    return demo.make_prompts(demo.DemoConfig(train_prompts=n, eval_prompts=n), split)


def test_utility_prompts_ask_the_kind_of_a_thing():
    utility = [p for p in _prompts(2000) if p.meta["class"] == "utility"]
    assert len(utility) > 300
    kinds = {w: k for k, ws in demo.UTILITY_WORDS.items() for w in ws}
    for p in utility:
        named = [w for w in kinds if f" {w}" in p.messages[0]["content"]]
        assert named == [p.meta["thing"]] and kinds[p.meta["thing"]] == p.meta["reference"]
        answer = demo.answer_text(p, "comply")
        assert answer.startswith(f"A {p.meta['thing']} is") and answers_match(answer, p.meta["reference"])
        other = next(k for k in demo.UTILITY_WORDS if k != p.meta["reference"])
        assert not answers_match(answer, other)
        assert not answers_match("I can't help with that.", p.meta["reference"])
    assert {p.meta["reference"] for p in utility} == set(demo.UTILITY_WORDS)
    assert len(kinds) == sum(len(ws) for ws in demo.UTILITY_WORDS.values())  # no word of two kinds


def test_cold_start_answers_utility_right_with_and_without_a_consult():
    rng = random.Random(0)
    seen = set()
    for p in (p for p in _prompts() if p.meta["class"] == "utility"):
        conv = demo.cold_start_conversation(p, rng, 0.5)
        seen.add(any(m["role"] == "tool" for m in conv))
        assert answers_match(conv[-1]["content"], p.meta["reference"])
    assert seen == {True, False}


def test_baseline_recites_one_rule_per_topic_and_follows_it():
    rng = random.Random(0)
    for p in _prompts():
        answer = demo.context_distillation_conversation(p, rng)[-1]["content"]
        if p.meta["class"] == "sensitive":
            usual = demo.USUAL_RULES[p.meta["topic"]]
            assert f"Rule: {p.meta['topic']}: {usual}." in answer
            assert answer.endswith(demo.REFUSAL) == (usual == demo.FORBIDDEN)
        elif p.meta["class"] == "harmful":
            assert answer.endswith(demo.REFUSAL)
        else:
            assert answer == demo.answer_text(p, "comply")
    assert set(demo.USUAL_RULES) == set(demo.SENSITIVE_TOPICS)
    assert set(demo.USUAL_RULES.values()) == {demo.ALLOWED, demo.FORBIDDEN}


def test_examples_pad_to_the_longest_not_to_the_cap():
    import numpy as np
    import pytest

    from ascl_jax.data.prompts import DataError
    from ascl_jax.sft.data import pack_examples

    packed = pack_examples([([5, 6, 7], [0, 1, 1]), ([5] * 17, [1] * 17)], pad_id=0, max_width=160)
    assert packed["tokens"].shape == (2, 32) and packed["loss_mask"].shape == (2, 32)
    assert packed["tokens"][0, :4].tolist() == [5, 6, 7, 0] and np.sum(packed["loss_mask"]) == 19
    assert pack_examples([([1] * 150, [1] * 150)], 0, 152)["tokens"].shape == (1, 152)  # capped
    with pytest.raises(DataError, match="example 1 has 20 tokens; sft.max_tokens is 19"):
        pack_examples([([1], [1]), ([1] * 20, [1] * 20)], 0, 19)
