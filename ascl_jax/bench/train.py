"""RL update-step throughput and model FLOPs utilisation (MFU).

Times the two device phases of an RL update as the trainer runs them: the log-probability pass over the
batch (`sequence_logprobs`, forward only) and the clipped policy update (`update_step` with `rl_loss`:
forward, backward, optimizer). Inputs are random: tokens, a loss mask over the second half of every
row, random advantages, zero old log-probabilities.

MFU = 3 x flops_per_token(seq_len) x tokens / update_seconds / (peak x devices): model FLOPs of a forward
and backward pass (backward = 2 x forward) over the peak of the devices. The peak per device is
`--peak-tflops`, or looked up from the device kind (`DEVICE_PEAKS`, dense bf16 or fp32 by the compute
dtype); on a CPU, or a device not in the table, it is unknown and MFU is null. `step_mfu` counts the
whole step: 4 x flops_per_token (log-prob forward + update) over logprob_seconds + update_seconds."""

# jax is imported inside the functions: this module also registers the command line (`ascl bench train`),
# which must stay cheap to import.

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class DevicePeak:
    """Dense (no sparsity) peaks of one chip/GPU, from the vendors' data sheets."""

    name: str
    bf16_tflops: float
    fp32_tflops: float  # what an f32 matmul gets at XLA's default precision (see below)
    hbm_gb_per_s: float


# fp32 column: on NVIDIA Ampere/Hopper, XLA runs f32 matmuls at default precision on TF32 tensor cores,
# so the dense TF32 peak is the reachable one; on TPUs, default precision feeds f32 matmuls through the
# bf16 MXU in one pass, so the bf16 peak applies. Order matters: the first matching pattern wins.
DEVICE_PEAKS: tuple[tuple[tuple[str, ...], DevicePeak], ...] = (
    (("h100", "pcie"), DevicePeak("H100 PCIe", 756.0, 378.0, 2000.0)),
    (("h100", "nvl"), DevicePeak("H100 NVL", 835.0, 417.5, 3900.0)),
    (("h100",), DevicePeak("H100 SXM", 989.4, 494.7, 3350.0)),
    (("gh200",), DevicePeak("GH200", 989.4, 494.7, 4000.0)),
    (("h200",), DevicePeak("H200", 989.4, 494.7, 4800.0)),
    (("a100", "80gb"), DevicePeak("A100 80GB", 312.0, 156.0, 2039.0)),
    (("a100",), DevicePeak("A100 40GB", 312.0, 156.0, 1555.0)),
    (("tpu v4",), DevicePeak("TPU v4", 275.0, 275.0, 1228.0)),
    (("tpu v5 lite",), DevicePeak("TPU v5e", 197.0, 197.0, 819.0)),
    (("tpu v5e",), DevicePeak("TPU v5e", 197.0, 197.0, 819.0)),
    (("tpu v5p",), DevicePeak("TPU v5p", 459.0, 459.0, 2765.0)),
    (("tpu v5",), DevicePeak("TPU v5p", 459.0, 459.0, 2765.0)),  # v5p reports itself as "TPU v5"
    (("tpu v6",), DevicePeak("TPU v6e", 918.0, 918.0, 1640.0)),
)


def device_peak(device_kind: str) -> DevicePeak | None:
    """The table row for a `jax.Device.device_kind` (e.g. "NVIDIA H100 80GB HBM3", "TPU v5 lite"), or None
    (CPU, unknown devices)."""
    kind = device_kind.lower()
    for patterns, peak in DEVICE_PEAKS:
        if all(p in kind for p in patterns):
            return peak
    return None


def peak_tflops_for(device_kind: str, dtype: str) -> float | None:
    peak = device_peak(device_kind)
    if peak is None:
        return None
    return peak.bf16_tflops if dtype == "bfloat16" else peak.fp32_tflops


