"""The chunked log-probability head against the dense one: value and gradient of log-probabilities,
entropies and argmax hits, chunks that do not divide the row, temperature; SFT and RL losses unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ascl_jax.errors import ConfigError
from ascl_jax.models.chunked_logprobs import token_stats
from ascl_jax.rl.loss import token_logprobs

B, T, D, V = 2, 45, 16, 97


def _inputs(seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    hidden = jax.random.normal(ks[0], (B, T, D))
    w = jax.random.normal(ks[1], (D, V)) * 0.7
    targets = jax.random.randint(ks[2], (B, T), 0, V)
    return hidden, w, targets


def _dense(hidden, w, targets, temperature):
    logits = hidden @ w
    lp = token_logprobs(logits, targets, temperature=temperature)
    logp_all = jax.nn.log_softmax(logits / temperature, axis=-1)
    entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
    hit = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    return lp, entropy, hit


@pytest.mark.parametrize("chunk", [0, 7, 16, 45, 64])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_values_and_gradients_equal_the_dense_head(chunk, temperature):
    hidden, w, targets = _inputs()

    def chunked(hidden, w):
        return token_stats(lambda h: h @ w, hidden, targets, temperature=temperature, chunk=chunk)

    got, want = chunked(hidden, w), _dense(hidden, w, targets, temperature)
    for g, x in zip(got, want):
        np.testing.assert_allclose(g, x, atol=1e-5, rtol=0)

    coef = jnp.linspace(-1.0, 1.0, T)  # a per-token weighting, as the RL loss applies

    def readout(stats):
        lp, ent, _ = stats
        return jnp.sum(lp * coef) + 0.3 * jnp.sum(ent)

    g_got = jax.jit(jax.grad(lambda h, w: readout(chunked(h, w)), (0, 1)))(hidden, w)
    g_want = jax.grad(lambda h, w: readout(_dense(h, w, targets, temperature)), (0, 1))(hidden, w)
    for a, b in zip(g_got, g_want):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_chunk_holds_one_chunk_of_logits_in_the_compiled_program():
    # the whole row's logits would be B*T*V floats; the chunked program's temporaries stay well below
    t, v = 2048, 4096
    hidden = jax.ShapeDtypeStruct((1, t, 64), jnp.float32)
    w = jax.ShapeDtypeStruct((64, v), jnp.float32)
    targets = jax.ShapeDtypeStruct((1, t), jnp.int32)

    def temps(chunk):
        def f(h, w, y):
            return jnp.sum(token_stats(lambda x: x @ w, h, y, chunk=chunk)[0])
        compiled = jax.jit(jax.grad(f, (0, 1))).lower(hidden, w, targets).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    full = t * v * 4
    assert temps(0) >= full
    assert temps(256) < full / 2


def test_bad_chunk_is_a_config_error():
    hidden, w, targets = _inputs()
    with pytest.raises(ConfigError, match="logprob_chunk"):
        token_stats(lambda h: h @ w, hidden, targets, chunk=-1)
