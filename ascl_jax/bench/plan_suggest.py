"""When a planned run does not fit: plan variants of it, cheapest change first, until one fits.

Each change is a config override (or a bigger slice). Every change here lowers memory, so a program that
fitted keeps fitting: only the programs that did not fit are planned again for the next variant. The
first variant under which every program fits is the suggestion; its overrides are what to add to the
command line. Variants are planned for memory only (no cost probes): plan the suggestion itself for its
estimated speed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ascl_jax.bench.plan import GIB, Planner, RunPlan
from ascl_jax.bench.topology import SLICES, TpuSlice

UPDATE = {"sft_step": "sft", "rl_update": "rl"}
REMAT_ORDER = ("none", "dots_with_no_batch_dims_saveable", "full")


def with_overrides(cfg, overrides: dict[str, Any]):
    """`cfg` (a TrainConfig) with dotted `key: value` overrides applied and checked like the command line's."""
    from ascl_jax.config_io import build, to_dict

    data = to_dict(cfg)
    for key, value in overrides.items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return build(type(cfg), data)


def _rows(cfg, stage: str) -> int:
    return cfg.sft.batch_size if stage == "sft" else cfg.rl.prompts_per_step * cfg.rollout.group_size


def _micro(cfg, stage: str) -> int:
    return cfg.sft.micro_batches if stage == "sft" else cfg.rl.micro_batches


def _steps(cfg, failing: set[str], row_ways: int, lora_rank: int):
    """The changes to try, cheapest first, as override dicts (each adds to the ones before)."""
    stages = [UPDATE[p] for p in ("sft_step", "rl_update") if p in failing]
    for stage in stages:
        current = getattr(cfg, stage).remat
        for policy in REMAT_ORDER[REMAT_ORDER.index(current) + 1:]:
            yield {f"{stage}.remat": policy}
    micro_stages = set(stages) | ({"rl"} if failing & {"rl_logprobs", "ref_logprobs"} else set())
    for stage in sorted(micro_stages):
        micro = _micro(cfg, stage)
        while _rows(cfg, stage) % (micro * 2) == 0 and _rows(cfg, stage) // (micro * 2) >= row_ways:
            micro *= 2
            yield {f"{stage}.micro_batches": micro}
    if not cfg.lora.rank:
        yield {"lora.rank": lora_rank}
    rollout = {p for p in failing if p.split("_", 1)[-1] in ("prefill", "decode_chunk", "extend")}
    if rollout:
        prompts = cfg.rl.prompts_per_step
        while prompts > 1 and prompts % 2 == 0:
            prompts //= 2
            yield {"rl.prompts_per_step": prompts}


def bigger_slices(tpu: TpuSlice) -> list[TpuSlice]:
    return sorted((s for s in SLICES.values() if s.generation == tpu.generation and s.chips > tpu.chips),
                  key=lambda s: s.chips)


def suggest(cfg, tpu: TpuSlice, model_config, plan: RunPlan, log: Callable[[str], None] | None = None,
            lora_rank: int = 16, max_variants: int = 8, hbm_bytes: int | None = None) -> dict[str, Any] | None:
    """{"overrides": {...}, "topology": name, "peak_gib": ..., "tried": [...]} for the first variant that
    fits, or {"overrides": None, "tried": [...]} when none of those tried does."""
    # Only memory can be planned away; a program that does not compile is reported as it is.
    failing = {p.name for p in plan.programs if not p.fits and p.error is None}
    if not failing or any(p.error for p in plan.programs):
        return None
    tried: list[dict[str, Any]] = []
    overrides: dict[str, Any] = {}
    planner = Planner(cfg, tpu, model_config, hbm_bytes=hbm_bytes)
    row_ways = planner.mesh_sizes["data"] * planner.mesh_sizes["fsdp"]
    variants = list(_steps(cfg, failing, row_ways, lora_rank))[:max_variants]
    for step in variants:
        overrides = {**overrides, **step}
        variant = with_overrides(cfg, overrides)
        if log:
            log(f"trying {' '.join(f'{k}={v}' for k, v in overrides.items())}")
        result = Planner(variant, tpu, model_config, devices=planner.devices, hbm_bytes=hbm_bytes).plan(only=failing,
                                                                                                    log=log, cost=False)
        worst = max(result.programs, key=lambda p: p.peak_bytes - p.hbm_bytes)
        tried.append({"overrides": dict(overrides), "fits": result.fits,
                      "worst": worst.name, "worst_peak_gib": round(worst.peak_bytes / GIB, 2)})
        if result.fits:
            return {"overrides": overrides, "topology": tpu.name, "tried": tried}
        failing = {p.name for p in result.programs if not p.fits or p.error}
        if any(p.error for p in result.programs):
            break
    for bigger in bigger_slices(tpu)[:2]:
        mesh = {"mesh.fsdp": -1} if cfg.mesh.data != -1 else {}
        variant = with_overrides(cfg, {**overrides, **mesh})
        if log:
            log(f"trying {bigger.name} with {' '.join(f'{k}={v}' for k, v in {**overrides, **mesh}.items())}")
        result = Planner(variant, bigger, model_config, hbm_bytes=hbm_bytes).plan(log=log, cost=False)
        tried.append({"overrides": {**overrides, **mesh}, "topology": bigger.name, "fits": result.fits,
                      "peak_gib": round(result.peak_bytes / GIB, 2)})
        if result.fits:
            return {"overrides": {**overrides, **mesh}, "topology": bigger.name, "tried": tried}
    return {"overrides": None, "topology": None, "tried": tried}

