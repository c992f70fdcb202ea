"""`ascl bench train`: the RL update-step benchmark prints its numbers as JSON and computes MFU from them
(no timing is asserted)."""

import json
import math

import pytest

from ascl_jax.bench.train import DEVICE_PEAKS, device_peak, peak_tflops_for
from ascl_jax.cli import main
from ascl_jax.models.registry import BUILTIN_CONFIGS

ARGS = ["bench", "train", "--model", "tiny", "--batch", "4", "--seq-len", "16", "--micro-batches", "2",
        "--repeats", "1", "--json"]


def _run(capsys, *extra: str) -> dict:
    assert main([*ARGS, *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bench_train_json_and_mfu(capsys):
    out = _run(capsys, "--peak-tflops", "0.5")
    for key in ("tokens_per_s", "step_tokens_per_s", "seconds_per_step", "logprob_seconds", "update_seconds",
                "flops_per_token", "model_tflops_per_s", "mfu", "step_mfu"):
        assert out[key] > 0, key
    assert out["tokens"] == 4 * 16 and out["micro_batches"] == 2 and out["skipped"] == 0.0
    assert math.isfinite(out["loss"])
    assert out["seconds_per_step"] == pytest.approx(out["logprob_seconds"] + out["update_seconds"], abs=2e-6)
    assert out["tokens_per_s"] == pytest.approx(out["tokens"] / out["update_seconds"], rel=1e-3)
    assert out["flops_per_token"] == BUILTIN_CONFIGS["tiny"].flops_per_token(16)
    # MFU recomputed from the printed numbers: 3 x flops/token x tokens / update seconds / (peak x devices)
    peak = out["peak_tflops"] * 1e12 * out["devices"]
    assert out["peak_tflops"] == 0.5 and out["peak_source"] == "--peak-tflops"
    assert out["mfu"] == pytest.approx(3 * out["flops_per_token"] * out["tokens"] / out["update_seconds"] / peak, rel=1e-3)
    assert out["step_mfu"] == pytest.approx(
        4 * out["flops_per_token"] * out["tokens"] / out["seconds_per_step"] / peak, rel=1e-3)


def test_bench_train_mfu_null_on_cpu_without_peak(capsys):
    out = _run(capsys)
    assert out["device_kind"] == "cpu" and out["peak_tflops"] is None
    assert out["mfu"] is None and out["step_mfu"] is None and out["tokens_per_s"] > 0


def test_bench_train_bad_micro_batches(capsys):
    assert main(["bench", "train", "--model", "tiny", "--batch", "3", "--micro-batches", "2"]) == 2
    assert "--micro-batches 2 must divide --batch 3" in capsys.readouterr().err


@pytest.mark.parametrize(("kind", "name"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H200", "H200"),
    ("NVIDIA A100-SXM4-80GB", "A100 80GB"), ("NVIDIA A100-SXM4-40GB", "A100 40GB"), ("TPU v4", "TPU v4"),
    ("TPU v5 lite", "TPU v5e"), ("TPU v5", "TPU v5p"), ("TPU v5p", "TPU v5p"), ("TPU v6 lite", "TPU v6e"),
])
def test_device_peaks_by_kind(kind, name):
    assert device_peak(kind).name == name


def test_peak_table():
    assert device_peak("cpu") is None and peak_tflops_for("cpu", "bfloat16") is None
    assert peak_tflops_for("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4
    assert peak_tflops_for("NVIDIA H100 80GB HBM3", "float32") == 494.7
    for _, peak in DEVICE_PEAKS:
        assert peak.bf16_tflops >= peak.fp32_tflops > 0 and peak.hbm_gb_per_s > 0
