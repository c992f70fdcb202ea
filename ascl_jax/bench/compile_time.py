"""Compile time and program size of a run's program against model depth (`ascl bench compile`).

The decoder scans its layers, so a deeper model should compile in about the same time into a program of
about the same size. This compiles the chosen program of a config for a TPU slice (abstract arrays, as
`ascl plan` does) at several depths of the same architecture and prints seconds and generated-code bytes
side by side."""

from __future__ import annotations


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

