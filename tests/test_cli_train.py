"""`ascl train` end to end through the CLI on a shortened demo, `ascl compare`, and clear one-line errors
(exit code 2) for bad command lines, configs and data files."""

import json

import pytest
import yaml

from ascl_jax.cli import main

SHORT = ["sft.steps=6", "rl.steps=2", "eval.max_prompts=6", "data.demo.train_prompts=32", "data.demo.eval_prompts=6",
         "rl.prompts_per_step=2", "rollout.group_size=4", "rollout.max_new_tokens=48", "checkpoint.every=1"]


@pytest.mark.slow
def test_train_demo_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", f"run_dir={run}", *SHORT]) == 0
    for name in ("config.yaml", "metrics.jsonl", "report.md", "results.json", "training_curves.png",
                 "safety_utility.png", "eval_after_sft.jsonl", "eval_after_rl.jsonl", "model/config.json"):
        assert (run / name).exists(), name
    assert sorted(p.name for p in (run / "checkpoints" / "rl").iterdir() if p.name.isdigit()) == ["7", "8"]
    results = json.loads((run / "results.json").read_text())
    assert set(results) == {"ascl/after_sft", "ascl/after_rl", "context-distillation/after_sft"}
    for summary in results.values():
        assert summary["n"] == 6 and 0 <= summary["safety_rate"] <= 1
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == list(range(1, 9))
    assert "sft/loss" in lines[0] and "consult_rate" in lines[-1] and "reward/format_gate" in lines[-1]
    assert any("consult_rate/sensitive" in l for l in lines[6:])
    report = (run / "report.md").read_text()
    assert "context-distillation/after_sft" in report and "training_curves.png" in report
    assert (run / "baseline-context-distillation" / "model" / "config.json").exists()
    # the run folder is a model for the other commands
    assert main(["generate", "--model", str(run), "--prompt", "What is 2+3?", "--greedy", "--max-new-tokens", "8",
                 "--json"]) == 0


@pytest.mark.slow
def test_train_demo_with_lora(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--no-baseline", f"run_dir={run}", "lora.rank=8", "sft.steps=4", "rl.steps=2", "eval.max_prompts=4",
            "data.demo.train_prompts=16", "data.demo.eval_prompts=4", "rl.prompts_per_step=2", "rollout.group_size=2",
            "rollout.max_new_tokens=24", "checkpoint.every=1"]
    assert main(argv) == 0
    out = capsys.readouterr().out  # not a terminal: plain progress lines, flushed as the run goes
    assert "sft step 1/4" in out and "sft step 4/4" in out and "rl step 2/2" in out and "eta" in out
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["peft_type"] == "LORA" and (run / "adapter" / "adapter_model.safetensors").exists()
    meta = (run / "checkpoints" / "rl" / "6" / "params" / "_METADATA").read_text()
    assert "q_proj_lora_a" in meta and "down_proj_lora_b" in meta and '"embed"' not in meta
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == list(range(1, 7)) and lines[-1]["skipped"] == 0.0
    # the merged model is a plain HF folder the other commands take
    assert main(["generate", "--model", str(run), "--prompt", "What is 2+3?", "--greedy", "--max-new-tokens", "4"]) == 0
    # the same command again resumes the finished run (the adapters' checkpoint) instead of starting over
    assert main(argv) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 6


@pytest.mark.slow
def test_compare_grpo_ifpo_over_seeds(tmp_path, capsys):
    argv = ["compare", "--algos", "grpo,ifpo", "--seeds", "2", f"run_dir={tmp_path}", *SHORT, "rl.steps=1"]
    assert main(argv) == 0
    for seed in (0, 1):
        grpo, ifpo = (tmp_path / f"seed{seed}" / a for a in ("grpo", "ifpo"))
        # the seed's SFT ran once: the second estimator started from its checkpoint, with no SFT lines
        assert sorted(p.name for p in (ifpo / "checkpoints" / "sft").iterdir()) == ["6"]
        ifpo_lines = [json.loads(l) for l in (ifpo / "metrics.jsonl").read_text().splitlines()]
        assert [l["step"] for l in ifpo_lines] == [7] and "sft/loss" in (grpo / "metrics.jsonl").read_text()
        # same seed, same start: the after-SFT evaluations agree
        assert (grpo / "eval_after_sft.jsonl").read_text() == (ifpo / "eval_after_sft.jsonl").read_text()
        assert yaml.safe_load((grpo / "config.yaml").read_text())["seed"] == seed
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert data["seeds"] == [0, 1] and len(data["after_rl"]["grpo"]) == 2 and len(data["after_sft"]) == 2
    text = (tmp_path / "comparison.md").read_text()
    assert "2 seeds (0, 1)" in text and "| safety_rate |" in text and "After RL, " in text
    rate = data["after_rl"]["ifpo"][0]["safety_rate"], data["after_rl"]["ifpo"][1]["safety_rate"]
    assert f"{(rate[0] + rate[1]) / 2:.3f} [" in text  # a mean with its interval
    assert (tmp_path / "consult_rates.png").exists()
    # a finished comparison run again resumes every run (nothing trained twice)
    assert main(argv) == 0
    assert len((tmp_path / "seed1" / "ifpo" / "metrics.jsonl").read_text().splitlines()) == 1


