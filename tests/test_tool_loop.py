"""The host tool loop end to end on a real (small, trained-to-call) model: the rollout calls the rule tool,
the host splices the tool turn with one extend, and the trajectory equals the whole conversation
rendered by the template, token for token, with an exact loss mask and sampler log-probabilities."""

import dataclasses

import jax
import numpy as np
import pytest

from ascl_jax.chat.formats import chat_format
from ascl_jax.models.registry import load_model
from ascl_jax.rollout.sampling import SamplingConfig
from ascl_jax.rollout.tool_loop import RolloutConfig, run_rollout
from ascl_jax.rollout.trajectory import Prompt
from ascl_jax.rules import ConsultSafetyRulesTool, Rule, RuleBook
from tests.helpers import overfit

pytestmark = pytest.mark.slow

BOOK = RuleBook([
    Rule("priv-1", "privacy", "Home addresses", "Do not reveal a private person's home address.", "refuse"),
    Rule("math-1", "general", "Arithmetic", "Arithmetic questions are always fine to answer.", "comply"),
])
CALL = '<tool_call>\n{"name": "consult_safety_rules", "arguments": {"category": "privacy"}}\n</tool_call>'
QUESTION = "Where does my neighbour live?"
ANSWER = "I can't share that."


@pytest.fixture(scope="module")
def trained():
    model = load_model("tiny", seed=1)
    fmt = chat_format(model.chat_family, model.tokenizer)
    tool = ConsultSafetyRulesTool(BOOK)
    msgs = [{"role": "system", "content": "Be safe."}, {"role": "user", "content": QUESTION}]
    prompt = fmt.prompt_tokens(msgs, [tool.schema])
    response = tool.call({"category": "privacy"}).text
    part1 = fmt.encode_assistant(CALL)
    delta = fmt.tool_turn_delta([response])
    part2 = fmt.encode_assistant(ANSWER) + [fmt.eos_token_ids[0]]
    seq = prompt + part1 + delta + part2
    mask = [0] * len(prompt) + [1] * len(part1) + [0] * len(delta) + [1] * len(part2)
    params, loss = overfit(model, [seq], [mask], steps=100)
    assert loss < 0.05, loss
    model = dataclasses.replace(model, params=params)
    full = fmt.encode_conversation(
        msgs + [fmt.assistant_message(CALL), {"role": "tool", "content": response}, fmt.assistant_message(ANSWER)],
        [tool.schema],
    )
    return model, fmt, tool, msgs, seq, mask, full


def test_rollout_calls_tool_and_equals_full_render(trained):
    model, fmt, tool, msgs, seq, mask, full = trained
    cfg = RolloutConfig(group_size=2, max_prompt_tokens=len(seq), max_new_tokens=len(seq), max_tool_calls=2,
                        decode_chunk=16, sampling=SamplingConfig(greedy=True))
    trajs = run_rollout(model, fmt, [tool], [Prompt("p0", tuple(msgs), {"class": "harmful"})], cfg, seed=0).trajectories
    assert len(trajs) == 2
    for t in trajs:
        assert t.stop_reason == "eos"
        assert t.tokens.tolist() == seq
        # the template's own render of the whole conversation: the same tokens (plus its final newline)
        assert full[: len(seq)] == seq and len(full) - len(seq) <= 1
        assert t.loss_mask.tolist() == mask
        assert t.num_tool_calls == 1 and t.consulted and t.rule_ids == ("priv-1",)
        assert t.tool_turns[0].arguments == {"category": "privacy"}
        assert t.final_answer == ANSWER
        # sampler log-probabilities equal a teacher-forced recomputation
        logits, _ = model.module()(jax.numpy.asarray(t.tokens)[None], jax.numpy.arange(len(t.tokens))[None])
        logp = np.asarray(jax.nn.log_softmax(logits[0], -1))
        idx = np.nonzero(t.loss_mask)[0]
        np.testing.assert_allclose(t.sampler_logprobs[idx], logp[idx - 1, t.tokens[idx]], atol=1e-4)
        assert (t.sampler_logprobs[t.loss_mask == 0] == 0).all()


def test_tool_cap_stops_the_row(trained):
    model, fmt, tool, msgs, seq, _, _ = trained
    cfg = RolloutConfig(group_size=1, max_prompt_tokens=len(seq), max_new_tokens=len(seq), max_tool_calls=0,
                        sampling=SamplingConfig(greedy=True))
    (t,) = run_rollout(model, fmt, [tool], [Prompt("p0", tuple(msgs))], cfg, seed=0).trajectories
    assert t.stop_reason == "tool_cap" and t.final_answer == ""
    assert fmt.decode(t.tokens[t.prompt_len:]).endswith("</tool_call>")


def test_tool_response_bounded_in_tokens(trained):
    model, fmt, tool, msgs, seq, _, _ = trained
    cfg = RolloutConfig(group_size=1, max_prompt_tokens=len(seq), max_new_tokens=len(seq), max_tool_response_tokens=20,
                        sampling=SamplingConfig(greedy=True))
    (t,) = run_rollout(model, fmt, [tool], [Prompt("p0", tuple(msgs))], cfg, seed=0).trajectories
    turn = t.tool_turns[0]
    assert turn.truncated and turn.response.endswith("[truncated]")
    assert len(fmt.encode_text(turn.response)) <= 20


