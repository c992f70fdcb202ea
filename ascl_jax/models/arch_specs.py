"""The decoder architectures this package reads and writes, one `ArchitectureSpec` each in
`ARCHITECTURE_SPECS`: what `ModelConfig` (`ascl_jax.models.config`), the GGUF reader
(`ascl_jax.models.gguf`) and the registry (`ascl_jax.models.registry`) need to know about an
architecture beyond the numbers of its config.json.

The decoder itself (`ascl_jax.models.decoder`) and the weight names (`ascl_jax.models.hf_names`) never ask
which architecture they run: they follow `ModelConfig.attention_bias` and `ModelConfig.qk_norm`, which
`ModelConfig.from_hf_dict` fills from the spec where config.json is silent. Adding an architecture is one
entry here (and, to plan it without weights, its published config.json in `models/architectures/`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GGUFBlockExtra:
    """A group of per-block tensors that a GGUF file of the architecture holds beyond the plain Llama block.

    tensors: llama.cpp's names within a block (`blk.{i}.` left off), e.g. "attn_q.bias"; a bias has one
        value per output row of its weight, a q/k norm one per head dimension.
    switch: the config.json key that says whether the blocks have them, set from the file (true when a
        block holds the first of `tensors`); None: every block of the architecture has them.
    """

    tensors: tuple[str, ...]
    switch: str | None = None


_QKV_BIAS = ("attn_q.bias", "attn_k.bias", "attn_v.bias")


@dataclass(frozen=True)
class ArchitectureSpec:
    """One decoder architecture.

    hf_class: the transformers class that loads it, written to config.json's "architectures".
    model_type: config.json's "model_type", read and written back.
    aliases: other model_type values read as this architecture.
    chat_family: the `ascl_jax.chat` family of a checkpoint whose chat template names none (a folder
        this project exported records its own); None: unknown.
    qkv_bias: whether q, k and v have biases when config.json does not say (`ModelConfig.attention_bias`).
    qk_norm: whether q and k get an RMSNorm over head_dim before RoPE (`ModelConfig.qk_norm`).
    bias_keys: whether config.json switches the biases (`attention_bias`, and an export writes
        `mlp_bias: false` beside it); False where the class has no switch because its q, k, v always
        have biases (Qwen2).
    sliding_window_key: whether config.json has `use_sliding_window`, which an export writes false:
        every layer here attends to the whole context.
    gguf_arch: llama.cpp's `general.architecture` for it; None: no GGUF form is read.
    gguf_extras: the per-block tensors its GGUF files hold beyond the plain Llama block.
    gguf_permuted_qk: whether llama.cpp's converter reordered the q and k rows for its interleaved RoPE
        (it does so for its llama architecture only), which the reader undoes.
    """

    hf_class: str
    model_type: str
    aliases: tuple[str, ...] = ()
    chat_family: str | None = None
    qkv_bias: bool = False
    qk_norm: bool = False
    bias_keys: bool = True
    sliding_window_key: bool = False
    gguf_arch: str | None = None
    gguf_extras: tuple[GGUFBlockExtra, ...] = ()
    gguf_permuted_qk: bool = False


# The key of an entry is `ModelConfig.architecture`. Chat families: Qwen speaks its own template; SmolLM2
# (llama architecture) speaks ChatML. A Llama 3 checkpoint's header-token format is not ChatML: its template
# is recognised first, and without one building a ChatML format on its tokenizer fails saying so.
ARCHITECTURE_SPECS: dict[str, ArchitectureSpec] = {
    "llama": ArchitectureSpec(
        hf_class="LlamaForCausalLM", model_type="llama",
        # SmolLM2 ships as model_type "llama" already; "smollm2" is accepted for hand-written configs
        aliases=("smollm2",), chat_family="chatml",
        gguf_arch="llama", gguf_permuted_qk=True,
        # Llama's attention_bias also puts a bias on o_proj; llama.cpp keeps MLP biases when a model has them
        gguf_extras=(
            GGUFBlockExtra((*_QKV_BIAS, "attn_output.bias"), switch="attention_bias"),
            GGUFBlockExtra(("ffn_up.bias", "ffn_gate.bias", "ffn_down.bias"), switch="mlp_bias"),
        ),
    ),
    "qwen2": ArchitectureSpec(
        hf_class="Qwen2ForCausalLM", model_type="qwen2", chat_family="qwen2_5",
        qkv_bias=True, bias_keys=False, sliding_window_key=True,
        gguf_arch="qwen2", gguf_extras=(GGUFBlockExtra(_QKV_BIAS),),
    ),
    "qwen3": ArchitectureSpec(
        hf_class="Qwen3ForCausalLM", model_type="qwen3", chat_family="qwen3",
        qk_norm=True, sliding_window_key=True,
        gguf_arch="qwen3",
        gguf_extras=(
            GGUFBlockExtra(_QKV_BIAS, switch="attention_bias"),
            GGUFBlockExtra(("attn_q_norm.weight", "attn_k_norm.weight")),
        ),
    ),
}


def architecture_of_model_type(model_type: str) -> str | None:
    """The `ARCHITECTURE_SPECS` key that reads config.json's `model_type` (its own or an alias); None if none."""
    for name, spec in ARCHITECTURE_SPECS.items():
        if model_type == spec.model_type or model_type in spec.aliases:
            return name
    return None


def gguf_spec(gguf_arch: str) -> ArchitectureSpec | None:
    """The spec of llama.cpp's `general.architecture` value; None if no architecture here has that GGUF form."""
    for spec in ARCHITECTURE_SPECS.values():
        if spec.gguf_arch is not None and spec.gguf_arch == gguf_arch:
            return spec
    return None


def gguf_arch_names() -> list[str]:
    """The GGUF architectures the reader accepts, in table order."""
    return [spec.gguf_arch for spec in ARCHITECTURE_SPECS.values() if spec.gguf_arch is not None]
