"""`ascl generate` on the built-in tiny model: chat or raw prompt, JSON output."""

import json

import pytest

from ascl_jax.cli import main
from ascl_jax.models.tiny_tokenizer import tiny_tokenizer


def test_generate_json_raw_and_chat(capsys):
    assert main(["generate", "--model", "tiny", "--prompt", "abc", "--raw", "--greedy",
                 "--max-new-tokens", "5", "--json"]) == 0
    raw = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert raw["prompt_tokens"] == tiny_tokenizer().encode("abc")  # no template
    assert len(raw["tokens"]) == 5 and raw["stop_reason"] == "length"
    assert raw["text"] == tiny_tokenizer().decode(raw["tokens"], skip_special_tokens=True)

    assert main(["generate", "--model", "tiny", "--prompt", "abc", "--greedy", "--max-new-tokens", "5", "--json",
                 "--no-tools"]) == 0
    chat = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert tiny_tokenizer().decode(chat["prompt_tokens"]) == "<|im_start|>user\nabc<|im_end|>\n<|im_start|>assistant\n"
    assert chat["loss_mask"] == [1] * len(chat["tokens"]) and chat["tool_turns"] == []

    # with the rule tool (the default) its schema is in the prompt
    assert main(["generate", "--model", "tiny", "--prompt", "abc", "--greedy", "--max-new-tokens", "5", "--json"]) == 0
    tooled = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "consult_safety_rules" in tiny_tokenizer().decode(tooled["prompt_tokens"])


def test_generate_with_bad_rule_book_names_the_line(tmp_path, capsys):
    bad = tmp_path / "rules.yaml"
    bad.write_text("- id: r1\n  category: privacy\n  title: T\n  text: X\n  action: maybe\n")
    assert main(["generate", "--model", "tiny", "--prompt", "x", "--rules", str(bad), "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "rules.yaml:5" in err and "maybe" in err


def test_seeded_sampling_is_reproducible(capsys):
    outs = []
    for seed in (1, 1, 2):
        main(["generate", "--model", "tiny", "--prompt", "x", "--max-new-tokens", "6", "--seed", str(seed), "--json"])
        outs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tokens"])
    assert outs[0] == outs[1] and outs[0] != outs[2]


def test_the_missing_torch_notice_of_transformers_is_silenced_and_other_warnings_are_not():
    import logging

    import ascl_jax  # noqa: F401  (installs the filter)
    import transformers  # noqa: F401  (configures its logger, as every command's import does)

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    log = logging.getLogger("transformers")
    handler = Keep()
    log.addHandler(handler)
    try:
        log.warning("PyTorch was not found. Models won't be available and only tokenizers, configuration and "
                    "file/data utilities can be used.")
        log.warning("a real warning")
    finally:
        log.removeHandler(handler)
    assert seen == ["a real warning"]


def test_hub_ids_resolve_through_the_hub_cache_offline(tmp_path, monkeypatch, capsys):
    from ascl_jax.cli import main
    from ascl_jax.errors import ModelNotFoundError
    from ascl_jax.models.registry import export_hf, load_model

    # A hub cache as huggingface_hub lays it out: models--ORG--NAME/{refs/main, snapshots/HASH/...}
    repo = tmp_path / "cache" / "models--acme--tiny-chat"
    commit = "0123456789abcdef0123456789abcdef01234567"
    export_hf(load_model("tiny"), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model("acme/tiny-chat")
    assert model.config.num_layers == 4 and model.chat_family == "chatml_compact"
    with pytest.raises(ModelNotFoundError, match=r"acme/missing looks like a Hugging Face hub id, but the hub is "
                                                 r"switched off here \(HF_HUB_OFFLINE=1\).*huggingface-cli download"):
        load_model("acme/missing")
    assert main(["generate", "--model", "acme/missing", "--prompt", "hi"]) == 2
    assert "--model DIR" in capsys.readouterr().err
