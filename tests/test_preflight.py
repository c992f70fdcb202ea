"""Values only the model can judge stop `ascl train` with one line, before the run folder is written."""

import pytest

from ascl_jax.cli import main


@pytest.mark.parametrize("override,needle", [
    ("rollout.sampling.top_k=1000000", "rollout.sampling.top_k=1000000 is more than tiny's vocabulary (1024 tokens)"),
    ("rollout.max_new_tokens=5000", "rollout.max_new_tokens=5000 with rollout.max_prompt_tokens=96 needs"),
    ("eval.max_new_tokens=8000", "eval.max_new_tokens=8000"),
    ("sft.max_tokens=5000", "sft.max_tokens=5000 is more than tiny's 4096 positions"),
])
def test_model_limits_are_checked_before_the_run_starts(capsys, tmp_path, override, needle):
    run = tmp_path / "run"
    assert main(["train", f"run_dir={run}", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not run.exists()


def test_a_folder_or_a_non_utf8_prompts_file_is_one_line(capsys, tmp_path):
    run = tmp_path / "run"
    base = ["train", f"run_dir={run}", "data.task=jsonl", "sft.steps=0"]
    assert main([*base, f"data.prompts={tmp_path}"]) == 2
    assert f"{tmp_path}: is a folder; give a prompt file" in capsys.readouterr().err
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"id": "a", "prompt": "hi", "class": "harmful"}\n{"id": "b", "prompt": "caf\xe9", "class": "harmful"}\n')
    assert main([*base, f"data.prompts={bad}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latin1.jsonl:2: byte 74 (0xe9) is not UTF-8" in err[0], err
    assert not run.exists()


def test_a_prompt_over_budget_says_what_the_tool_schema_costs(capsys, tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"id": "a", "prompt": "How do I bake bread?", "class": "benign"}\n')
    assert main(["train", f"run_dir={tmp_path / 'run'}", "data.task=jsonl", f"data.prompts={data}", "sft.steps=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "rollout.max_prompt_tokens is 96 (the schema alone takes" in err, err


def test_a_run_dir_that_is_a_file_is_one_line(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder\n")
    for run in (notes, notes / "run"):
        assert main(["train", f"run_dir={run}", "sft.steps=0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"run_dir {run}: " in err[0] and "is a file" in err[0], err
    assert notes.read_text() == "not a folder\n"
