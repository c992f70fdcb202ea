"""bfloat16 parameters and compute stay close to float32; logits are always float32."""

import jax.numpy as jnp
import numpy as np

from ascl_jax.models.registry import load_model


def test_bfloat16_close_to_float32():
    f32 = load_model("tiny", seed=4)
    bf16 = load_model("tiny", dtype="bfloat16", seed=4)
    assert bf16.params["embed"][...].dtype == jnp.bfloat16
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, 265, (2, 24)), jnp.int32)
    pos = jnp.broadcast_to(jnp.arange(24, dtype=jnp.int32), (2, 24))
    a, _ = f32.module()(tokens, pos)
    b, _ = bf16.module()(tokens, pos)
    assert b.dtype == jnp.float32
    err = np.abs(np.asarray(a) - np.asarray(b)).max()
    assert err < 0.05, err  # bf16 has ~3 significant digits; logits here are O(1)
    assert (np.asarray(a).argmax(-1) == np.asarray(b).argmax(-1)).mean() > 0.9
