"""What `--model` names: a built-in (`tiny`, `bench-qwen3-33m`, `smollm2-135m`), a `.gguf` file, a
Hugging Face folder (config.json + safetensors + tokenizer), or a hub id (`Qwen/Qwen3-0.6B`, through the
hub cache). Resolves it to config, sharded
parameters and tokenizer on a mesh, and exports back to an HF folder."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import jax
from flax import nnx
from jax.sharding import Mesh
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ascl_jax.chat.families import family_of_template
from ascl_jax.errors import ModelNotFoundError
from ascl_jax.models.arch_specs import ARCHITECTURE_SPECS
from ascl_jax.models.config import ComputeConfig, ModelConfig, RopeConfig
from ascl_jax.models.hub import hub_snapshot, looks_like_hub_id
from ascl_jax.models.lora import LoRAConfig
from ascl_jax.models.params import ArraySource, hf_tensors, init_params, load_params
from ascl_jax.models.safetensors_io import SafetensorsFolder, write_hf_folder
from ascl_jax.models.tiny_tokenizer import tiny_tokenizer
from ascl_jax.parallel.mesh import single_device_mesh
from ascl_jax.parallel.sharding import ShardingRules

_EOS, _PAD = 2, 0  # <|im_end|>, <|endoftext|> in the tiny tokenizer

# Random-weight built-ins, with the tiny BPE tokenizer (ascl_jax.models.tiny_tokenizer).
BUILTIN_CONFIGS: dict[str, ModelConfig] = {
    # Small enough to train on a laptop CPU in minutes.
    "tiny": ModelConfig(
        architecture="qwen3", vocab_size=1024, hidden_size=128, intermediate_size=384, num_layers=4,
        num_heads=4, num_kv_heads=2, head_dim=32, rms_norm_eps=1e-6, rope=RopeConfig(theta=10000.0),
        max_position_embeddings=4096, qk_norm=True, tie_word_embeddings=True,
        eos_token_ids=(_EOS,), pad_token_id=_PAD,
    ),
    # The decode-speed comparison model (Qwen3-style, ~33M parameters).
    "bench-qwen3-33m": ModelConfig(
        architecture="qwen3", vocab_size=8192, hidden_size=512, intermediate_size=1536, num_layers=8,
        num_heads=8, num_kv_heads=4, head_dim=64, rms_norm_eps=1e-6, rope=RopeConfig(theta=1000000.0),
        max_position_embeddings=4096, qk_norm=True, tie_word_embeddings=False,
        eos_token_ids=(_EOS,), pad_token_id=_PAD,
    ),
    # The GPU/TPU throughput model (Qwen3-1.7B's widths and vocabulary, 16 layers: ~1.1B parameters).
    "bench-qwen3-1b": ModelConfig(
        architecture="qwen3", vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_layers=16,
        num_heads=16, num_kv_heads=8, head_dim=128, rms_norm_eps=1e-6, rope=RopeConfig(theta=1000000.0),
        max_position_embeddings=40960, qk_norm=True, tie_word_embeddings=True,
        eos_token_ids=(_EOS,), pad_token_id=_PAD,
    ),
}
PACKAGED = ("smollm2-135m",)
# Architectures without weights: the published config.json of real models, for `ascl plan`.
ARCHITECTURES_DIR = Path(__file__).parent / "architectures"
RUN_MODEL_DIR = "model"  # where `ascl train` writes a run's final model, as an HF folder
# The chat format an exported folder records (config.json key); without it a checkpoint goes by its
# template's markup, then by its architecture's `chat_family` (ascl_jax.models.arch_specs).
CHAT_FORMAT_KEY = "ascl_chat_format"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: config, graph definition, parameters (sharded on `mesh`), tokenizer."""

    name: str
    config: ModelConfig
    graphdef: nnx.GraphDef
    params: nnx.State
    tokenizer: PreTrainedTokenizerBase | None
    mesh: Mesh
    rules: ShardingRules
    chat_family: str | None  # the `ascl_jax.chat` format its tokenizer speaks; None when unknown

    def module(self) -> nnx.Module:
        """The NNX module view of the parameters (shares their arrays)."""
        return nnx.merge(self.graphdef, self.params)


def model_names() -> list[str]:
    return [*BUILTIN_CONFIGS, *PACKAGED]


def architecture_names() -> list[str]:
    return sorted(p.stem for p in ARCHITECTURES_DIR.glob("*.json"))


def _dtype_overrides(dtype: str | None) -> dict:
    return {} if dtype is None else {"dtype": dtype, "param_dtype": dtype}


def _local_path(spec: str) -> Path:
    """Where the checkpoint `spec` names is on this machine: a hub id's cached snapshot, a run folder's
    final model, or the path itself."""
    if looks_like_hub_id(spec):
        spec = str(hub_snapshot(spec))
    path = Path(spec)
    if path.is_dir() and (path / RUN_MODEL_DIR / "config.json").exists():
        return path / RUN_MODEL_DIR  # a run folder: its final model
    return path


def model_config(spec: str, dtype: str | None = None) -> ModelConfig:
    """The ModelConfig that `--model spec` names, without reading weights: a built-in, an architecture name
    (`architecture_names()`), a .gguf file (its metadata), an HF folder's or a run folder's config.json."""
    over = _dtype_overrides(dtype)
    if spec in BUILTIN_CONFIGS:
        return dataclasses.replace(BUILTIN_CONFIGS[spec], **over)
    if spec in architecture_names():
        return ModelConfig.from_hf_file(ARCHITECTURES_DIR / f"{spec}.json", **over)
    if spec == "smollm2-135m":
        from ascl_jax.models.gguf import smollm2_gguf_path

        spec = str(smollm2_gguf_path())
    path = _local_path(spec)
    if path.suffix == ".gguf" and path.is_file():
        from ascl_jax.models.gguf import load_gguf

        return ModelConfig.from_hf_dict(load_gguf(path).hf_config, source=str(path), **over)
    if path.is_dir() and (path / "config.json").exists():
        return ModelConfig.from_hf_file(path / "config.json", **over)
    raise ModelNotFoundError(
        f"no model {spec!r}: give a built-in ({', '.join(model_names())}), an architecture "
        f"({', '.join(architecture_names())}), a .gguf file, a folder with config.json, or a run folder"
    )


