"""Compile time and program size of a run's program against model depth (`ascl bench compile`).

The decoder scans its layers, so a deeper model should compile in about the same time into a program of
about the same size. This compiles the chosen program of a config for a TPU slice (abstract arrays, as
`ascl plan` does) at several depths of the same architecture and prints seconds and generated-code bytes
side by side."""

from __future__ import annotations

import argparse
import json


def bench_compile(config, topology: str, layers: list[int], program: str) -> list[dict]:
    from ascl_jax.bench.plan import Planner
    from ascl_jax.bench.topology import resolve_slice, slice_devices
    from ascl_jax.errors import UserError
    from ascl_jax.models.registry import model_config

    tpu = resolve_slice(topology)
    devices = slice_devices(tpu)
    base = model_config(config.model)
    rows = []
    for depth in layers:
        planned = Planner(config, tpu, base.replace(num_layers=depth), devices=devices).plan(only={program}, cost=False)
        if not planned.programs:
            raise UserError(f"this run compiles no program {program!r}")
        p = planned.programs[0]
        rows.append({"layers": depth, "program": program, "compile_seconds": p.compile_seconds,
                     "code_bytes": int(p.metrics.get("code_bytes", 0)), "temp_gib": round(p.temp_bytes / 2**30, 2),
                     "error": p.error})
    return rows


def add_subcommand(kinds: argparse._SubParsersAction) -> None:
    from ascl_jax.commands.train import add_config_arguments

    c = kinds.add_parser("compile", help="compile time and program size against model depth (TPU slice, no TPU)",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(c)
    c.add_argument("--topology", default="v5p-32", metavar="SLICE")
    c.add_argument("--layers", default="8,28,36", help="comma-separated depths")
    c.add_argument("--program", default="rl_update", help="a program name as `ascl plan` lists them")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ascl_jax.commands.train import resolve_config
    from ascl_jax.errors import UserError

    try:
        layers = [int(x) for x in args.layers.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--layers {args.layers!r}: give comma-separated integers, e.g. 8,28,36") from None
    rows = bench_compile(resolve_config(args, []), args.topology, layers, args.program)
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['layers']:>4} layers  {r['program']}  compile {r['compile_seconds']:.1f} s  "
                  f"code {r['code_bytes'] / 2**20:.1f} MiB  temps {r['temp_gib']} GiB" + (f"  {r['error']}" if r["error"] else ""))
    return 0
