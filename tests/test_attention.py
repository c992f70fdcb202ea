"""Every attention backend against the dense reference, value and gradient: causal self-attention,
packed segments, queries at offsets into a cache, grouped-query heads, bf16; the decoder and the rollout
engine with each backend; the backend choice and its errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ascl_jax.errors import ConfigError
from ascl_jax.models.attention import attend, blockwise_attention, dense_attention, resolve_backend
from ascl_jax.models.attention.cudnn import cudnn_attention
from ascl_jax.models.config import ComputeConfig
from ascl_jax.models.params import abstract_decoder, init_params
from ascl_jax.models.registry import BUILTIN_CONFIGS, load_model
from ascl_jax.parallel import single_device_mesh
from ascl_jax.rollout.engine import StopTokens, decode_chunk, extend, prefill
from ascl_jax.rollout.sampling import SamplingConfig, row_keys

F32 = jnp.float32


def _qkv(b, t, s, h, kv, hd, seed=0, dtype=F32):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    return (jax.random.normal(ks[0], (b, t, h, hd)).astype(dtype), jax.random.normal(ks[1], (b, s, kv, hd)).astype(dtype),
            jax.random.normal(ks[2], (b, s, kv, hd)).astype(dtype))


def _segments(b, t):
    # rows packed with 2 and 3 conversations of uneven lengths
    rows = [[0] * (t // 3) + [1] * (t - t // 3), [0] * (t // 4) + [1] * (t // 2) + [2] * (t - t // 4 - t // 2)]
    return jnp.asarray(rows[:b], jnp.int32)


def _loss(fn):
    # a non-linear readout, so the gradient checks more than a sum would
    return lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v)) * jnp.arange(1.0, 1.0 + fn(q, k, v).shape[-1]) / 100.0)


def _assert_same(fn, ref, args, atol):
    np.testing.assert_allclose(np.asarray(fn(*args)), np.asarray(ref(*args)), atol=atol, rtol=0)
    got = jax.jit(jax.grad(_loss(fn), (0, 1, 2)))(*args)
    want = jax.grad(_loss(ref), (0, 1, 2))(*args)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), atol=atol, rtol=0)


@pytest.mark.parametrize("t,block", [(37, 8), (64, 16), (50, 64)])
@pytest.mark.parametrize("packed", [False, True], ids=["one", "packed"])
def test_blockwise_equals_dense_causal(t, block, packed):
    q, k, v = _qkv(2, t, t, 4, 2, 8)
    seg = _segments(2, t) if packed else None
    slot = jnp.arange(t)[None]
    _assert_same(lambda q, k, v: blockwise_attention(q, k, v, slot, seg, seg, dtype=F32, block=block),
                 lambda q, k, v: dense_attention(q, k, v, slot, seg, seg, dtype=F32), (q, k, v), 2e-5)


def test_blockwise_equals_dense_at_offsets_into_a_cache():
    # an extend: 5 queries a row at offsets 3 and 27 into 40 cache slots, the later slots stale
    q, k, v = _qkv(2, 5, 40, 4, 1, 16, seed=1)
    slot = jnp.array([3, 27])[:, None] + jnp.arange(5)[None]
    _assert_same(lambda q, k, v: blockwise_attention(q, k, v, slot, dtype=F32, block=16),
                 lambda q, k, v: dense_attention(q, k, v, slot, dtype=F32), (q, k, v), 2e-5)


def test_blockwise_in_bfloat16_is_within_bf16_rounding_of_dense():
    q, k, v = _qkv(1, 96, 96, 4, 2, 32, seed=2, dtype=jnp.bfloat16)
    slot = jnp.arange(96)[None]
    bw = blockwise_attention(q, k, v, slot, dtype=jnp.bfloat16, block=32).astype(F32)
    ref = dense_attention(q.astype(F32), k.astype(F32), v.astype(F32), slot, dtype=F32)
    assert float(jnp.max(jnp.abs(bw - ref))) < 3e-2


@pytest.mark.parametrize("packed", [False, True], ids=["one", "packed"])
def test_splash_kernel_in_interpret_mode_equals_dense(packed):
    q, k, v = _qkv(2, 128, 128, 4, 2, 64, seed=3)
    seg = _segments(2, 128) if packed else None
    _assert_same(lambda q, k, v: attend(q, k, v, backend="splash", dtype=F32, q_segments=seg),
                 lambda q, k, v: attend(q, k, v, backend="dense", dtype=F32, q_segments=seg), (q, k, v), 2e-5)


def test_cudnn_call_layout_equals_dense():
    # the same jax.nn.dot_product_attention call with XLA's implementation: layout, scale and GQA heads
    q, k, v = _qkv(2, 24, 24, 6, 2, 16, seed=4)
    _assert_same(lambda q, k, v: cudnn_attention(q, k, v, dtype=F32, implementation="xla"),
                 lambda q, k, v: dense_attention(q, k, v, jnp.arange(24)[None], dtype=F32), (q, k, v), 2e-5)


def test_fused_backends_fall_back_to_blockwise_where_they_do_not_apply():
    # splash needs T % 128 == 0 and no cache; a cached forward at offsets runs blockwise under it
    q, k, v = _qkv(1, 40, 40, 2, 1, 8, seed=5)
    ref = attend(q, k, v, backend="dense", dtype=F32)
    np.testing.assert_allclose(attend(q, k, v, backend="splash", dtype=F32, block=16), ref, atol=2e-5)
    slot = jnp.array([[7, 8, 9]])
    got = attend(q[:, :3], k, v, backend="splash", dtype=F32, q_slot=slot, block=16)
    np.testing.assert_allclose(got, attend(q[:, :3], k, v, backend="dense", dtype=F32, q_slot=slot), atol=2e-5)


def test_backend_choice_and_errors():
    assert resolve_backend("auto", "tpu") == "splash"
    assert resolve_backend("auto", "gpu") == "cudnn"
    assert resolve_backend("blockwise", "tpu") == "blockwise"
    with pytest.raises(ConfigError, match="flash"):
        ComputeConfig(attention="flash")
    with pytest.raises(ConfigError, match="needs a GPU"):
        ComputeConfig(attention="cudnn").overrides("cpu")
    with pytest.raises(ConfigError, match="attention_block"):
        BUILTIN_CONFIGS["tiny"].replace(attention_block=0)


CFG = BUILTIN_CONFIGS["tiny"].replace(num_layers=2)


@pytest.mark.parametrize("backend", ["blockwise", "splash"])
def test_decoder_forward_and_gradient_equal_dense(backend):
    mesh = single_device_mesh()
    from flax import nnx

    _, params = init_params(CFG, mesh, seed=3)
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, CFG.vocab_size, (2, 128)), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(128), (2, 128))

    def loss(params, gd):
        logits, _ = nnx.merge(gd, params)(tokens, positions)
        return jnp.mean(jax.nn.logsumexp(logits, -1)), logits

    # the same parameters under another static config
    dense_gd = abstract_decoder(CFG.replace(attention="dense"))[0]
    other_gd = abstract_decoder(CFG.replace(attention=backend, attention_block=32))[0]
    (_, logits_ref), g_ref = jax.value_and_grad(loss, has_aux=True)(params, dense_gd)
    (_, logits_got), g_got = jax.value_and_grad(loss, has_aux=True)(params, other_gd)
    np.testing.assert_allclose(logits_got, logits_ref, atol=1e-4, rtol=0)
    for a, b in zip(jax.tree.leaves(g_got), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_engine_greedy_tokens_identical_with_dense_and_blockwise():
    # prefill, decode, a spliced extend into some rows, decode again: the same greedy tokens
    rng = np.random.RandomState(1)
    prompts = np.zeros((3, 40), np.int32)
    lens = np.array([40, 13, 25], np.int32)
    for i, n in enumerate(lens):
        prompts[i, :n] = rng.randint(0, 265, n)
    new = rng.randint(0, 265, (6, 24)).astype(np.int32)
    new_lens = np.array([24, 0, 0, 9, 17, 0], np.int32)
    greedy, stops = SamplingConfig(greedy=True), StopTokens(eos=())

    def run(cfg):
        graphdef, params = init_params(cfg, single_device_mesh(), seed=3)
        state = prefill(graphdef, params, jnp.asarray(prompts), jnp.asarray(lens), row_keys(0, np.arange(6)),
                        jnp.full((6,), 200, jnp.int32), cfg=cfg, group_size=2, capacity=256, sampling=greedy,
                        stops=stops)
        state, _ = decode_chunk(graphdef, params, state, n_steps=6, sampling=greedy, stops=stops)
        state, _ = extend(graphdef, params, state, jnp.asarray(new), jnp.asarray(new_lens), sampling=greedy, stops=stops)
        state, _ = decode_chunk(graphdef, params, state, n_steps=6, sampling=greedy, stops=stops)
        return np.asarray(state.tokens), np.asarray(state.seq_len)

    dense_tokens, dense_len = run(CFG.replace(attention="dense"))
    block_tokens, block_len = run(CFG.replace(attention="blockwise", attention_block=16))
    np.testing.assert_array_equal(block_len, dense_len)
    np.testing.assert_array_equal(block_tokens, dense_tokens)


def test_load_model_resolves_auto_for_the_devices():
    model = load_model("tiny", compute=ComputeConfig(attention="auto", attention_block=64, logprob_chunk=32))
    assert (model.config.attention, model.config.attention_block, model.config.logprob_chunk) == ("auto", 64, 32)
    assert dataclasses.replace(model.config, attention="dense").to_hf_dict() == model.config.to_hf_dict()
