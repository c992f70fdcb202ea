"""ascl_jax.models.arch_specs is the one place an architecture is described: the config's Literal, the
packaged configs and the readers all come from `ARCHITECTURE_SPECS`, and a made-up entry added there alone
is read from config.json and GGUF, loaded, given its chat family and exported back."""

import json
from typing import get_args

import numpy as np
import pytest

from ascl_jax.errors import ConfigError
from ascl_jax.models import arch_specs
from ascl_jax.models.arch_specs import ARCHITECTURE_SPECS, ArchitectureSpec, GGUFBlockExtra
from ascl_jax.models.config import Architecture, ModelConfig
from ascl_jax.models.gguf import load_gguf
from ascl_jax.models.registry import ARCHITECTURES_DIR, export_hf, load_model
from tests.test_gguf import HEAD_DIM, HEADS, KV_HEADS, _hf_weights, _write_gguf

_HF = dict(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
# Shaped like Qwen3 with Qwen2's always-on q/k/v biases, under names no real architecture uses.
_MINI = ArchitectureSpec(
    hf_class="MiniForCausalLM", model_type="mini", aliases=("mini-chat",), chat_family="chatml",
    qkv_bias=True, qk_norm=True, bias_keys=False, sliding_window_key=True,
    gguf_arch="mini", gguf_extras=(
        GGUFBlockExtra(("attn_q.bias", "attn_k.bias", "attn_v.bias")),
        GGUFBlockExtra(("attn_q_norm.weight", "attn_k_norm.weight")),
    ),
)


@pytest.fixture
def mini(monkeypatch):
    monkeypatch.setitem(ARCHITECTURE_SPECS, "mini", _MINI)


def test_every_architecture_name_has_one_spec():
    assert get_args(Architecture) == tuple(ARCHITECTURE_SPECS) == ("llama", "qwen2", "qwen3")
    model_types = [t for s in ARCHITECTURE_SPECS.values() for t in (s.model_type, *s.aliases)]
    assert len(model_types) == len(set(model_types)), "a model_type read as two architectures"
    gguf = arch_specs.gguf_arch_names()
    assert len(gguf) == len(set(gguf))
    for name, spec in ARCHITECTURE_SPECS.items():
        assert arch_specs.architecture_of_model_type(spec.model_type) == name
        assert spec.gguf_arch is None or arch_specs.gguf_spec(spec.gguf_arch) is spec


@pytest.mark.parametrize("path", sorted(ARCHITECTURES_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_packaged_configs_are_table_architectures(path):
    cfg = ModelConfig.from_hf_file(path)
    spec = ARCHITECTURE_SPECS[cfg.architecture]
    hf = cfg.to_hf_dict()
    assert (hf["architectures"], hf["model_type"]) == ([spec.hf_class], spec.model_type)
    assert json.loads(path.read_text())["architectures"] == [spec.hf_class]


def test_a_new_entry_is_read_from_config_json(mini):
    cfg = ModelConfig.from_hf_dict({**_HF, "model_type": "mini-chat"})
    assert (cfg.architecture, cfg.attention_bias, cfg.qk_norm) == ("mini", True, True)
    hf = cfg.to_hf_dict()
    assert (hf["architectures"], hf["model_type"], hf["use_sliding_window"]) == (["MiniForCausalLM"], "mini", False)
    assert "attention_bias" not in hf and "mlp_bias" not in hf
    assert ModelConfig.from_hf_dict(hf) == cfg
    with pytest.raises(ConfigError, match=r"supported: llama, qwen2, qwen3, mini$"):
        ModelConfig.from_hf_dict({**_HF, "model_type": "gpt2"})


def test_a_new_entry_is_read_from_gguf_loaded_and_exported(mini, tmp_path):
    weights = _hf_weights("qwen3")
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    p = "model.layers.0.self_attn."
    weights |= {p + "q_proj.bias": np.ones(q, np.float32), p + "k_proj.bias": np.ones(kv, np.float32),
                p + "v_proj.bias": np.ones(kv, np.float32)}
    path = _write_gguf(tmp_path / "tiny-mini.gguf", "mini", weights)
    ckpt = load_gguf(path)
    assert (ckpt.hf_config["architectures"], ckpt.hf_config["model_type"]) == (["MiniForCausalLM"], "mini")
    assert set(ckpt.tensors) == set(weights)
    for name, w in weights.items():  # not permuted: only llama's converter reorders q/k rows
        np.testing.assert_array_equal(ckpt.tensors[name], w, err_msg=name)

    model = load_model(str(path))
    assert (model.config.architecture, model.config.attention_bias, model.config.qk_norm) == ("mini", True, True)
    assert model.chat_family == "chatml"  # the file's template names no family: the spec's default
    exported = json.loads((export_hf(model, tmp_path / "out") / "config.json").read_text())
    assert (exported["architectures"], exported["model_type"]) == (["MiniForCausalLM"], "mini")


def test_gguf_errors_list_the_table(mini, tmp_path):
    with pytest.raises(ConfigError, match=r"supported: llama, mini, qwen2, qwen3\. "):
        load_gguf(_write_gguf(tmp_path / "falcon.gguf", "falcon"))