def load_model(
    spec: str,
    mesh: Mesh | None = None,
    rules: ShardingRules = ShardingRules(),
    dtype: str | None = None,
    seed: int = 0,
    lora: LoRAConfig = LoRAConfig(),
    compute: ComputeConfig = ComputeConfig(),
) -> LoadedModel:
    """Resolve `spec` (built-in name, .gguf file, HF folder, or a run folder of `ascl train`) onto `mesh`
    (default: one device).

    `dtype` ("float32"/"bfloat16") overrides both parameter and compute dtype. With `lora.rank` > 0 the
    model gets fresh LoRA adapters (zero B: the loaded model unchanged), which training then trains alone.
    `compute` picks the attention backend and the log-probability chunk (resolved for the mesh's devices)."""
    mesh = mesh or single_device_mesh()
    over = {**_dtype_overrides(dtype), **compute.overrides(mesh.devices.flat[0].platform)}
    if spec in BUILTIN_CONFIGS:
        cfg = dataclasses.replace(BUILTIN_CONFIGS[spec], **over)
        graphdef, params = init_params(cfg, mesh, rules, seed, lora)
        return LoadedModel(spec, cfg, graphdef, params, tiny_tokenizer(), mesh, rules, "chatml_compact")
    if spec == "smollm2-135m":
        from ascl_jax.models.gguf import smollm2_gguf_path

        return _load_gguf(smollm2_gguf_path(), spec, mesh, rules, over, lora, seed)
    path = _local_path(spec)
    if path.suffix == ".gguf" and path.is_file():
        return _load_gguf(path, spec, mesh, rules, over, lora, seed)
    if path.is_dir() and (path / "config.json").exists():
        cfg = ModelConfig.from_hf_file(path / "config.json", **over)
        graphdef, params = load_params(cfg, SafetensorsFolder(path), mesh, rules, lora, seed)
        tokenizer = _folder_tokenizer(path)
        family = _folder_chat_family(path / "config.json", cfg, tokenizer)
        return LoadedModel(str(path), cfg, graphdef, params, tokenizer, mesh, rules, family)
    if path.is_dir():
        raise ModelNotFoundError(f"{path}: a model folder needs a config.json (a Hugging Face model folder)")
    if spec in architecture_names():
        raise ModelNotFoundError(
            f"{spec} is an architecture without weights (for `ascl plan`); to train, give the model's Hugging "
            "Face folder (config.json, safetensors, tokenizer files)"
        )
    raise ModelNotFoundError(
        f"no model {spec!r}: give a built-in ({', '.join(model_names())}), a .gguf file, a folder with "
        "config.json, or a run folder"
    )


def _load_gguf(path: Path, name: str, mesh: Mesh, rules: ShardingRules, over: dict, lora: LoRAConfig,
               seed: int) -> LoadedModel:
    from ascl_jax.models.gguf import load_gguf

    ckpt = load_gguf(path)
    cfg = ModelConfig.from_hf_dict(ckpt.hf_config, source=str(path), **over)
    graphdef, params = load_params(cfg, ArraySource(ckpt.tensors, str(path)), mesh, rules, lora, seed)
    family = family_of_template(ckpt.tokenizer.chat_template) or _architecture_family(cfg)
    return LoadedModel(name, cfg, graphdef, params, ckpt.tokenizer, mesh, rules, family)


def _folder_chat_family(config_path: Path, cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase | None) -> str | None:
    # A folder this project exported records its chat format; others go by their own template's markup
    # (Llama 3 headers, DeepSeek markers), then by architecture (the ChatML families).
    recorded = json.loads(config_path.read_text()).get(CHAT_FORMAT_KEY)
    template = tokenizer.chat_template if tokenizer is not None else None
    return recorded or family_of_template(template) or _architecture_family(cfg)


def _architecture_family(cfg: ModelConfig) -> str | None:
    spec = ARCHITECTURE_SPECS.get(cfg.architecture)
    return spec.chat_family if spec is not None else None


def _folder_tokenizer(path: Path) -> PreTrainedTokenizerBase | None:
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    return AutoTokenizer.from_pretrained(str(path))


def export_hf(model: LoadedModel, folder: str | Path, dtype: str | None = None, merge_adapters: bool = True) -> Path:
    """Write `model` as an HF folder (config.json, safetensors, tokenizer files) that transformers loads;
    LoRA adapters are merged into the weights (`merge_adapters`=False: the base weights alone).

    Written atomically: the folder appears complete or not at all. Under several processes every process
    calls it (each tensor is gathered from all of them) and process 0 writes."""
    cfg = model.config if dtype is None else dataclasses.replace(model.config, param_dtype=dtype)
    tokenizer = model.tokenizer

    def write_tokenizer(tmp: Path) -> None:
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))

    hf_config = {**cfg.to_hf_dict(), CHAT_FORMAT_KEY: model.chat_family}
    tensors = hf_tensors(model.config, model.params, dtype, merge_adapters)
    if jax.process_index() != 0:
        for _ in tensors:  # take part in the gathers
            pass
        return Path(folder)
    return write_hf_folder(folder, hf_config, tensors, write_tokenizer)
