"""The multi-process environment is read strictly: a partial or malformed one fails with one clear
message before anything starts; an empty one means a single process."""

import pytest

from ascl_jax.errors import ConfigError
from ascl_jax.parallel.distributed import initialize_from_env


def test_no_environment_is_a_single_process():
    assert initialize_from_env({}) is False


@pytest.mark.parametrize("env,pattern", [
    ({"ASCL_COORDINATOR_ADDRESS": "h:1234"}, "missing ASCL_NUM_PROCESSES, ASCL_PROCESS_ID"),
    ({"ASCL_COORDINATOR_ADDRESS": "h:1", "ASCL_NUM_PROCESSES": "two", "ASCL_PROCESS_ID": "0"}, "must be integers"),
    ({"ASCL_COORDINATOR_ADDRESS": "h:1", "ASCL_NUM_PROCESSES": "2", "ASCL_PROCESS_ID": "2"}, r"must be in \[0, "),
])
def test_bad_environment(env, pattern):
    with pytest.raises(ConfigError, match=pattern):
        initialize_from_env(env)


def test_train_flags_are_read_like_the_environment(capsys, monkeypatch):
    from ascl_jax.cli import main

    for var in ("ASCL_COORDINATOR_ADDRESS", "ASCL_NUM_PROCESSES", "ASCL_PROCESS_ID", "ASCL_DISTRIBUTED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ASCL_PROCESS_ID", "0")  # the flag wins over the variable
    assert main(["train", "--coordinator-address", "h:1", "--num-processes", "2", "--process-id", "3"]) == 2
    assert "ASCL_PROCESS_ID=3 must be in [0, ASCL_NUM_PROCESSES=2)" in capsys.readouterr().err
