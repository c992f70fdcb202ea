"""`ascl plan`: will this run fit on that TPU slice, and how fast would it go? Compiles every program the
run would compile (same config and overrides as `ascl train`) for the named slice on this machine, with
abstract arrays (no weights read, nothing allocated, no TPU needed: libtpu compiles for the slice), and
reports per chip: HBM (arguments, outputs, temporaries, what the run keeps beside them) against the chip's
capacity, compile seconds, XLA's cost counts and the estimated seconds they give on the chip's roofline,
next to an analytic roofline. When the run does not fit, it plans variants (remat, more micro-batches,
LoRA, fewer rollout rows at once, a bigger slice) and names the first that fits.

Times are compiler estimates, not measurements.

`--model` / `model=` may name an architecture without weights: qwen3-0.6b, qwen3-1.7b, qwen3-4b, qwen3-8b, qwen3-14b,
qwen2.5-7b, llama-3.1-8b (their published config.json ship with ascl_jax), besides everything `ascl
train` takes (a folder's config.json is read; its weights are not)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ascl_jax.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    from ascl_jax.commands.train import add_config_arguments, options_epilog

    p = sub.add_parser("plan", help="compile a run's programs for a TPU slice: memory per chip, estimated speed",
                       description=__doc__, epilog=options_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    p.add_argument("--topology", required=True, metavar="SLICE",
                   help="the TPU slice, e.g. v5e-8, v5p-32, v6e-8, v4-16 (v5e/v6e: chips; v4/v5p: TensorCores)")
    p.add_argument("--programs", default=None, metavar="A,B",
                   help="plan only these programs (e.g. rl_update,decode_chunk)")
    p.add_argument("--no-suggest", action="store_true", help="do not plan variants when the run does not fit")
    p.add_argument("--memory-only", action="store_true",
                   help="skip the cost probes: memory and compile time only (faster)")
    p.add_argument("--json", action="store_true", help="one JSON object on the last line")
    p.set_defaults(func=run_plan)


def _log(text: str) -> None:
    sys.stderr.write(f"[plan {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def run_plan(args: argparse.Namespace) -> int:
    from ascl_jax.bench.plan import Planner
    from ascl_jax.bench.plan_suggest import suggest
    from ascl_jax.bench.topology import resolve_slice, slice_devices
    from ascl_jax.commands.train import resolve_config

    start = time.perf_counter()
    tpu = resolve_slice(args.topology)
    cfg = resolve_config(args, [])
    mcfg = _model_config(cfg.model)
    only = None
    if args.programs:
        only = {p.strip() for p in args.programs.split(",") if p.strip()}
    devices = slice_devices(tpu)
    planner = Planner(cfg, tpu, mcfg, devices=devices)
    plan = planner.plan(only=only, log=_log, cost=not args.memory_only)
    known = {p.name for p in plan.programs}
    if only and not known:
        raise UserError(f"--programs {args.programs}: this run compiles none of those")
    if not plan.fits and not args.no_suggest:
        _log("the run does not fit: planning variants")
        plan.suggestion = suggest(cfg, tpu, mcfg, plan, log=_log)
    plan.seconds = time.perf_counter() - start
    out = plan.as_dict()
    out["config"] = {"model": cfg.model, "mesh": plan.mesh, "lora_rank": cfg.lora.rank,
                     "sft_remat": cfg.sft.remat, "rl_remat": cfg.rl.remat}
    if args.json:
        print(json.dumps(out))
    else:
        print(format_plan(out))
    return 0


def _model_config(spec: str):
    """The model's config without its weights. A checkpoint folder that is not on this machine (a config
    written for the cluster, e.g. /models/Qwen3-8B) is planned with the built-in architecture of the
    same name, and the log says so."""
    from pathlib import Path

    from ascl_jax.errors import ModelNotFoundError
    from ascl_jax.models.registry import architecture_names, model_config

    try:
        return model_config(spec)
    except ModelNotFoundError:
        name = Path(spec).name.lower().removesuffix("-instruct")
        if name not in architecture_names() or Path(spec).exists():
            raise
        _log(f"{spec} is not on this machine: planning with the built-in architecture {name} (its published "
             "config.json)")
        return model_config(name)


def _gib(n) -> str:
    return f"{n / 2**30:.2f}"


def format_plan(out: dict) -> str:
    rows = [("program", "peak/HBM GiB", "args", "temps", "resident", "fits", "compile s", "est s", "ICI GiB",
             "roofline s", "tok/s/chip", "MFU")]
    for p in out["programs"]:
        if p["error"]:
            rows.append((p["name"], "-", "-", "-", "-", "error", f"{p['compile_seconds']:.1f}", "-", "-", "-", "-", "-"))
            continue
        est = p["est_seconds"]
        rows.append((
            p["name"], f"{_gib(p['peak_bytes'])}/{_gib(p['hbm_bytes'])}", _gib(p["argument_bytes"]),
            _gib(p["temp_bytes"]), _gib(p["resident_bytes"]), "yes" if p["fits"] else "NO",
            f"{p['compile_seconds']:.1f}", "-" if est is None else f"{est:.4g}",
            "-" if p["collective_bytes"] is None else _gib(p["collective_bytes"]), f"{p['roofline_seconds']:.4g}",
            str(p["metrics"].get("est_tokens_per_s_per_chip", "-")), str(p["metrics"].get("est_mfu", "-")),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"{out['model']} on {out['slice']} ({out['devices']} x {out['device_kind']}), mesh "
             + " x ".join(f"{k} {v}" for k, v in out["mesh"].items()) + f", {out['params'] / 1e9:.2f}B parameters"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    for p in out["programs"]:
        lines.append(f"  {p['name']}: {p['what']}" + (f"\n    {p['error']}" if p["error"] else ""))
    verdict = "fits" if out["fits"] else "does NOT fit"
    lines.append(f"the run {verdict}: peak {out['peak_gib']:.2f} GiB per chip (planned in {out['plan_seconds']:.0f} s)")
    if not out["fits"]:
        worst = [p for p in out["programs"] if not p["fits"] and not p["error"]]
        for p in worst:
            lines.append(f"  {p['name']} needs {_gib(p['peak_bytes'])} GiB of {_gib(p['hbm_bytes'])} usable "
                         f"(over by {_gib(p['peak_bytes'] - p['hbm_bytes'])} GiB)")
    s = out.get("suggestion")
    if s:
        if s["overrides"] is None:
            lines.append("no variant tried fits: " + json.dumps(s["tried"]))
        else:
            change = " ".join(f"{k}={v}" for k, v in s["overrides"].items())
            lines.append(f"fits with: {change}" + (f" --topology {s['topology']}" if s["topology"] != out["slice"] else ""))
    lines += [f"warning: {w}" for w in out.get("warnings", [])]
    lines.append(out["note"])
    return "\n".join(lines)
