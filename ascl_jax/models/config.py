"""Decoder configuration: one typed dataclass for the architectures of `ascl_jax.models.arch_specs` (Llama 3.x,
Qwen2/2.5, Qwen3, SmolLM2), built from and written back to a Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from ascl_jax.errors import ConfigError
from ascl_jax.models.arch_specs import ARCHITECTURE_SPECS, architecture_of_model_type
from ascl_jax.models.attention import AttentionBackend, check_backend, resolve_backend

# The architectures are the entries of ascl_jax.models.arch_specs, named once there.
Architecture = Literal[tuple(ARCHITECTURE_SPECS)]
DType = Literal["float32", "bfloat16"]
_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
RopeType = Literal["default", "linear", "llama3", "yarn"]
ROPE_TYPES: tuple[str, ...] = get_args(RopeType)


@dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding parameters (HF `rope_parameters`); `type` picks the frequency schedule."""

    theta: float = 10000.0
    type: RopeType = "default"
    factor: float = 1.0
    # llama3
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int | None = None
    # yarn
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    truncate: bool = True


@dataclass(frozen=True)
class ComputeConfig:
    """How the model computes (the `compute` group of a run config): the attention backend
    (auto | dense | blockwise | splash | cudnn, `ascl_jax.models.attention`), the blockwise tile, and the
    positions per chunk of the log-probability head (0: the whole row at once)."""

    attention: AttentionBackend = "auto"
    attention_block: int = 512
    logprob_chunk: int = 512

    def __post_init__(self) -> None:
        check_backend(self.attention)

    def overrides(self, platform: str) -> dict[str, Any]:
        """ModelConfig fields for a model that runs on `platform` ("cpu", "gpu", "tpu"); `auto` is resolved
        to the platform's fused kernel where it has one."""
        attention = resolve_backend(self.attention, platform)
        if attention == "cudnn" and platform not in ("gpu", "cuda"):
            raise ConfigError(f"compute.attention=cudnn needs a GPU (the devices here are {platform}); use auto or blockwise")
        return {"attention": attention, "attention_block": self.attention_block, "logprob_chunk": self.logprob_chunk}