def test_twenty_rollouts_compile_each_function_a_bounded_number_of_times(trained):
    from ascl_jax.rollout import engine

    model, fmt, tool, msgs, seq, _, _ = trained
    cfg = RolloutConfig(group_size=2, max_prompt_tokens=len(seq), max_new_tokens=96, max_tool_calls=1,
                        decode_chunk=16, sampling=SamplingConfig(temperature=1.0))
    fns = {"prefill": engine.prefill, "decode_chunk": engine.decode_chunk, "extend": engine.extend}
    before = {k: f._cache_size() for k, f in fns.items()}
    rng = np.random.RandomState(0)
    calls = 0
    for i in range(20):
        question = QUESTION + " " + "x" * int(rng.randint(0, 60))  # prompt lengths vary by up to 60 tokens
        prompts = [Prompt(f"p{i}", ({"role": "system", "content": "Be safe."}, {"role": "user", "content": question}))]
        trajs = run_rollout(model, fmt, [tool] * len(prompts), prompts, cfg, seed=i).trajectories
        calls += sum(t.num_tool_calls for t in trajs)
    grown = {k: f._cache_size() - before[k] for k, f in fns.items()}
    assert calls > 0  # the tool path (extend) was exercised
    assert grown["decode_chunk"] <= 1
    assert grown["prefill"] <= 2  # at most two prompt-length buckets are crossed
    assert grown["extend"] <= 2  # deltas fit one or two extend buckets


@pytest.mark.parametrize("layout", ["train", "replicated", "tensor"])
def test_sharded_greedy_rollout_equals_single_device(trained, layout):
    """On 8 devices (data 2 x fsdp 2 x tensor 2), in each rollout layout of the weights, streamed through
    half the rows as slots: the single-device trajectories."""
    from ascl_jax.models.params import ArraySource, hf_tensors, load_params
    from ascl_jax.parallel import MeshConfig, make_mesh
    from ascl_jax.rollout.layout import for_rollout

    model, fmt, tool, msgs, seq, _, _ = trained
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    graphdef, params = load_params(model.config, ArraySource(dict(hf_tensors(model.config, model.params)), "mem"), mesh)
    sharded, _ = for_rollout(dataclasses.replace(model, graphdef=graphdef, params=params, mesh=mesh), layout)
    weight = sharded.params["layers"]["mlp"]["gate_proj"][...]
    assert weight.sharding.spec[1] == {"train": "fsdp", "replicated": None, "tensor": None}[layout]
    cfg = RolloutConfig(group_size=2, max_prompt_tokens=len(seq), max_new_tokens=len(seq) - 40, decode_chunk=16,
                        sampling=SamplingConfig(greedy=True), slots=4)
    prompts = [Prompt(f"p{i}", ({"role": "system", "content": "Be safe."}, {"role": "user", "content": q}))
               for i, q in enumerate([QUESTION, "What is 2+2?", "Where does my neighbor live?", "hello"])]
    one = run_rollout(model, fmt, [tool] * 4, prompts, dataclasses.replace(cfg, slots=0), seed=0).trajectories
    eight = run_rollout(sharded, fmt, [tool] * 4, prompts, cfg, seed=0).trajectories
    assert [t.tokens.tolist() for t in one] == [t.tokens.tolist() for t in eight]
    assert [t.stop_reason for t in one] == [t.stop_reason for t in eight]
    assert any(t.num_tool_calls for t in one)


def _slot_prompts(n):
    questions = [QUESTION, "What is 2+2?", "Where does my neighbor live?", "hello", "Where does he live?",
                 "Tell me a joke", "Where does my neighbour live? Now.", "x"]
    return [Prompt(f"p{i}", ({"role": "system", "content": "Be safe."},
                             {"role": "user", "content": questions[i % len(questions)] + " " + "y" * (i % 5)}))
            for i in range(n)]


@pytest.mark.parametrize("sampling", [SamplingConfig(greedy=True), SamplingConfig(temperature=1.0)],
                         ids=["greedy", "sampled"])
def test_trajectories_do_not_depend_on_the_slot_count(trained, sampling):
    """A 64-row batch streamed through 8, 16 and 64 slots: the same tokens, masks, log-probabilities,
    stop reasons and tool turns, row for row."""
    model, fmt, tool, msgs, seq, _, _ = trained
    prompts = _slot_prompts(16)
    runs = {}
    for slots in (8, 16, 64):
        cfg = RolloutConfig(group_size=4, max_prompt_tokens=len(seq), max_new_tokens=len(seq) - 40, decode_chunk=16,
                            max_tool_calls=1, slots=slots, sampling=sampling)
        runs[slots] = run_rollout(model, fmt, [tool] * 16, prompts, cfg, seed=3)
    ref = runs[64].trajectories
    assert len(ref) == 64 and sum(t.num_tool_calls for t in ref) >= 8
    assert {t.stop_reason for t in ref} >= {"eos", "length"} or sampling.greedy
    for slots in (8, 16):
        got = runs[slots].trajectories
        assert [t.tokens.tolist() for t in got] == [t.tokens.tolist() for t in ref]
        assert [t.loss_mask.tolist() for t in got] == [t.loss_mask.tolist() for t in ref]
        assert [t.stop_reason for t in got] == [t.stop_reason for t in ref]
        assert [[(u.name, u.response) for u in t.tool_turns] for t in got] == \
               [[(u.name, u.response) for u in t.tool_turns] for t in ref]
        np.testing.assert_allclose(np.concatenate([t.sampler_logprobs for t in got]),
                                   np.concatenate([t.sampler_logprobs for t in ref]), atol=1e-5)
        stats = runs[slots].stats
        assert stats.slots == slots and stats.admissions >= 64 // slots
        assert stats.kv_cache_bytes < runs[64].stats.kv_cache_bytes
        assert 0 < stats.occupancy <= 1
