"""A device program that does not fit: an error naming the settings to change, and a run that resumes with them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
import yaml

from ascl_jax.config_io import to_dict
from ascl_jax.errors import UserError
from ascl_jax.pipeline import _check_same_config, _rl_memory_fixes
from ascl_jax.train_config import TrainConfig
from ascl_jax.training.out_of_memory import is_out_of_memory, out_of_memory_hint


def test_a_real_out_of_memory_names_the_stage_and_the_fixes():
    with pytest.raises(UserError) as err:
        with out_of_memory_hint("RL", "raise rl.micro_batches"):
            huge = jax.jit(lambda: jnp.zeros((2**38,), jnp.float32))()  # 1 TiB
            float(huge[0])
    msg = str(err.value)
    assert msg.startswith("out of device memory in RL (RESOURCE_EXHAUSTED")
    assert msg.endswith("; raise rl.micro_batches")
    assert "\n" not in msg
    assert is_out_of_memory(err.value.__cause__)


def test_other_runtime_errors_pass_through():
    other = jax.errors.JaxRuntimeError("INVALID_ARGUMENT: something else")
    with pytest.raises(jax.errors.JaxRuntimeError) as err:
        with out_of_memory_hint("RL", "fix"):
            raise other
    assert err.value is other and not is_out_of_memory(other)


def test_the_rl_fixes_name_the_current_values():
    cfg = TrainConfig()
    text = _rl_memory_fixes(cfg)
    rows = cfg.rl.prompts_per_step * cfg.rollout.group_size
    assert f"rl.micro_batches (now {cfg.rl.micro_batches}: {rows} of the {rows} rollouts" in text
    assert "rl.remat=full (now none)" in text and "resumes" in text


def _started(run_dir, record):
    (run_dir / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')


def test_a_run_resumes_with_other_memory_settings_only(tmp_path):
    record = to_dict(TrainConfig())
    _started(tmp_path, record)
    changed = to_dict(TrainConfig())
    changed["rl"] = {**changed["rl"], "micro_batches": 4, "remat": "full"}
    changed["sft"] = {**changed["sft"], "micro_batches": 2, "remat": "dots_saveable"}
    _check_same_config(tmp_path, changed, tmp_path / "checkpoints")  # no error: the same run
    changed["rl"]["steps"] = record["rl"]["steps"] + 1
    with pytest.raises(UserError, match=r"another config \(differs in: rl\)"):
        _check_same_config(tmp_path, changed, tmp_path / "checkpoints")