@dataclass(frozen=True)
class ModelConfig:
    """Everything the decoder needs to know about its shape and numerics.

    `dtype` is the compute dtype of activations; `param_dtype` the storage dtype of parameters. Logits
    are always returned in float32.
    """

    architecture: Architecture
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope: RopeConfig = field(default_factory=RopeConfig)
    max_position_embeddings: int = 4096
    attention_bias: bool = False  # Qwen2/2.5: bias on q, k, v
    qk_norm: bool = False  # Qwen3: RMSNorm over head_dim on q and k
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    dtype: DType = "float32"
    param_dtype: DType = "float32"
    # How the forward computes, not what it computes (never written to config.json): the attention
    # backend (`ascl_jax.models.attention`), its blockwise tile, and the positions per chunk of the
    # log-probability head (`ascl_jax.models.chunked_logprobs`; 0: the whole row at once).
    attention: AttentionBackend = "auto"
    attention_block: int = 512
    logprob_chunk: int = 512

    def __post_init__(self) -> None:
        check_backend(self.attention)
        for key, least, word in (("attention_block", 1, "positive"), ("logprob_chunk", 0, "non-negative")):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{key} must be a {word} int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_attention_heads ({self.num_heads}) must be a multiple of num_key_value_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.rope.type not in ROPE_TYPES:
            raise ConfigError(f"rope type {self.rope.type!r} is not supported; use one of {', '.join(ROPE_TYPES)}")

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    @property
    def num_params(self) -> int:
        """Parameter count (embedding and head counted once when tied)."""
        d, f, h, kv, hd = self.hidden_size, self.intermediate_size, self.num_heads, self.num_kv_heads, self.head_dim
        attn = d * h * hd * 2 + d * kv * hd * 2 + (h * hd + 2 * kv * hd if self.attention_bias else 0)
        attn += 2 * hd if self.qk_norm else 0
        layer = attn + 3 * d * f + 2 * d
        emb = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * layer + emb + d

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token: 2 x matmul params + attention scores and values (causal, average)."""
        d, f, h, kv, hd = self.hidden_size, self.intermediate_size, self.num_heads, self.num_kv_heads, self.head_dim
        matmul = self.num_layers * (d * h * hd * 2 + d * kv * hd * 2 + 3 * d * f) + self.vocab_size * d
        attn = self.num_layers * 2 * h * hd * seq_len  # QK^T and PV, half of the square by causality, x2 flops
        return 2.0 * matmul + attn

    # ----- Hugging Face config.json -----

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], source: str = "config.json", **overrides: Any) -> ModelConfig:
        """Build from the contents of an HF `config.json`; `source` names the file in error messages."""
        if not isinstance(hf, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(hf).__name__}")
        model_type = hf.get("model_type")
        if model_type is None:
            raise ConfigError(f"{source}: missing key 'model_type' (one of {', '.join(ARCHITECTURE_SPECS)})")
        arch = architecture_of_model_type(model_type)
        if arch is None:
            raise ConfigError(
                f"{source}: unknown architecture model_type={model_type!r}; supported: {', '.join(ARCHITECTURE_SPECS)}"
            )
        spec = ARCHITECTURE_SPECS[arch]
        for key in _REQUIRED:
            if key not in hf:
                raise ConfigError(f"{source}: missing key {key!r} (required for model_type {model_type!r})")
            if not isinstance(hf[key], int) or isinstance(hf[key], bool) or hf[key] <= 0:
                raise ConfigError(f"{source}: key {key!r} must be a positive integer, got {hf[key]!r}")
        if hf.get("use_sliding_window"):
            raise ConfigError(f"{source}: use_sliding_window=true is not supported; set it to false")
        if hf.get("mlp_bias"):
            raise ConfigError(f"{source}: mlp_bias=true is not supported by this decoder")
        hidden, heads = hf["hidden_size"], hf["num_attention_heads"]
        head_dim = hf.get("head_dim") or hidden // heads
        eos = hf.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        kwargs: dict[str, Any] = dict(
            architecture=arch,
            vocab_size=hf["vocab_size"],
            hidden_size=hidden,
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=head_dim,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope=_rope_from_hf(hf, source),
            max_position_embeddings=int(hf.get("max_position_embeddings", 4096)),
            attention_bias=bool(hf.get("attention_bias", spec.qkv_bias)),
            qk_norm=spec.qk_norm,
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=eos_ids,
            pad_token_id=hf.get("pad_token_id"),
            dtype=_dtype_from_hf(hf.get("dtype") or hf.get("torch_dtype")),
        )
        kwargs["param_dtype"] = kwargs["dtype"]
        kwargs.update(overrides)
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_hf_file(cls, path: str | Path, **overrides: Any) -> ModelConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file; a model folder needs a config.json") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_hf_dict(data, source=str(path), **overrides)

    def to_hf_dict(self) -> dict[str, Any]:
        """An HF `config.json` dict that transformers loads into the matching `*ForCausalLM`."""
        rope: dict[str, Any] = {"rope_type": self.rope.type, "rope_theta": self.rope.theta}
        if self.rope.type != "default":
            rope["factor"] = self.rope.factor
        if self.rope.type in ("llama3", "yarn"):
            rope["original_max_position_embeddings"] = self.rope.original_max_position_embeddings
        if self.rope.type == "llama3":
            rope.update(low_freq_factor=self.rope.low_freq_factor, high_freq_factor=self.rope.high_freq_factor)
        if self.rope.type == "yarn":
            rope.update(beta_fast=self.rope.beta_fast, beta_slow=self.rope.beta_slow, truncate=self.rope.truncate)
            if self.rope.attention_factor is not None:
                rope["attention_factor"] = self.rope.attention_factor
        spec = ARCHITECTURE_SPECS[self.architecture]
        eos: Any = list(self.eos_token_ids) if len(self.eos_token_ids) != 1 else self.eos_token_ids[0]
        out: dict[str, Any] = {
            "architectures": [spec.hf_class],
            "model_type": spec.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": rope,
            "rope_theta": self.rope.theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos if self.eos_token_ids else None,
            "pad_token_id": self.pad_token_id,
            "dtype": self.param_dtype,
        }
        if spec.bias_keys:
            out["attention_bias"] = self.attention_bias
            out["mlp_bias"] = False
        if spec.sliding_window_key:
            out["use_sliding_window"] = False
        return out


def _dtype_from_hf(value: Any) -> DType:
    # Checkpoints stored in float16 are computed in bfloat16: float16 overflows in long-context activations.
    if value in ("bfloat16", "float16"):
        return "bfloat16"
    return "float32"


def _rope_from_hf(hf: dict[str, Any], source: str) -> RopeConfig:
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: 'rope_parameters' must be an object, got {params!r}")
    if "full_attention" in params:  # per-layer-type form: all our layers are full attention
        params = params["full_attention"]
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    rtype = params.get("rope_type", params.get("type", "default"))
    if rtype not in ROPE_TYPES:
        raise ConfigError(f"{source}: rope_type {rtype!r} is not supported; use one of {', '.join(ROPE_TYPES)}")

    def need(key: str) -> Any:
        if params.get(key) is None:
            raise ConfigError(f"{source}: rope_type {rtype!r} needs key {key!r} in rope_parameters")
        return params[key]

    kw: dict[str, Any] = {"theta": float(theta), "type": rtype}
    if rtype in ("linear", "llama3", "yarn"):
        kw["factor"] = float(need("factor"))
    if rtype == "llama3":
        kw.update(
            low_freq_factor=float(need("low_freq_factor")),
            high_freq_factor=float(need("high_freq_factor")),
            original_max_position_embeddings=int(need("original_max_position_embeddings")),
        )
    if rtype == "yarn":
        kw.update(
            original_max_position_embeddings=int(
                params.get("original_max_position_embeddings") or hf.get("max_position_embeddings", 4096)
            ),
            beta_fast=float(params.get("beta_fast") or 32.0),
            beta_slow=float(params.get("beta_slow") or 1.0),
            attention_factor=params.get("attention_factor"),
            truncate=bool(params.get("truncate", True)),
        )
        if params.get("mscale") or params.get("mscale_all_dim"):
            raise ConfigError(f"{source}: yarn with mscale/mscale_all_dim is not supported")
    return RopeConfig(**kw)
