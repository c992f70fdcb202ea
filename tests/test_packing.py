"""Packed SFT rows: the loss equals the loss of the same conversations unpacked, with the dense and the
blockwise attention; the packing is first-fit, deterministic and bounded by the row width."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ascl_jax.data.prompts import DataError
from ascl_jax.models.params import abstract_decoder, init_params
from ascl_jax.models.registry import BUILTIN_CONFIGS
from ascl_jax.parallel import single_device_mesh
from ascl_jax.sft.data import pack_examples
from ascl_jax.sft.loss import sft_loss
from ascl_jax.sft.packing import first_fit_rows, pack_rows, padding_fraction

CFG = BUILTIN_CONFIGS["tiny"].replace(num_layers=2)


def _examples(seed=0, n=7):
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        length = int(rng.randint(5, 40))
        ids = rng.randint(1, CFG.vocab_size, length).tolist()
        mask = [0] * (length // 3) + [1] * (length - length // 3)
        out.append((ids, mask))
    return out


@pytest.mark.parametrize("attention", ["dense", "blockwise"])
def test_packed_loss_equals_unpacked_loss(attention):
    cfg = CFG.replace(attention=attention, attention_block=16)
    _, params = init_params(CFG, single_device_mesh(), seed=2)
    model = nnx.merge(abstract_decoder(cfg)[0], params)
    examples = _examples()
    packed = pack_rows(examples, 0, 64)
    plain = pack_examples(examples, 0, 64)
    assert len(packed["tokens"]) < len(plain["tokens"])
    num_p, den_p, m_p = sft_loss(model, {k: jnp.asarray(v) for k, v in packed.items()})
    num_u, den_u, m_u = sft_loss(model, {k: jnp.asarray(v) for k, v in plain.items()})
    assert float(den_p) == float(den_u) == sum(sum(m[1:]) for _, m in examples)
    np.testing.assert_allclose(float(num_p), float(num_u), rtol=2e-5)
    assert float(m_p["correct_sum"]) == float(m_u["correct_sum"])


def test_rows_hold_whole_conversations_with_their_own_positions():
    examples = _examples(seed=1, n=9)
    packed = pack_rows(examples, 0, 80)
    seen = []
    for r in range(len(packed["tokens"])):
        seg, pos, tok = packed["segments"][r], packed["positions"][r], packed["tokens"][r]
        for s in sorted(set(seg[seg >= 0].tolist())):
            where = np.nonzero(seg == s)[0]
            assert (np.diff(where) == 1).all() and (pos[where] == np.arange(len(where))).all()
            seen.append(tok[where].tolist())
        assert (seg[len(np.nonzero(seg >= 0)[0]):] == -1).all()  # padding only at the end
    assert sorted(seen) == sorted(ids for ids, _ in examples)
    lengths = [len(ids) for ids, _ in examples]
    assert padding_fraction(packed, lengths) < padding_fraction(pack_examples(examples, 0, 80), lengths)


def test_first_fit_is_deterministic_and_checks_the_width():
    assert first_fit_rows([5, 3, 7, 2, 4], 9) == [[2, 3], [0, 4], [1]]
    with pytest.raises(DataError, match="sft.max_tokens is 6"):
        first_fit_rows([5, 7], 6)


def test_update_width_is_a_power_of_two_then_steps_of_2048():
    from ascl_jax.rl.batch import pack_width

    assert [pack_width([n]) for n in (1, 65, 900, 2048, 2049, 4096, 9216)] == [64, 128, 1024, 2048, 4096, 4096, 10240]
