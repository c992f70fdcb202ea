"""Multi-controller training: `ascl train` on 2 processes x 4 fake CPU devices joined by jax.distributed
ends with the same parameters and metrics as 1 process x 8 devices, also when the 2-process run is killed
mid-way (after its first RL checkpoint) and started again with the same command.

Both start from one cold-started model (SFT by a single process first), so that the rollouts call the tool
and the comparison covers the multi-process tool loop; sixty SFT steps in each layout would compound
float rounding differences far past the comparison's tolerance."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

COLD_START = ["sft.steps=60", "sft.batch_size=8", "sft.optimizer.warmup_steps=0", "rl.steps=0",
              "eval.max_prompts=0", "checkpoint.every=0", "data.demo.train_prompts=16"]
OVERRIDES = [
    "sft.steps=0", "rl.steps=2", "rl.prompts_per_step=2", "rollout.group_size=4",
    "rollout.max_new_tokens=48", "eval.max_prompts=2", "eval.max_new_tokens=8", "data.demo.train_prompts=16",
    "data.demo.eval_prompts=2", "checkpoint.every=1", "optimizer.learning_rate=0.001", "mesh.fsdp=2",
    "mesh.tensor=2",
]
TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(run_dir: Path, processes: int, devices_per_process: int, log_dir: Path,
            overrides: list[str]) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASCL_")}
    env.update(JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
    if processes > 1:
        env.update(ASCL_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", ASCL_NUM_PROCESSES=str(processes))
    procs = []
    log_dir.mkdir(parents=True, exist_ok=True)
    for pid in range(processes):
        cmd = [sys.executable, "-m", "ascl_jax.cli", "train", *overrides, f"run_dir={run_dir}", "--no-baseline"]
        log = (log_dir / f"process{pid}.log").open("w")
        own = {**env, "ASCL_PROCESS_ID": str(pid)} if processes > 1 else env
        procs.append(subprocess.Popen(cmd, env=own, stdout=log, stderr=log))
    return procs


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)  # JAX catches SIGTERM (preemption notices) and goes on
    for p in procs:
        p.wait()


def _wait(procs, log_dir: Path, until=None) -> bool:
    """Wait for all processes to exit 0 (True), or for `until()` to hold (then kill them all, False).
    A process that fails takes the others down at once: they would otherwise wait on it in a collective."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        codes = [p.poll() for p in procs]
        if any(c not in (None, 0) for c in codes):
            _kill(procs)
            logs = "\n".join(f.read_text()[-3000:] for f in sorted(log_dir.glob("*.log")))
            raise AssertionError(f"a process failed (exit codes {codes}):\n{logs}")
        if all(c == 0 for c in codes):
            return True
        if until is not None and until():
            _kill(procs)
            return False
        time.sleep(0.05)
    _kill(procs)
    raise AssertionError(f"timed out after {TIMEOUT_S} s; logs in {log_dir}")


def _params(run_dir: Path) -> dict[str, np.ndarray]:
    out = {}
    for f in sorted((run_dir / "model").glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_process_and_resume_after_a_kill(tmp_path):
    cold = tmp_path / "cold-start"
    assert _wait(_launch(cold, 1, 8, tmp_path / "logs-cold", COLD_START), tmp_path / "logs-cold")
    overrides = OVERRIDES + [f"model={cold / 'model'}"]

    single, multi = tmp_path / "single", tmp_path / "multi"
    assert _wait(_launch(single, 1, 8, tmp_path / "logs-single", overrides), tmp_path / "logs-single")

    first_rl_checkpoint = multi / "checkpoints" / "rl" / "1"
    killed = not _wait(_launch(multi, 2, 4, tmp_path / "logs-multi-1", overrides), tmp_path / "logs-multi-1",
                       until=first_rl_checkpoint.exists)
    assert killed and not (multi / "model").exists(), "the run finished before it could be killed mid-way"
    # the same command again
    assert _wait(_launch(multi, 2, 4, tmp_path / "logs-multi-2", overrides), tmp_path / "logs-multi-2")

    a, b = _params(single), _params(multi)
    assert a.keys() == b.keys() and a
    for k in a:
        rel = np.abs(a[k] - b[k]).max() / max(np.abs(a[k]).max(), 1e-12)
        assert rel <= 1e-5, (k, rel)

    want, got = _metrics(single), _metrics(multi)
    assert [m["step"] for m in got] == [m["step"] for m in want] == [1, 2]
    assert any(m["tool_calls_per_rollout"] > 0 for m in want)  # the tool loop ran
    for w, g in zip(want, got):
        for key, value in w.items():
            if key.endswith("_seconds") or key.endswith("per_s"):
                continue
            if isinstance(value, float):
                assert np.isclose(g[key], value, rtol=1e-4, atol=1e-5), (w["step"], key, g[key], value)
            else:
                assert g[key] == value, (w["step"], key)
    for name in ("eval_initial.jsonl", "eval_after_rl.jsonl"):
        assert (single / name).read_text() == (multi / name).read_text()
