"""The one table between this decoder's parameter paths and Hugging Face tensor names.

HF stores linear weights as [out, in]; this decoder stores kernels as [in, out], so those are transposed."""

from __future__ import annotations

from dataclasses import dataclass

from ascl_jax.models.config import ModelConfig

ParamPath = tuple[str | int, ...]


@dataclass(frozen=True)
class HFTensor:
    name: str
    transpose: bool  # True for linear kernels ([in, out] here, [out, in] in HF)


def hf_tensor_map(cfg: ModelConfig) -> dict[ParamPath, HFTensor]:
    """Parameter path -> HF tensor, for every parameter of a decoder built from `cfg`."""
    out: dict[ParamPath, HFTensor] = {("embed",): HFTensor("model.embed_tokens.weight", False)}
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        layer: dict[ParamPath, HFTensor] = {
            ("input_norm", "scale"): HFTensor(p + "input_layernorm.weight", False),
            ("post_attn_norm", "scale"): HFTensor(p + "post_attention_layernorm.weight", False),
            ("attn", "q_proj"): HFTensor(p + "self_attn.q_proj.weight", True),
            ("attn", "k_proj"): HFTensor(p + "self_attn.k_proj.weight", True),
            ("attn", "v_proj"): HFTensor(p + "self_attn.v_proj.weight", True),
            ("attn", "o_proj"): HFTensor(p + "self_attn.o_proj.weight", True),
            ("mlp", "gate_proj"): HFTensor(p + "mlp.gate_proj.weight", True),
            ("mlp", "up_proj"): HFTensor(p + "mlp.up_proj.weight", True),
            ("mlp", "down_proj"): HFTensor(p + "mlp.down_proj.weight", True),
        }
        if cfg.attention_bias:
            for n in ("q", "k", "v"):
                layer[("attn", f"{n}_bias")] = HFTensor(p + f"self_attn.{n}_proj.bias", False)
        if cfg.qk_norm:
            layer[("attn", "q_norm", "scale")] = HFTensor(p + "self_attn.q_norm.weight", False)
            layer[("attn", "k_norm", "scale")] = HFTensor(p + "self_attn.k_norm.weight", False)
        out.update({("layers", i, *k): v for k, v in layer.items()})
    out[("norm", "scale")] = HFTensor("model.norm.weight", False)
    if not cfg.tie_word_embeddings:
        out[("lm_head",)] = HFTensor("lm_head.weight", True)
    return out


# Tensors that HF checkpoints may carry but that hold nothing this decoder needs.
IGNORED_HF_TENSORS = ("rotary_emb.inv_freq",)
