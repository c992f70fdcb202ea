"""Token-by-token decoding with the cache equals a full forward, with rows at different offsets; the
engine's prefill/extend/decode agree with plain forwards."""

import jax
import jax.numpy as jnp
import numpy as np

from ascl_jax.models.decoder import init_cache
from ascl_jax.models.registry import BUILTIN_CONFIGS
from ascl_jax.models.params import init_params
from ascl_jax.parallel import single_device_mesh
from ascl_jax.rollout.engine import RUNNING, STOP_LENGTH, StopTokens, decode_chunk, extend, prefill
from ascl_jax.rollout.generate import row_keys
from ascl_jax.rollout.sampling import SamplingConfig

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


def test_engine_prefill_decode_extend_match_full_forward():
    graphdef, params, model = _model()
    rng = np.random.RandomState(1)
    prompts = np.zeros((3, 8), np.int32)
    lens = np.array([8, 3, 5], np.int32)
    for i, n in enumerate(lens):
        prompts[i, :n] = rng.randint(0, 265, n)
    keys = row_keys(0, np.arange(6))
    limit = jnp.full((6,), 64, jnp.int32)
    state = prefill(graphdef, params, jnp.asarray(prompts), jnp.asarray(lens), keys, limit,
                    cfg=CFG, group_size=2, capacity=64, sampling=GREEDY, stops=NO_STOP)
    # group rows share their prompt: greedy gives identical first tokens within a group
    first = np.asarray(state.tokens)[np.arange(6), np.repeat(lens, 2)]
    assert (first[0::2] == first[1::2]).all()
    state = decode_chunk(graphdef, params, state, n_steps=4, sampling=GREEDY, stops=NO_STOP)
    assert (np.asarray(state.seq_len) == np.repeat(lens, 2) + 5).all()

    # splice different amounts into rows 0, 3, 4; rows 1, 2, 5 are not extended
    new = rng.randint(0, 265, (6, 7)).astype(np.int32)
    new_lens = np.array([7, 0, 0, 2, 5, 0], np.int32)
    before = np.asarray(state.seq_len).copy()
    state, last_logits = extend(graphdef, params, state, jnp.asarray(new), jnp.asarray(new_lens),
                                sampling=GREEDY, stops=NO_STOP)
    state = decode_chunk(graphdef, params, state, n_steps=3, sampling=GREEDY, stops=NO_STOP)
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
        state = decode_chunk(graphdef, params, state, n_steps=3, sampling=sampling, stops=NO_STOP)
    assert np.asarray(state.seq_len).tolist() == [9, 12]
    assert (np.asarray(state.stop) == STOP_LENGTH).all()
    for r in range(2):
        n = int(state.seq_len[r])
        seq = np.asarray(state.tokens[r, :n])
        logp = jax.nn.log_softmax(_full_logits(model, seq), -1)
        want = np.asarray(logp)[np.arange(3, n - 1), seq[4:n]]
        np.testing.assert_allclose(np.asarray(state.logprobs[r, 4:n]), want, atol=1e-4)
