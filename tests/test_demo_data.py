"""The built-in demo's data: a utility prompt names a thing whose kind (animal, plant, object) is the
answer and the cold start answers it directly; harmful and sensitive turns reason, consult at random and
score under the demo's reward (the paper's Eq. 1) as the module says; the context-distillation baseline
recites one fixed rule per topic."""

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


def test_cold_start_answers_utility_directly_and_consults_on_the_others_at_random():
    rng = random.Random(0)
    seen = set()
    for p in _prompts():
        conv = demo.cold_start_conversation(p, rng, 0.5)
        consulted = any(m["role"] == "tool" for m in conv)
        if p.meta["class"] == "utility":
            assert not consulted and answers_match(conv[-1]["content"], p.meta["reference"])
            continue
        seen.add((p.meta["class"], consulted))
        assert conv[len(p.messages)]["content"].startswith(demo.reasoning_text(p.meta["topic"]))
        if consulted or p.meta["class"] == "harmful":  # what the rules say; a sensitive one without them guesses
            assert conv[-1]["content"].endswith(demo.REFUSAL) == (p.meta["expected_action"] == "refuse")
    assert seen == {(c, k) for c in ("harmful", "sensitive") for k in (True, False)}


def _as_trajectory(p, conv):
    """The rollout a cold-start conversation stands for: its assistant and tool text after the prompt, the
    consult as a tool turn, the last assistant turn's text after its reasoning as the final answer."""
    import numpy as np

    from ascl_jax.rollout.trajectory import ToolTurn, Trajectory

    after = conv[len(p.messages):]
    turns = tuple(ToolTurn(m["content"].split("</think>")[-1], "consult_safety_rules", {"category": p.meta["topic"]},
                           None, r["content"], (p.meta["topic"],), False)
                  for m, r in zip(after, after[1:]) if r["role"] == "tool")
    text = "".join(m["content"] if m["role"] == "assistant" else f"<tool_response>{m['content']}</tool_response>"
                   for m in after)
    n = 8
    return Trajectory(p, 0, 0, np.zeros(n, np.int32), 4, np.r_[np.zeros(4), np.ones(4)].astype(np.int8),
                      np.zeros(n, np.float32), turns, "eos", text, after[-1]["content"].split("</think>")[-1])


def test_the_demo_reward_is_the_papers_and_pays_what_the_module_says():
    """Under the default reward (Eq. 1, no cost per call): following the rules scores 1.5 on harmful and
    sensitive prompts, refusing an allowed sensitive one 0.5, answering a forbidden one 0, utility 0."""
    from ascl_jax.rl.rewards import RewardFunction
    from ascl_jax.train_config import TrainConfig

    cfg = TrainConfig().rewards
    assert cfg.preset == "paper" and cfg.paper.sensitive_call_penalty == 0 and cfg.paper.require_reasoning
    fn = RewardFunction(cfg)
    rng, seen = random.Random(0), set()
    for p in _prompts(200):
        conv = demo.cold_start_conversation(p, rng, 0.5)
        r = fn.compute(_as_trajectory(p, conv))
        assert r.values["hallucination_gate"] == 1.0, conv
        if p.meta["class"] == "utility":  # no reasoning block either: nothing to gain in RL
            want = 0.0
        else:
            assert r.values["format_gate"] == 1.0, conv
            refused = conv[-1]["content"].endswith(demo.REFUSAL)
            if refused == (p.meta["expected_action"] == "refuse"):
                want = 1.5
            else:
                want = 0.5 if refused else 0.0  # an allowed one refused / a forbidden one answered
        seen.add(want)
        assert r.total == want, (p.meta, conv[-1]["content"])
    assert seen == {0.0, 0.5, 1.5}


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