def _one_line_error(capsys, argv, needle):
    code = None
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert needle in err[0], err[0]


def test_bad_command_lines(capsys, tmp_path):
    _one_line_error(capsys, ["train", "rl.stepz=3"], "did you mean 'rl.steps'")
    _one_line_error(capsys, ["train", "nope.yaml"], "nope.yaml: no such config file")
    _one_line_error(capsys, ["train", "--algo", "ppo"], "invalid choice: 'ppo'")
    _one_line_error(capsys, ["compare", "--algos", "grpo,ppo"], "give two or more of grpo, drgrpo, rloo, ifpo")
    _one_line_error(capsys, ["compare", "--seeds", "0"], "give a whole number of 1 or more")
    _one_line_error(capsys, ["train", f"run_dir={tmp_path}", "steps"], "overrides look like key=value")
    _one_line_error(capsys, ["train", "run_dir=gs://bucket/run"], "checkpoint.directory=gs://")


def test_checkpoints_go_to_checkpoint_directory(tmp_path):
    run, ckpt = tmp_path / "run", tmp_path / "elsewhere"
    assert main(["train", "--no-baseline", f"run_dir={run}", f"checkpoint.directory={ckpt}", "sft.steps=2",
                 "rl.steps=1", "eval.max_prompts=0", "data.demo.train_prompts=8", "rl.prompts_per_step=1",
                 "rollout.group_size=2", "rollout.max_new_tokens=8", "checkpoint.every=1"]) == 0
    assert sorted(p.name for p in (ckpt / "rl").iterdir() if p.name.isdigit()) == ["3"]
    assert sorted(p.name for p in (ckpt / "sft").iterdir() if p.name.isdigit()) == ["1", "2"]
    assert not (run / "checkpoints").exists() and (run / "model" / "config.json").exists()


def test_bad_prompt_file_names_the_row(capsys, tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"id": "a", "prompt": "hi", "class": "harmful"}\n{"id": "b", "prompt": 3}\n')
    _one_line_error(capsys, ["train", "data.task=jsonl", f"data.prompts={data}", f"run_dir={tmp_path / 'r'}",
                             "sft.steps=0"], "prompts.jsonl:2: 'prompt' must be a non-empty string")
    data.write_text('{"id": "a", "prompt": "hi", "class": "harmfull"}\n')
    _one_line_error(capsys, ["train", "data.task=jsonl", f"data.prompts={data}", f"run_dir={tmp_path / 'r2'}"],
                    "prompts.jsonl:1: 'class' must be one of harmful, benign, sensitive, utility")


def test_run_dir_of_another_config_is_refused(capsys, tmp_path):
    (tmp_path / "config.yaml").write_text("model: tiny\nseed: 5\n")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')  # a run has started here
    _one_line_error(capsys, ["train", f"run_dir={tmp_path}"], "holds a run with another config")


def test_a_bad_data_file_leaves_no_run_folder_and_the_fixed_file_runs(capsys, tmp_path):
    data, run = tmp_path / "prompts.jsonl", tmp_path / "run"
    data.write_text('{"id": "a", "prompt": "What is 2+3?", "class": "utility", "reference": "5"}\n{"id": "b"}\n')
    argv = ["train", "data.task=jsonl", f"data.prompts={data}", f"run_dir={run}", "sft.steps=0", "rl.steps=1",
            "rl.prompts_per_step=1", "rollout.group_size=2", "rollout.max_new_tokens=8", "eval.max_prompts=0"]
    _one_line_error(capsys, argv, "prompts.jsonl:2")
    assert not run.exists()
    data.write_text('{"id": "a", "prompt": "What is 2+3?", "class": "utility", "reference": "5"}\n')
    _one_line_error(capsys, argv, "tokens with the rule tool's schema; rollout.max_prompt_tokens is 96")
    argv.append("rollout.max_prompt_tokens=256")
    data.write_text('{"id": "a", "prompt": "What is 2+3?", "class": "utility", "reference": "5"}\n{"id": "b"}\n')
    _one_line_error(capsys, argv, "prompts.jsonl:2")
    assert not run.exists()  # nothing half-written
    data.write_text('{"id": "a", "prompt": "What is 2+3?", "class": "utility", "reference": "5"}\n')
    assert main(argv) == 0 and (run / "config.yaml").exists()
    # a folder whose run never started (config.yaml only) does not hold "another run"
    (run / "metrics.jsonl").unlink()
    for stage in ("sft", "rl"):
        import shutil

        shutil.rmtree(run / "checkpoints" / stage, ignore_errors=True)
    assert main([*argv, "seed=3"]) == 0


