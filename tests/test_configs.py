"""Every shipped config loads and validates; the demo config is the built-in default; bad configs and
overrides fail with one clear message that names the key."""

from pathlib import Path

import pytest

from ascl_jax.config_io import describe, load_config, to_dict
from ascl_jax.errors import ConfigError
from ascl_jax.train_config import TrainConfig

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_configs_exist():
    names = {p.stem for p in CONFIGS}
    assert {"demo", "smollm2-135m", "qwen3-1.7b-tpu-v5e-8", "qwen3-8b-tpu-v5p-32", "qwen2.5-7b-8xh100",
            "llama3.1-8b-8xh100"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_and_round_trips(path, tmp_path):
    import yaml

    cfg = load_config(TrainConfig, path)
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(to_dict(cfg)))
    assert load_config(TrainConfig, again) == cfg
    if cfg.mesh.data != -1:  # real-model configs name their mesh explicitly
        assert cfg.mesh.fsdp * cfg.mesh.tensor * cfg.mesh.data in (8, 16, 32)
    assert (cfg.rl.prompts_per_step * cfg.rollout.group_size) % cfg.rl.micro_batches == 0


def test_demo_yaml_is_the_default():
    assert load_config(TrainConfig, Path(__file__).parent.parent / "configs" / "demo.yaml") == TrainConfig()


def test_overrides_keep_the_other_defaults_of_their_group():
    assert load_config(TrainConfig, None, ["optimizer.learning_rate=1e-3"]).optimizer.learning_rate == 1e-3
    cfg = load_config(TrainConfig, None, ["optimizer.total_steps=7", "rewards.weights.safety=2",
                                          "rollout.sampling.temperature=0.5"])
    assert cfg.optimizer.total_steps == 7 and cfg.optimizer.learning_rate == TrainConfig().optimizer.learning_rate
    assert cfg.rewards.weights["safety"] == 2 and cfg.rewards.weights["utility"] == 1.0
    assert cfg.rollout.sampling.temperature == 0.5 and cfg.rollout.group_size == TrainConfig().rollout.group_size


@pytest.mark.parametrize("overrides,pattern", [
    (["rl.stepz=3"], r"unknown option 'rl.stepz'; did you mean 'rl.steps'\?"),
    (["rl.steps=many"], r"rl.steps: expected an integer, got 'many'"),
    (["method=magic"], r"method: 'magic' is not one of ascl, context-distillation"),
    (["rl.advantage.estimator=ppo"], r"rl.advantage.estimator: 'ppo' is not one of grpo, drgrpo, rloo, ifpo"),
    (["rl.steps"], r"must look like key.sub=value"),
    (["sft.batch_size=6", "sft.micro_batches=4"], r"micro_batches=4 must divide sft.batch_size=6"),
    (["rewards.weights.bogus=1"], r"unknown term 'bogus'"),
    (["data.task=jsonl"], r"data.task=jsonl needs data.prompts"),
])
def test_bad_overrides(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(TrainConfig, None, overrides)


def test_bad_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl:\n  steps: 3\n   oops: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line \d"):
        load_config(TrainConfig, bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("rl:\n  group_size: 8\n")
    with pytest.raises(ConfigError, match=r"wrong.yaml: unknown option 'rl.group_size'"):
        load_config(TrainConfig, wrong)


def test_describe_lists_every_option_with_its_default():
    rows = {k: d for k, _, d in describe(TrainConfig)}
    assert rows["rl.advantage.estimator"] == "ifpo"
    assert rows["optimizer.learning_rate"] == TrainConfig().optimizer.learning_rate
    assert "rollout.sampling.top_p" in rows and "mesh.tensor" in rows and "data.demo.allow_probability" in rows


def test_drift_demo_is_the_demo_in_its_own_run_folder():
    """The demo takes the paper's reward, with no cost per tool call: the setting where consultation
    drift can happen, which configs/demo-drift.yaml names for `ascl compare`."""
    import dataclasses

    root = Path(__file__).parent.parent / "configs"
    drift = load_config(TrainConfig, root / "demo-drift.yaml")
    assert drift.rewards.preset == "paper" and drift.rewards.paper.sensitive_call_penalty == 0.0
    assert drift.run_dir != TrainConfig().run_dir
    assert dataclasses.replace(drift, run_dir=TrainConfig().run_dir) == TrainConfig()
