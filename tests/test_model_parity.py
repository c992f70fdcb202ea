"""Logits parity with transformers' PyTorch implementations, and export back to an HF folder."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need a CPU build of torch (pip install torch==2.13.0)")

import jax.numpy as jnp  # noqa: E402

from ascl_jax.models.config import ModelConfig  # noqa: E402
from ascl_jax.models.params import ArraySource, load_params  # noqa: E402
from ascl_jax.models.registry import LoadedModel, export_hf, load_model  # noqa: E402
from ascl_jax.parallel import ShardingRules, single_device_mesh  # noqa: E402
from tests.helpers import state_dict_numpy, torch_reference  # noqa: E402

FAMILIES = ["llama", "qwen2", "qwen3", "tied_llama", "yarn_qwen3"]


def _ours(ref):
    cfg = ModelConfig.from_hf_dict(ref.config.to_dict())
    mesh = single_device_mesh()
    graphdef, params = load_params(cfg, ArraySource(state_dict_numpy(ref), "torch"), mesh)
    return LoadedModel("ref", cfg, graphdef, params, None, mesh, ShardingRules(), None)


def _padded_batch(vocab):
    rng = np.random.RandomState(1)
    lengths = [13, 7, 10]
    tokens = np.zeros((3, 13), np.int64)
    for i, n in enumerate(lengths):
        tokens[i, :n] = rng.randint(1, vocab, n)
    mask = (np.arange(13)[None] < np.array(lengths)[:, None]).astype(np.int64)
    return tokens, mask, lengths


@pytest.mark.torch
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers(family):
    ref = torch_reference(family)
    ours = _ours(ref)
    assert ours.config.attention_bias == (family == "qwen2")
    assert ours.config.qk_norm == family.endswith("qwen3")
    tokens, mask, lengths = _padded_batch(ref.config.vocab_size)
    with torch.no_grad():
        expected = ref(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask)).logits.numpy()
    positions = np.broadcast_to(np.arange(tokens.shape[1]), tokens.shape)
    got, _ = ours.module()(jnp.asarray(tokens, jnp.int32), jnp.asarray(positions, jnp.int32))
    got = np.asarray(got)
    for i, n in enumerate(lengths):  # padded positions are not compared
        np.testing.assert_allclose(got[i, :n], expected[i, :n], atol=1e-4, rtol=0)
    assert np.abs(got[0] - expected[0]).max() <= 1e-4


@pytest.mark.torch
@pytest.mark.parametrize("family", ["qwen2", "tied_llama"])
def test_export_loads_in_transformers_with_same_logits(family, tmp_path):
    from transformers import AutoModelForCausalLM

    ours = _ours(torch_reference(family, seed=3))
    folder = export_hf(ours, tmp_path / "export")
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    tokens = np.random.RandomState(2).randint(0, 96, (2, 9))
    with torch.no_grad():
        theirs = reloaded(torch.tensor(tokens)).logits.numpy()
    positions = np.broadcast_to(np.arange(9), tokens.shape)
    got, _ = ours.module()(jnp.asarray(tokens, jnp.int32), jnp.asarray(positions, jnp.int32))
    np.testing.assert_allclose(np.asarray(got), theirs, atol=1e-4, rtol=0)
    # and our own loader reads the export back bit for bit
    again = load_model(str(folder))
    got2, _ = again.module()(jnp.asarray(tokens, jnp.int32), jnp.asarray(positions, jnp.int32))
    np.testing.assert_array_equal(np.asarray(got2), np.asarray(got))