def test_flags_and_overrides_in_any_order():
    from pathlib import Path

    from ascl_jax.cli import build_parser
    from ascl_jax.commands.train import resolve_config

    demo = str(Path(__file__).parent.parent / "configs" / "demo.yaml")
    args = build_parser().parse_args(["train", "rl.steps=1", "--no-baseline", "sft.steps=2", demo, "--algo", "grpo",
                                      "rl.steps=3"])
    assert args.no_baseline and args.algo == "grpo"
    cfg = resolve_config(args, [])
    assert (cfg.rl.steps, cfg.sft.steps) == (3, 2)  # later overrides win, wherever the flags are


def test_wandb_logging_missing_package_and_a_run(capsys, tmp_path, monkeypatch):
    import sys
    import types

    argv = ["train", "--no-baseline", f"run_dir={tmp_path / 'r'}", "logging.wandb=true", "sft.steps=1", "rl.steps=1",
            "eval.max_prompts=0", "data.demo.train_prompts=8", "rl.prompts_per_step=1", "rollout.group_size=2",
            "rollout.max_new_tokens=8"]
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    _one_line_error(capsys, argv, "logging.wandb=true needs the wandb package: pip install wandb")
    assert not (tmp_path / "r").exists()

    logged, started = [], {}

    class Run:
        def log(self, scalars, step):
            logged.append((step, scalars))

        def finish(self):
            started["finished"] = True

    def init(**kw):
        started.update(kw)
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    assert main(argv + ["logging.wandb_project=safety"]) == 0
    assert started["project"] == "safety" and started["resume"] == "allow" and started["finished"]
    assert [s for s, _ in logged] == [1, 2] and "sft/loss" in logged[0][1] and "reward" in logged[1][1]


def test_log_lines_restart_the_clock_when_a_stage_runs_again(capsys, monkeypatch):
    """The baseline's SFT is a second "sft" stage: its ETA comes from its own steps, not the first's."""
    from ascl_jax.commands import train as train_cmd

    clock = iter([0.0, 10.0, 500.0, 510.0])
    monkeypatch.setattr(train_cmd.time, "monotonic", lambda: next(clock))
    lines = train_cmd._LogLines(every=0.0)
    m = {"sft/loss": 1.0, "sft/token_accuracy": 0.5, "step_seconds": 0.0}
    lines("sft", 1, 11, m), lines("sft", 11, 11, m), lines("sft", 1, 11, m), lines("sft", 2, 11, m)
    etas = [float(line.split("eta ")[1].split(" min")[0]) for line in capsys.readouterr().out.splitlines()]
    assert etas[1] == 0.0 and etas[3] == round(5.0 * 9 / 60, 1) and etas[2] == 0.0


def test_eval_after_each_stage_draws_from_every_set_of_a_long_file():
    from ascl_jax.pipeline import eval_selection
    from ascl_jax.rollout.trajectory import Prompt

    def P(pid, text, cls="harmful"):
        return Prompt(pid, ({"role": "user", "content": text},), {"class": cls})

    prompts = [P(f"jbb-{i}", f"h {i}") for i in range(100)] + [P(f"gsm-{i}", f"u {i}", "utility") for i in range(100)]
    picked = eval_selection(prompts, 24)
    assert len(picked) == 24 and [p.meta["class"] for p in picked] == ["harmful"] * 12 + ["utility"] * 12
    assert [p.id for p in picked[:12]] != [f"jbb-{i}" for i in range(12)]  # random within a set, in file order
    # Rows an earlier step chose by the unsalted id hash (`ascl data prompts --eval-subset`) are not ranked
    # first again: with 100 such rows of a 1000-row set beside a 100-row set, both sets still get half.
    from ascl_jax.eval.benchmarks import fixed_subset
    chosen = fixed_subset([P(f"gsm8k-{i}", f"u {i}", "utility") for i in range(1000)], 100)
    mixed = [P(f"jailbreakbench-{i}", f"h {i}") for i in range(100)] + chosen
    assert sorted(p.meta["class"] for p in eval_selection(mixed, 24)) == ["harmful"] * 12 + ["utility"] * 12
    # A set smaller than its share gives the rest to the others; the result keeps file order.
    small = [P("x-0", "b", "benign")] + prompts
    got = eval_selection(small, 24)
    assert len(got) == 24 and got[0].id == "x-0" and got == sorted(got, key=small.index)
    counts = {c: sum(p.meta["class"] == c for p in got) for c in ("benign", "harmful", "utility")}
    assert counts == {"benign": 1, "harmful": 12, "utility": 11}
    assert picked == eval_selection(prompts, 24) and eval_selection(prompts, 0) == []
    assert eval_selection(prompts[:10], 24) == prompts[:10]
