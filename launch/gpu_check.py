"""GPU check helpers, called by launch/gpu_check.sh (see docs/launch.md).

  python launch/gpu_check.py correctness [--model tiny] [--decode-tokens 8] [--allow-cpu]
      The same model (weights made on the CPU, copied to the GPU) gives the same logits on GPU and CPU
      (float32, matmul precision "highest", within --rtol/--atol) and the same greedy tokens.
      Exit 0 when both agree, 1 when not, 2 when no GPU is visible (--allow-cpu: compare CPU with CPU,
      a dry run of the script on a machine without a GPU).

  python launch/gpu_check.py report --rollout ROLLOUT.json --train TRAIN.json [--out SUMMARY.json]
      From the JSON of `ascl bench rollout` and `ascl bench train`: MFU of the RL update, and the HBM
      bandwidth a decode step uses: (parameter bytes + KV-cache bytes read per step) / step time, over
      the device's peak bandwidth.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def _die(message: str, code: int = 2) -> None:
    sys.stderr.write(f"gpu_check: error: {message}\n")
    raise SystemExit(code)


def _devices(allow_cpu: bool):
    """(cpu device, accelerator device)."""
    import jax

    try:
        cpu = jax.devices("cpu")
    except RuntimeError:
        _die("JAX has no CPU backend here (is JAX_PLATFORMS set to the GPU only? unset it or add ',cpu')")
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if gpus:
        return cpu[0], gpus[0]
    if not allow_cpu:
        _die(f"no GPU visible to JAX (devices: {jax.devices()}); install the CUDA build: "
             "pip install -e '.[cuda]' (or pass --allow-cpu for a dry run on CPU)")
    print("gpu_check: no GPU; --allow-cpu: comparing CPU with CPU (dry run)")
    return cpu[0], cpu[-1]


def correctness(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding

    from ascl_jax.models.registry import load_model
    from ascl_jax.parallel.mesh import MeshConfig, make_mesh
    from ascl_jax.rollout.engine import StopTokens
    from ascl_jax.rollout.generate import generate

    cpu, acc = _devices(args.allow_cpu)
    print(f"gpu_check: reference {cpu.device_kind} ({cpu}), checked {acc.device_kind} ({acc})")
    ok = True
    with jax.default_matmul_precision("highest"):
        cpu_mesh = make_mesh(MeshConfig(1, 1, 1), [cpu])
        acc_mesh = make_mesh(MeshConfig(1, 1, 1), [acc])
        ref = load_model(args.model, mesh=cpu_mesh, dtype="float32", seed=0)
        # The same weights on both: made once on the CPU, copied (random init may differ in the last bits
        # across backends).
        acc_params = jax.device_put(
            ref.params, jax.tree.map(lambda x: NamedSharding(acc_mesh, x.sharding.spec), ref.params))
        other = dataclasses.replace(ref, params=acc_params, mesh=acc_mesh)
        cfg = ref.config

        rng = np.random.RandomState(0)
        tokens = rng.randint(0, cfg.vocab_size, (args.batch, args.seq_len)).astype(np.int32)
        positions = np.broadcast_to(np.arange(args.seq_len, dtype=np.int32), tokens.shape)

        def logits(model):
            @jax.jit
            def forward(params, t, p):
                return nnx.merge(model.graphdef, params)(t, p)[0]

            with jax.set_mesh(model.mesh):
                put = lambda x: jax.device_put(x, NamedSharding(model.mesh, jax.P()))  # noqa: E731
                return np.asarray(forward(model.params, put(jnp.asarray(tokens)), put(jnp.asarray(positions))))

        a, b = logits(ref), logits(other)
        diff = float(np.max(np.abs(a - b)))
        scale = float(np.max(np.abs(a)))
        close = bool(np.allclose(b, a, rtol=args.rtol, atol=args.atol))
        ok &= close
        print(f"gpu_check: logits [{args.batch}x{args.seq_len}x{cfg.vocab_size}] max |diff| {diff:.3g} "
              f"(max |logit| {scale:.3g}, rtol {args.rtol}, atol {args.atol}): {'PASS' if close else 'FAIL'}")

        prompts = [rng.randint(0, cfg.vocab_size, n).tolist() for n in (5, 9)]
        stops = StopTokens(eos=())  # exactly decode_tokens per row
        ga = generate(ref, prompts, args.decode_tokens, stop_tokens=stops)
        gb = generate(other, prompts, args.decode_tokens, stop_tokens=stops)
        same = [x.tokens == y.tokens for x, y in zip(ga, gb)]
        ok &= all(same)
        for i, (x, y) in enumerate(zip(ga, gb)):
            print(f"gpu_check: greedy row {i}: cpu {x.tokens} / {acc.platform} {y.tokens}: "
                  f"{'PASS' if same[i] else 'FAIL'}")
    print(f"gpu_check: correctness {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def _last_json(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        _die(f"{path}: no such file")
    lines = [line for line in p.read_text().splitlines() if line.strip().startswith("{")]
    if not lines:
        _die(f"{path}: no JSON line (expected the output of `ascl bench ... --json`)")
    return json.loads(lines[-1])


def _model_config(name: str, dtype: str):
    from ascl_jax.models.config import ModelConfig
    from ascl_jax.models.registry import BUILTIN_CONFIGS

    if name in BUILTIN_CONFIGS:
        return dataclasses.replace(BUILTIN_CONFIGS[name], dtype=dtype, param_dtype=dtype)
    path = Path(name)
    path = path / "model" if (path / "model" / "config.json").exists() else path
    if (path / "config.json").exists():
        return ModelConfig.from_hf_file(path / "config.json", dtype=dtype, param_dtype=dtype)
    _die(f"cannot read the config of model {name!r} (a built-in name or a folder with config.json)")


def hbm_numbers(cfg, rollout: dict, peak_gb_per_s: float | None) -> dict:
    """Bytes a decode step reads: every parameter once, plus the whole KV cache buffer (the attention of a
    decode step reads all `capacity` slots, masked), and the bandwidth that makes at the measured speed."""
    import numpy as np

    width = np.dtype(cfg.param_dtype if cfg.param_dtype != "bfloat16" else "float16").itemsize
    act = np.dtype(cfg.dtype if cfg.dtype != "bfloat16" else "float16").itemsize
    param_bytes = cfg.num_params * width
    per_slot = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * act  # K and V, all layers
    kv_bytes = per_slot * rollout["batch"] * rollout["capacity"]
    live = rollout["prompt_len"] + rollout["new_tokens"] / 2  # the average filled context
    kv_live = per_slot * rollout["batch"] * live
    step_s = rollout["decode_ms_per_step"] / 1000
    bw = (param_bytes + kv_bytes) / step_s / 1e9
    devices = rollout.get("devices", 1)
    return {
        "decode_ms_per_step": rollout["decode_ms_per_step"],
        "decode_tokens_per_s": rollout["decode_tokens_per_s"],
        "param_bytes": int(param_bytes),
        "kv_cache_bytes_read": int(kv_bytes),
        "kv_cache_bytes_live": int(kv_live),
        "hbm_gb_per_s": round(bw, 1),
        "hbm_gb_per_s_live": round((param_bytes + kv_live) / step_s / 1e9, 1),
        "peak_hbm_gb_per_s": None if peak_gb_per_s is None else peak_gb_per_s * devices,
        "hbm_utilisation": None if peak_gb_per_s is None else round(bw / (peak_gb_per_s * devices), 4),
    }


def report(args: argparse.Namespace) -> int:
    from ascl_jax.bench.train import device_peak

    rollout, train = _last_json(args.rollout), _last_json(args.train)
    model = args.model or rollout.get("model") or train.get("model")
    cfg = _model_config(model, rollout.get("dtype", "bfloat16"))
    kind = args.device_kind or train.get("device_kind", "")
    peak = device_peak(kind)
    peak_bw = args.peak_gb_per_s if args.peak_gb_per_s is not None else (peak.hbm_gb_per_s if peak else None)
    summary = {
        "model": model,
        "params": cfg.num_params,
        "dtype": cfg.dtype,
        "device_kind": kind,
        "device_peak": None if peak is None else peak.name,
        "train": {k: train.get(k) for k in ("batch", "seq_len", "micro_batches", "tokens_per_s", "seconds_per_step",
                                            "logprob_seconds", "update_seconds", "model_tflops_per_s", "peak_tflops",
                                            "mfu", "step_mfu")},
        "rollout": {"batch": rollout["batch"], "prompt_len": rollout["prompt_len"],
                    "new_tokens": rollout["new_tokens"], "capacity": rollout["capacity"],
                    "prefill_tokens_per_s": rollout["prefill_tokens_per_s"],
                    "tool_turn_ratio_extend": rollout["tool_turn_ratio_extend"],
                    "tool_turn_ratio_reprefill": rollout["tool_turn_ratio_reprefill"],
                    **hbm_numbers(cfg, rollout, peak_bw)},
    }
    t, r = summary["train"], summary["rollout"]
    mfu = "n/a (peak unknown)" if t["mfu"] is None else f"{100 * t['mfu']:.1f}%"
    hbm = "n/a (peak unknown)" if r["hbm_utilisation"] is None else f"{100 * r['hbm_utilisation']:.1f}%"
    print(f"gpu_check: {model} ({cfg.num_params / 1e9:.2f}B params, {cfg.dtype}) on {kind or 'unknown device'}")
    print(f"gpu_check: RL update {t['tokens_per_s']} tokens/s, {t['model_tflops_per_s']} model TFLOP/s, MFU {mfu}")
    print(f"gpu_check: decode {r['decode_ms_per_step']} ms/step (batch {r['batch']}, cache {r['capacity']} slots): "
          f"{(r['param_bytes'] + r['kv_cache_bytes_read']) / 1e9:.2f} GB read/step, {r['hbm_gb_per_s']} GB/s, "
          f"HBM bandwidth use {hbm}")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
        print(f"gpu_check: wrote {args.out}")
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("correctness", help="GPU vs CPU: logits within tolerance, identical greedy tokens")
    c.add_argument("--model", default="tiny")
    c.add_argument("--batch", type=int, default=2)
    c.add_argument("--seq-len", type=int, default=32)
    c.add_argument("--decode-tokens", type=int, default=8)
    c.add_argument("--rtol", type=float, default=1e-4)
    c.add_argument("--atol", type=float, default=1e-4)
    c.add_argument("--allow-cpu", action="store_true", help="without a GPU, compare CPU with CPU (dry run)")
    c.set_defaults(func=correctness)
    r = sub.add_parser("report", help="MFU and HBM bandwidth use from the bench JSON")
    r.add_argument("--rollout", required=True, help="output of `ascl bench rollout --json`")
    r.add_argument("--train", required=True, help="output of `ascl bench train --json`")
    r.add_argument("--model", default=None, help="default: the model named in the JSON")
    r.add_argument("--device-kind", default=None, help="default: the one `ascl bench train` saw")
    r.add_argument("--peak-gb-per-s", type=float, default=None, help="peak HBM GB/s per device (default: table)")
    r.add_argument("--out", default=None, help="also write the summary here")
    r.set_defaults(func=report)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
