"""The one table between this decoder's parameter paths and Hugging Face tensor names.

HF stores linear weights as [out, in]; this decoder stores kernels as [in, out], so those are transposed.
Layer parameters are stacked over a leading layer axis here and stored one tensor per layer in HF
(`model.layers.{i}....`): a stacked path maps to the names of its layers in order."""

from __future__ import annotations

from dataclasses import dataclass

from ascl_jax.models.config import ModelConfig

ParamPath = tuple[str | int, ...]


@dataclass(frozen=True)
class HFTensor:
    """names: one HF tensor name, or one per layer (in layer order) for a stacked parameter."""

    names: tuple[str, ...]
    transpose: bool  # True for linear kernels ([in, out] here, [out, in] in HF)
    stacked: bool = False

    @property
    def name(self) -> str:
        """The name of an unstacked parameter (the first layer's for a stacked one)."""
        return self.names[0]


_LAYER_TENSORS: tuple[tuple[ParamPath, str, bool], ...] = (
    (("input_norm", "scale"), "input_layernorm.weight", False),
    (("post_attn_norm", "scale"), "post_attention_layernorm.weight", False),
    (("attn", "q_proj"), "self_attn.q_proj.weight", True),
    (("attn", "k_proj"), "self_attn.k_proj.weight", True),
    (("attn", "v_proj"), "self_attn.v_proj.weight", True),
    (("attn", "o_proj"), "self_attn.o_proj.weight", True),
    (("mlp", "gate_proj"), "mlp.gate_proj.weight", True),
    (("mlp", "up_proj"), "mlp.up_proj.weight", True),
    (("mlp", "down_proj"), "mlp.down_proj.weight", True),
)


def hf_module_name(path: ParamPath) -> str:
    """The HF module of a layer kernel's path, e.g. ("attn", "q_proj") -> "self_attn.q_proj"."""
    for p, name, _ in _LAYER_TENSORS:
        if p == tuple(path):
            return name.removesuffix(".weight")
    raise KeyError(path)


def hf_tensor_map(cfg: ModelConfig) -> dict[ParamPath, HFTensor]:
    """Parameter path -> HF tensor(s), for every base parameter of a decoder built from `cfg` (LoRA adapters
    have no HF tensor: see `ascl_jax.models.lora_export`)."""
    layers = range(cfg.num_layers)

    def stacked(suffix: str, transpose: bool) -> HFTensor:
        return HFTensor(tuple(f"model.layers.{i}.{suffix}" for i in layers), transpose, stacked=True)

    out: dict[ParamPath, HFTensor] = {("embed",): HFTensor(("model.embed_tokens.weight",), False)}
    entries = list(_LAYER_TENSORS)
    if cfg.attention_bias:
        entries += [(("attn", f"{n}_bias"), f"self_attn.{n}_proj.bias", False) for n in ("q", "k", "v")]
    if cfg.qk_norm:
        entries += [(("attn", "q_norm", "scale"), "self_attn.q_norm.weight", False),
                    (("attn", "k_norm", "scale"), "self_attn.k_norm.weight", False)]
    for path, suffix, transpose in entries:
        out[("layers", *path)] = stacked(suffix, transpose)
    out[("norm", "scale")] = HFTensor(("model.norm.weight",), False)
    if not cfg.tie_word_embeddings:
        out[("lm_head",)] = HFTensor(("lm_head.weight",), True)
    return out


# Tensors that HF checkpoints may carry but that hold nothing this decoder needs.
IGNORED_HF_TENSORS = ("rotary_emb.inv_freq",)
