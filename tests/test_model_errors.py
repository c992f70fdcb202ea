"""A bad config.json or weights folder fails with one clear error that names the key or tensor and the file."""

import json

import numpy as np
import pytest

from ascl_jax.cli import main
from ascl_jax.errors import ConfigError, ModelNotFoundError, WeightsError
from ascl_jax.models.config import ModelConfig
from ascl_jax.models.params import hf_tensors
from ascl_jax.models.registry import BUILTIN_CONFIGS, load_model
from ascl_jax.models.safetensors_io import write_hf_folder
from ascl_jax.models.params import init_params
from ascl_jax.parallel import single_device_mesh

CFG = BUILTIN_CONFIGS["tiny"].replace(num_layers=1)


@pytest.fixture(scope="module")
def tensors():
    _, params = init_params(CFG, single_device_mesh())
    return dict(hf_tensors(CFG, params))


def _folder(tmp_path, config, tensors, max_shard_bytes=4 << 30):
    return write_hf_folder(tmp_path / "m", config, tensors.items(), max_shard_bytes=max_shard_bytes)


def test_missing_key_names_key_and_file(tmp_path, tensors):
    cfg = CFG.to_hf_dict()
    del cfg["hidden_size"]
    folder = _folder(tmp_path, cfg, tensors)
    with pytest.raises(ConfigError, match=r"config\.json: missing key 'hidden_size'") as err:
        load_model(str(folder))
    assert str(folder / "config.json") in str(err.value)


@pytest.mark.parametrize("change,pattern", [
    ({"model_type": "gpt2"}, r"unknown architecture model_type='gpt2'; supported: llama, qwen2, qwen3"),
    ({"num_attention_heads": "four"}, r"'num_attention_heads' must be a positive integer"),
    ({"num_key_value_heads": 3}, r"multiple of num_key_value_heads"),
    ({"rope_parameters": {"rope_type": "longrope", "rope_theta": 1.0}}, r"rope_type 'longrope' is not supported"),
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 1.0, "factor": 8.0}}, r"needs key 'low_freq_factor'"),
])
def test_bad_config_values(change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        ModelConfig.from_hf_dict({**CFG.to_hf_dict(), **change}, source="x/config.json")


def test_config_not_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json: not valid JSON"):
        ModelConfig.from_hf_file(tmp_path / "config.json")


def test_missing_tensor_names_tensor_and_file(tmp_path, tensors):
    partial = {k: v for k, v in tensors.items() if k != "model.layers.0.mlp.up_proj.weight"}
    folder = _folder(tmp_path, CFG.to_hf_dict(), partial)
    with pytest.raises(WeightsError, match=r"missing tensor 'model.layers.0.mlp.up_proj.weight' \(expected shape \[384, 128\]\)"):
        load_model(str(folder))


def test_misshaped_tensor_names_tensor_file_and_shapes(tmp_path, tensors):
    bad = dict(tensors)
    bad["model.layers.0.self_attn.k_proj.weight"] = np.zeros((32, 128), np.float32)
    folder = _folder(tmp_path, CFG.to_hf_dict(), bad)
    with pytest.raises(WeightsError) as err:
        load_model(str(folder))
    msg = str(err.value)
    assert "model.safetensors" in msg and "'model.layers.0.self_attn.k_proj.weight' has shape [32, 128], expected [64, 128]" in msg


def test_sharded_folder_with_index_loads(tmp_path, tensors):
    folder = _folder(tmp_path, CFG.to_hf_dict(), tensors, max_shard_bytes=100_000)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    model = load_model(str(folder))
    got = dict(hf_tensors(model.config, model.params))
    for name, arr in tensors.items():
        np.testing.assert_array_equal(got[name], arr)


def test_index_naming_a_missing_shard(tmp_path, tensors):
    folder = _folder(tmp_path, CFG.to_hf_dict(), tensors, max_shard_bytes=100_000)
    next(folder.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(WeightsError, match="names shard 'model-00002-of-"):
        load_model(str(folder))


def test_unknown_model_spec():
    with pytest.raises(ModelNotFoundError, match="built-in \\(tiny, bench-qwen3-33m, bench-qwen3-1b, smollm2-135m\\)"):
        load_model("no-such-model")


def test_cli_bad_input_is_one_line_exit_2(capsys, tmp_path):
    assert main(["generate", "--model", "no-such-model", "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ascl generate: error: no model 'no-such-model'")
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--prompt", "hi", "--max-new-tokens", "lots"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
