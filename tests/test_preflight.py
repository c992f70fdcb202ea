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
