"""Token-by-token decoding with the cache equals a full forward, with rows at different offsets; the
engine's prefill/extend/decode agree with plain forwards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ascl_jax.models.decoder import attention_windows, init_cache
from ascl_jax.models.registry import BUILTIN_CONFIGS
from ascl_jax.models.params import init_params
from ascl_jax.parallel import single_device_mesh
from ascl_jax.rollout.engine import RUNNING, STOP_LENGTH, StopTokens, decode_chunk, extend, prefill
from ascl_jax.rollout.sampling import SamplingConfig, row_keys

CFG = BUILTIN_CONFIGS["tiny"].replace(num_layers=2)
GREEDY = SamplingConfig(greedy=True)
NO_STOP = StopTokens(eos=())


def _model():
    graphdef, params = init_params(CFG, single_device_mesh(), seed=3)
    from flax import nnx

    return graphdef, params, nnx.merge(graphdef, params)


def _full_logits(model, seq):
    seq = jnp.asarray(seq, jnp.int32)[None]
    return np.asarray(model(seq, jnp.arange(seq.shape[1], dtype=jnp.int32)[None])[0][0])


def test_token_by_token_equals_full_forward_with_row_offsets():
    _, _, model = _model()
    rng = np.random.RandomState(0)
    seqs = [rng.randint(0, 265, n) for n in (11, 5, 8)]
    cache = init_cache(CFG, 3, 16)
    # prefill the rows to different lengths (3, 1, 6), then feed one token at a time at each row's offset
    start = np.array([3, 1, 6])
    prompt = np.zeros((3, 6), np.int32)
    for i, s in enumerate(seqs):
        prompt[i, : start[i]] = s[: start[i]]
    offsets = jnp.zeros(3, jnp.int32)
    step = jax.jit(lambda c, t, p, o: model(t, p, c, o))
    _, cache = step(cache, jnp.asarray(prompt), jnp.broadcast_to(jnp.arange(6), (3, 6)).astype(jnp.int32), offsets)
    pos = start.copy()
    got = [[] for _ in seqs]
    for _ in range(10):
        tok = np.array([s[min(p, len(s) - 1)] for s, p in zip(seqs, pos)], np.int32)
        logits, cache = step(cache, jnp.asarray(tok)[:, None], jnp.asarray(pos, jnp.int32)[:, None], jnp.asarray(pos, jnp.int32))
        for i, s in enumerate(seqs):
            if pos[i] < len(s):
                got[i].append(np.asarray(logits[i, 0]))
        pos = pos + 1
    for i, s in enumerate(seqs):
        full = _full_logits(model, s)
        np.testing.assert_allclose(np.stack(got[i]), full[start[i]:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("capacity", [64, 256])  # 256: prefill and extend read a 64-slot window of it
def test_engine_prefill_decode_extend_match_full_forward(capacity):
    graphdef, params, model = _model()
    rng = np.random.RandomState(1)
    prompts = np.zeros((3, 8), np.int32)
    lens = np.array([8, 3, 5], np.int32)
    for i, n in enumerate(lens):
        prompts[i, :n] = rng.randint(0, 265, n)
    keys = row_keys(0, np.arange(6))
    limit = jnp.full((6,), 64, jnp.int32)
    state = prefill(graphdef, params, jnp.asarray(prompts), jnp.asarray(lens), keys, limit,
                    cfg=CFG, group_size=2, capacity=capacity, sampling=GREEDY, stops=NO_STOP)
    # group rows share their prompt: greedy gives identical first tokens within a group
    first = np.asarray(state.tokens)[np.arange(6), np.repeat(lens, 2)]
    assert (first[0::2] == first[1::2]).all()
    state, _ = decode_chunk(graphdef, params, state, n_steps=4, sampling=GREEDY, stops=NO_STOP)
    assert (np.asarray(state.seq_len) == np.repeat(lens, 2) + 5).all()

    # splice different amounts into rows 0, 3, 4; rows 1, 2, 5 are not extended
    new = rng.randint(0, 265, (6, 7)).astype(np.int32)
    new_lens = np.array([7, 0, 0, 2, 5, 0], np.int32)
    before = np.asarray(state.seq_len).copy()
    state, last_logits = extend(graphdef, params, state, jnp.asarray(new), jnp.asarray(new_lens),
                                sampling=GREEDY, stops=NO_STOP)
    state, _ = decode_chunk(graphdef, params, state, n_steps=3, sampling=GREEDY, stops=NO_STOP)
    tokens, seq_len, sampled = np.asarray(state.tokens), np.asarray(state.seq_len), np.asarray(state.sampled)
    for r in range(6):
        seq = tokens[r, : seq_len[r]]
        full = _full_logits(model, seq)
        # every sampled token is the greedy choice of a fresh full forward over its prefix
        idx = np.nonzero(sampled[r, : seq_len[r]])[0]
        assert len(idx) == 5 + (1 if new_lens[r] else 0) + 3
        np.testing.assert_array_equal(full[idx - 1].argmax(-1), seq[idx])
        if new_lens[r]:
            end = before[r] + new_lens[r]
            np.testing.assert_array_equal(seq[before[r]:end], new[r, : new_lens[r]])
            assert not sampled[r, before[r]:end].any()
            np.testing.assert_allclose(np.asarray(last_logits[r]), full[end - 1], atol=1e-5, rtol=0)
        else:
            assert seq_len[r] == before[r] + 3


def test_rows_stop_at_their_limit_and_logprobs_match_teacher_forcing():
    graphdef, params, model = _model()
    prompts = jnp.asarray(np.random.RandomState(2).randint(0, 265, (2, 4)), jnp.int32)
    sampling = SamplingConfig(temperature=1.0)
    state = prefill(graphdef, params, prompts, jnp.array([4, 4]), row_keys(5, np.arange(2)), jnp.array([9, 12]),
                    cfg=CFG, group_size=1, capacity=16, sampling=sampling, stops=NO_STOP)
    while bool(jnp.any(state.stop == RUNNING)):
        state, _ = decode_chunk(graphdef, params, state, n_steps=3, sampling=sampling, stops=NO_STOP)
    assert np.asarray(state.seq_len).tolist() == [9, 12]
    assert (np.asarray(state.stop) == STOP_LENGTH).all()
    for r in range(2):
        n = int(state.seq_len[r])
        seq = np.asarray(state.tokens[r, :n])
        logp = jax.nn.log_softmax(_full_logits(model, seq), -1)
        want = np.asarray(logp)[np.arange(3, n - 1), seq[4:n]]
        np.testing.assert_allclose(np.asarray(state.logprobs[r, 4:n]), want, atol=1e-4)


def test_hidden_states_of_selected_positions_equal_the_full_pass():
    # `select` runs the last layer on one position per row; with and without a cache it must give that
    # position's hidden state of the full pass.
    _, _, model = _model()
    tokens = jnp.asarray(np.random.RandomState(5).randint(0, 265, (3, 9)), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(9, dtype=jnp.int32), (3, 9))
    select = jnp.array([8, 0, 4], jnp.int32)
    full, _ = model.hidden_states(tokens, positions)
    want = np.asarray(full)[np.arange(3), np.asarray(select)]
    picked, _ = model.hidden_states(tokens, positions, select=select)
    np.testing.assert_allclose(np.asarray(picked[:, 0]), want, atol=1e-5, rtol=0)
    cached, _ = model.hidden_states(tokens, positions, init_cache(CFG, 3, 256), jnp.zeros(3, jnp.int32), select)
    np.testing.assert_allclose(np.asarray(cached[:, 0]), want, atol=1e-5, rtol=0)


def test_attention_windows_are_few_prefixes_ending_at_the_capacity():
    assert attention_windows(64) == (64,)
    assert attention_windows(256) == (64, 128, 192, 256)
    assert attention_windows(384) == (128, 256, 384)
    assert attention_windows(8192) == (2048, 4096, 6144, 8192)
    assert attention_windows(100) == (64, 100)


def test_extend_leaves_the_cache_of_a_row_near_the_end_untouched():
    # Row 0 is not extended and holds 28 of its 32 cache slots; the extend feeds 11 tokens to every row. The
    # part of row 0's padded write past the end must be dropped, not shifted back over its valid slots (as
    # dynamic_update_slice's clamping would).
    graphdef, params, model = _model()
    rng = np.random.RandomState(4)
    prompts = np.zeros((2, 24), np.int32)
    lens = np.array([24, 4], np.int32)
    for i, n in enumerate(lens):
        prompts[i, :n] = rng.randint(0, 265, n)
    state = prefill(graphdef, params, jnp.asarray(prompts), jnp.asarray(lens), row_keys(0, np.arange(2)),
                    jnp.full((2,), 32, jnp.int32), cfg=CFG, group_size=1, capacity=32, sampling=GREEDY,
                    stops=NO_STOP)
    state, _ = decode_chunk(graphdef, params, state, n_steps=4, sampling=GREEDY, stops=NO_STOP)
    assert np.asarray(state.seq_len).tolist() == [29, 9]
    before = [np.asarray(k[0, :28]) for k in state.cache.k]
    new = jnp.asarray(rng.randint(0, 265, (2, 10)), jnp.int32)
    state, _ = extend(graphdef, params, state, new, jnp.array([0, 10], jnp.int32), sampling=GREEDY, stops=NO_STOP)
    for k, old in zip(state.cache.k, before):
        np.testing.assert_array_equal(np.asarray(k[0, :28]), old)
    state, _ = decode_chunk(graphdef, params, state, n_steps=2, sampling=GREEDY, stops=NO_STOP)
    seq = np.asarray(state.tokens[0, : int(state.seq_len[0])])
    logp = np.asarray(jax.nn.log_softmax(_full_logits(model, seq), -1))
    np.testing.assert_allclose(np.asarray(state.logprobs[0, 29:31]), logp[[28, 29], seq[29:31]], atol=1e-4)


@pytest.mark.parametrize("sampling", [GREEDY, SamplingConfig(temperature=1.0)], ids=["greedy", "sampled"])
def test_windowed_decode_equals_full_cache_decode(sampling):
    """Reading the cache up to the longest running row gives the rows of a full-cache decode: rows of very
    different lengths, some stopping early, in a cache with several windows."""
    graphdef, params, _ = _model()
    rng = np.random.RandomState(4)
    prompts = jnp.asarray(rng.randint(0, 265, (4, 8)), jnp.int32)
    limits = jnp.array([12, 40, 150, 300])
    out = {}
    for windowed in (True, False):
        state = prefill(graphdef, params, prompts, jnp.array([8, 3, 5, 8]), row_keys(1, np.arange(4)), limits,
                        cfg=CFG, group_size=1, capacity=320, sampling=sampling, stops=NO_STOP)
        busy = 0
        while bool(jnp.any(state.stop == RUNNING)):
            state, counts = decode_chunk(graphdef, params, state, n_steps=64, sampling=sampling, stops=NO_STOP,
                                         windowed=windowed)
            busy += int(counts[1])
        out[windowed] = state
        assert busy == int(jnp.sum(state.seq_len - jnp.array([8, 3, 5, 8]))) - 4  # the first token is prefill's
    assert len(attention_windows(320)) > 1
    np.testing.assert_array_equal(np.asarray(out[True].tokens), np.asarray(out[False].tokens))
    np.testing.assert_allclose(np.asarray(out[True].logprobs), np.asarray(out[False].logprobs), atol=1e-5)


def test_decode_chunk_returns_once_enough_rows_are_free():
    graphdef, params, _ = _model()
    prompts = jnp.asarray(np.random.RandomState(5).randint(0, 265, (4, 4)), jnp.int32)
    state = prefill(graphdef, params, prompts, jnp.full((4,), 4), row_keys(0, np.arange(4)),
                    jnp.array([6, 7, 40, 40]), cfg=CFG, group_size=1, capacity=64, sampling=GREEDY, stops=NO_STOP)
    state, counts = decode_chunk(graphdef, params, state, 2, n_steps=32, sampling=GREEDY, stops=NO_STOP)
    # rows 0 and 1 stop after 1 and 2 steps: the chunk hands back after the second step, not the 32nd
    assert np.asarray(counts).tolist() == [2, 2 * 4 - 1]
    assert np.asarray(state.stop).tolist() == [STOP_LENGTH, STOP_LENGTH, RUNNING, RUNNING]


def test_generate_through_fewer_slots_gives_the_same_tokens():
    from ascl_jax.models.registry import load_model
    from ascl_jax.rollout.generate import generate

    model = load_model("tiny", seed=2)
    rng = np.random.RandomState(6)
    prompts = [rng.randint(1, 265, n).tolist() for n in (3, 9, 5, 12, 7, 4)]
    every = generate(model, prompts, 20, seed=1, chunk=8)
    two = generate(model, prompts, 20, seed=1, chunk=8, slots=2)
    assert [g.tokens for g in every] == [g.tokens for g in two]
    np.testing.assert_allclose(np.concatenate([g.logprobs for g in every]), np.concatenate([g.logprobs for g in two]),
                               atol=1e-5)


def test_slot_count_must_fit_whole_groups():
    from ascl_jax.errors import ConfigError
    from ascl_jax.rollout.tool_loop import RolloutConfig

    with pytest.raises(ConfigError, match="rollout.slots must be 0 .* multiple of rollout.group_size"):
        RolloutConfig(group_size=4, slots=6)
    assert RolloutConfig(group_size=4, slots=8).slots == 8