def _sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def bench_train(
    model_name: str,
    batch: int = 8,
    seq_len: int = 256,
    micro_batches: int = 1,
    repeats: int = 3,
    dtype: str | None = None,
    peak_tflops: float | None = None,
    learning_rate: float = 1e-6,
) -> dict:
    """Returns {tokens_per_s, mfu, seconds_per_step, logprob_seconds, update_seconds, ...}."""
    import functools

    import jax
    import numpy as np

    from ascl_jax.bench.timing import median_seconds
    from ascl_jax.errors import UserError
    from ascl_jax.models.registry import load_model
    from ascl_jax.parallel.sharding import batch_sharding
    from ascl_jax.rl.batch import rl_loss, sequence_logprobs
    from ascl_jax.rl.config import LossConfig
    from ascl_jax.training.optimizer import OptimizerConfig, init_optimizer_state, make_optimizer
    from ascl_jax.training.update import update_step

    if batch < 1 or seq_len < 2 or micro_batches < 1 or repeats < 1:
        raise UserError(f"need batch >= 1, seq_len >= 2, micro_batches >= 1, repeats >= 1; got batch={batch}, "
                        f"seq_len={seq_len}, micro_batches={micro_batches}, repeats={repeats}")
    if batch % micro_batches:
        raise UserError(f"--micro-batches {micro_batches} must divide --batch {batch}")
    if peak_tflops is not None and peak_tflops <= 0:
        raise UserError(f"--peak-tflops must be > 0, got {peak_tflops}")

    model = load_model(model_name, dtype=dtype)
    cfg = model.config
    if seq_len > cfg.max_position_embeddings:
        raise UserError(f"--seq-len {seq_len} exceeds the model's {cfg.max_position_embeddings} positions")
    devices = len(model.mesh.devices.flat)
    device_kind = model.mesh.devices.flat[0].device_kind

    rng = np.random.RandomState(0)
    host = {
        "tokens": rng.randint(0, cfg.vocab_size, (batch, seq_len)).astype(np.int32),
        "loss_mask": (np.arange(seq_len)[None, :] >= seq_len // 2).repeat(batch, 0).astype(np.float32),
        "old_logprobs": np.zeros((batch, seq_len), np.float32),
        "advantages": rng.standard_normal(batch).astype(np.float32),
    }
    data = {k: jax.device_put(v, batch_sharding(model.mesh, model.rules, v.shape)) for k, v in host.items()}

    tx = make_optimizer(OptimizerConfig(learning_rate=learning_rate, total_steps=max(1000, repeats + 1)))
    loss_fn = functools.partial(rl_loss, loss=LossConfig(), temperature=1.0)
    opt_state = init_optimizer_state(tx, model.params, model.mesh)
    # update_step donates params and optimizer state: each call feeds the previous call's outputs.
    state = {"params": model.params, "opt_state": opt_state, "metrics": None}

    def logprob_pass():
        return sequence_logprobs(model.graphdef, state["params"], data["tokens"], temperature=1.0,
                                 num_micro=micro_batches)

    def update():
        state["params"], state["opt_state"], state["metrics"] = update_step(
            model.graphdef, state["params"], state["opt_state"], data, loss_fn=loss_fn, tx=tx,
            num_micro=micro_batches,
        )
        return state["params"], state["opt_state"], state["metrics"]

    with jax.set_mesh(model.mesh):
        t_logprob = median_seconds(logprob_pass, repeats)
        t_update = median_seconds(update, repeats)
    metrics = jax.device_get(state["metrics"])

    tokens = batch * seq_len
    flops_per_token = cfg.flops_per_token(seq_len)
    peak_source = "--peak-tflops"
    if peak_tflops is None:
        peak_tflops = peak_tflops_for(device_kind, cfg.dtype)
        peak_source = "table" if peak_tflops is not None else None
    achieved = 3 * flops_per_token * tokens / t_update  # model FLOP/s of the update, all devices
    step_seconds = t_logprob + t_update
    mfu = None if peak_tflops is None else achieved / (peak_tflops * 1e12 * devices)
    step_mfu = None if peak_tflops is None else 4 * flops_per_token * tokens / step_seconds / (peak_tflops * 1e12 * devices)
    return {
        "bench": "train",
        "model": model_name,
        "params": cfg.num_params,
        "dtype": cfg.dtype,
        "batch": batch,
        "seq_len": seq_len,
        "micro_batches": micro_batches,
        "devices": devices,
        "device_kind": device_kind,
        "tokens": tokens,
        "flops_per_token": flops_per_token,
        "logprob_seconds": round(t_logprob, 6),
        "update_seconds": round(t_update, 6),
        "seconds_per_step": round(step_seconds, 6),
        "tokens_per_s": round(tokens / t_update, 2),
        "step_tokens_per_s": round(tokens / step_seconds, 2),
        "model_tflops_per_s": _sig(achieved / 1e12),
        "peak_tflops": peak_tflops,
        "peak_source": peak_source,
        "mfu": None if mfu is None else _sig(mfu),
        "step_mfu": None if step_mfu is None else _sig(step_mfu),
        "loss": float(metrics["loss"]),
        "skipped": float(metrics["skipped"]),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# ----- command line (registered from ascl_jax.commands.bench)


def add_subcommand(kinds: argparse._SubParsersAction) -> None:
    t = kinds.add_parser(
        "train", help="RL update-step tokens/s and MFU (log-prob pass + clipped policy update)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--model", default="tiny")
    t.add_argument("--batch", type=int, default=8, help="rows per update")
    t.add_argument("--seq-len", type=int, default=256, help="tokens per row (loss on the second half)")
    t.add_argument("--micro-batches", type=int, default=1, help="gradient accumulation steps per update")
    t.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
    t.add_argument("--peak-tflops", type=float, default=None,
                   help="peak TFLOP/s per device for MFU (default: by device kind; unknown on CPU: MFU null)")
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--learning-rate", type=float, default=1e-6)
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = bench_train(args.model, args.batch, args.seq_len, args.micro_batches, args.repeats, args.dtype,
                         args.peak_tflops, args.learning_rate)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0
