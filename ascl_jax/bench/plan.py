"""Plan a run for a TPU slice without the slice: compile every program `ascl train` would compile, with
the run's real shapes and shardings, for the slice's compile-only devices, and read XLA's per-chip
memory and cost figures.

Programs (as the run calls them): `sft_step` (update_step with the SFT loss), the rollout's `prefill`,
`decode_chunk` and `extend` (the RL batch, then the evaluation batch), `rl_logprobs` (the trainer's
log-probability pass), `ref_logprobs` (the same program on the reference weights, when rl.loss.kl_coef >
0) and `rl_update` (update_step with the policy loss and its micro-batches).

Memory per chip: XLA's argument + output - aliased (donated) + temporary bytes of the full program, plus
what the run keeps alive beside it without passing it in (the optimizer state during a rollout, the
reference weights), against the chip's HBM. These are the compiled program's own numbers.

Cost per chip: XLA counts the body of a loop once, whatever its trip count (the layer scan, the
micro-batch scan, the decode loop). So the cost comes from small probes in which nothing loops: the same
program with the layer scan unrolled at 1 and 2 layers, extrapolated linearly to the model's depth
(every layer costs the same), on one micro-batch or one decode step, times their number, plus the
optimizer update once. Estimated seconds = max(flops / peak, bytes / HBM bandwidth) + interconnect bytes
/ ICI bandwidth per chip, the last from the collectives in the compiled HLO (`hlo_cost`): XLA's counts on
the data-sheet roofline, an estimate, not a measurement. The rollout programs are compiled in the
layout `rollout.layout` gives the weights (`rollout/layout.py`). The analytic roofline beside it
(model FLOPs and weight/cache bytes from the config) shows where that figure comes from."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ascl_jax.bench import hlo_cost
from ascl_jax.bench.plan_programs import AbstractModel, Program, abstract_model, run_programs, tree_bytes
from ascl_jax.bench.topology import TpuSlice, slice_devices
from ascl_jax.errors import ConfigError, UserError

GIB = 2**30
HBM_USABLE = 0.95  # the runtime and fragmentation take a few percent of HBM
PROBE_DEPTHS = (1, 2)  # unrolled, so even the last layer apart (prefill, extend) leaves no loop


@dataclass
class ProgramPlan:
    """One compiled program: per-chip memory (bytes), compile time, XLA's cost and the analytic roofline."""

    name: str
    what: str
    argument_bytes: int = 0
    output_bytes: int = 0
    alias_bytes: int = 0
    temp_bytes: int = 0
    resident_bytes: int = 0  # kept alive by the run beside the program, not passed in
    peak_bytes: int = 0
    hbm_bytes: int = 0
    fits: bool = False
    compile_seconds: float = 0.0
    xla_flops: float | None = None  # per chip, loops counted by their trip counts (see the module doc)
    xla_bytes: float | None = None
    collective_bytes: float | None = None  # per chip, received over the interconnect
    est_seconds: float | None = None
    model_flops: float = 0.0  # analytic, per chip
    roofline_seconds: float = 0.0  # analytic
    tokens: int = 0  # tokens the program processes (whole slice)
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["peak_gib"] = round(self.peak_bytes / GIB, 3)
        d["hbm_gib"] = round(self.hbm_bytes / GIB, 3)
        return d


@dataclass
class RunPlan:
    slice: str
    devices: int
    device_kind: str
    mesh: dict[str, int]
    model: str
    params: int
    programs: list[ProgramPlan]
    seconds: float = 0.0
    suggestion: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return all(p.fits and p.error is None for p in self.programs)

    @property
    def peak_bytes(self) -> int:
        return max((p.peak_bytes for p in self.programs), default=0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fits": self.fits, "slice": self.slice, "devices": self.devices, "device_kind": self.device_kind,
            "mesh": self.mesh, "model": self.model, "params": self.params,
            "peak_gib": round(self.peak_bytes / GIB, 3), "plan_seconds": round(self.seconds, 1),
            "programs": [p.as_dict() for p in self.programs], "suggestion": self.suggestion,
            "warnings": self.warnings,
            "note": "memory: XLA's compiled per-chip figures; seconds: estimates from XLA's cost counts on the "
                    "chip's data-sheet roofline, not measurements",
        }


# ----- compiling and counting


def _describe_failure(program: str, exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{program} failed to compile: {type(exc).__name__}: {text[:400]}"


class Planner:
    """Plans one TrainConfig on one slice; model states are built once per depth and reused."""

    def __init__(self, cfg, tpu: TpuSlice, model_config, devices=None, hbm_bytes: int | None = None,
                 peak_tflops: float | None = None, hbm_gb_per_s: float | None = None):
        from ascl_jax.parallel.mesh import make_mesh
        from ascl_jax.parallel.sharding import ShardingRules

        self.cfg, self.tpu = cfg, tpu
        self.devices = list(devices) if devices is not None else slice_devices(tpu)
        per_chip = max(1, len(self.devices) // tpu.chips)  # v4 / v5p expose each TensorCore on some layouts
        chip = tpu.chip
        self.hbm = hbm_bytes or int(chip.hbm_gib * GIB / per_chip)
        self.peak = (peak_tflops or chip.bf16_tflops / per_chip) * 1e12
        self.bandwidth = (hbm_gb_per_s or chip.hbm_gb_per_s / per_chip) * 1e9
        self.ici = chip.ici_gb_per_s / per_chip * 1e9
        try:
            cfg.mesh.resolve(len(self.devices))
        except ConfigError as exc:
            raise UserError(f"{tpu.name} has {len(self.devices)} devices: {exc}") from None
        self.mesh = make_mesh(dataclasses.replace(cfg.mesh, num_devices=-1), self.devices)
        self.mesh_sizes = dict(self.mesh.shape)
        self.rules = ShardingRules()
        self.model_config = model_config.replace(**({"dtype": cfg.dtype, "param_dtype": cfg.dtype} if cfg.dtype else {}),
                                                 **cfg.compute.overrides("tpu"))
        self._models: dict[tuple, AbstractModel] = {}
        self._compiled: dict[str, Any] = {}

    def _txs(self):
        from ascl_jax.training.optimizer import make_optimizer

        return {"sft": make_optimizer(self.cfg.sft.optimizer), "rl": make_optimizer(self.cfg.optimizer)}

    def _model(self, depth: int | None, unroll, layout: str = "train") -> AbstractModel:
        from ascl_jax.rollout.layout import rollout_rules

        key = (depth, unroll, layout)
        if key not in self._models:
            mcfg = self.model_config if depth is None else self.model_config.replace(num_layers=depth)
            self._models[key] = abstract_model(mcfg, rollout_rules(layout, self.rules), self.cfg.lora, self.mesh,
                                                self._txs(), unroll)
        return self._models[key]

    def plan(self, only: set[str] | None = None, log: Callable[[str], None] | None = None,
             cost: bool = True) -> RunPlan:
        """Plan the run's programs (`only`: those named); `cost`=False skips the cost probes (memory and
        compile time only)."""
        start = time.perf_counter()
        out = []
        # Model states are built outside the slice's mesh context (building them runs small host
        # computations, which the compile-only devices cannot); programs are lowered inside it.
        for layout in sorted({"train", self.cfg.rollout.layout}):
            self._model(None, 1, layout)
        programs = run_programs(self.cfg, self.model_config, self.mesh, self.rules)
        for prog in programs:
            if only is not None and prog.name not in only:
                continue
            if log:
                log(f"compiling {prog.name} ({prog.what})")
            out.append(self._plan_program(prog, cost))
        return RunPlan(self.tpu.name, len(self.devices), str(self.devices[0].device_kind), self.mesh_sizes,
                       self.cfg.model, self.model_config.num_params, out, time.perf_counter() - start,
                       warnings=self._split_warnings())

    def _split_warnings(self) -> list[str]:
        """Micro-batches whose rows do not divide over the row shards (data x fsdp): the sharding falls back
        to whole rows on every chip, which computes each micro-batch once per shard."""
        shards = self.mesh_sizes.get("data", 1) * self.mesh_sizes.get("fsdp", 1)
        cfg, out = self.cfg, []
        for key, rows, micro in (("sft", cfg.sft.batch_size, cfg.sft.micro_batches),
                                 ("rl", cfg.rl.prompts_per_step * cfg.rollout.group_size, cfg.rl.micro_batches)):
            per = rows // micro
            if per % shards:
                better = [m for m in range(1, micro + 1) if rows % m == 0 and (rows // m) % shards == 0]
                hint = f"; {key}.micro_batches={max(better)} leaves {rows // max(better)}" if better else ""
                out.append(f"{key}.micro_batches={micro} leaves {per} rows a micro-batch for {shards} row shards "
                           f"(data x fsdp): every shard computes all of them{hint}")
        return out

    def _plan_program(self, prog: Program, cost: bool = True) -> ProgramPlan:
        import jax

        full = self._model(None, 1)
        model = self._model(None, 1, prog.layout)
        plan = ProgramPlan(prog.name, prog.what, hbm_bytes=int(self.hbm * HBM_USABLE), tokens=prog.tokens)
        try:
            t0 = time.perf_counter()
            key = prog.same_as or prog.name
            compiled = self._compiled.get(key)
            if compiled is None:
                with jax.set_mesh(self.mesh):
                    compiled = prog.lower(model).compile()
                self._compiled[key] = compiled
                plan.compile_seconds = round(time.perf_counter() - t0, 2)
            args, outs, alias, temp, code = hlo_cost.memory(compiled)
            plan.metrics["code_bytes"] = float(code)
        except Exception as exc:  # report it on the program's row; the rest of the plan goes on
            needed = hlo_cost.exhausted_bytes(exc)
            if needed is None:
                plan.error = _describe_failure(prog.name, exc)
                return plan
            # XLA stops compiling once the temporaries alone exceed HBM: the program does not fit, by at
            # least that much (arguments and outputs come on top).
            args, outs, alias, temp = 0, 0, 0, needed
            plan.metrics["temporaries_exceed_hbm"] = 1.0
        plan.argument_bytes, plan.output_bytes, plan.alias_bytes, plan.temp_bytes = args, outs, alias, temp
        plan.resident_bytes = int(prog.resident(full))
        plan.peak_bytes = args + outs - alias + temp + plan.resident_bytes
        plan.fits = plan.peak_bytes <= plan.hbm_bytes
        chips = len(self.devices)
        plan.model_flops = prog.model_flops / chips
        # Each chip reads the weights gathered over the data and fsdp axes, split over tensor, once a pass.
        weights = tree_bytes(full.params) / self.mesh_sizes["tensor"]
        analytic_bytes = prog.weight_passes * weights + prog.cache_bytes
        plan.roofline_seconds = max(plan.model_flops / self.peak, analytic_bytes / self.bandwidth)
        if not cost:
            return plan
        try:
            flops, nbytes, comm = self._probe_cost(prog)
        except Exception as exc:
            plan.error = _describe_failure(f"{prog.name} (cost probe)", exc)
            return plan
        plan.xla_flops, plan.xla_bytes, plan.collective_bytes = flops, nbytes, comm
        # Collectives are not assumed to overlap the compute: a bound from above, like the program's. The
        # attention that XLA cannot see (a Pallas kernel, the blockwise loops) is added at the chip's peak.
        kernel = prog.kernel_flops / chips
        plan.metrics["kernel_flops"] = kernel
        plan.est_seconds = max(flops / self.peak, nbytes / self.bandwidth) + kernel / self.peak + comm / self.ici
        if plan.est_seconds > 0:
            plan.metrics["est_tokens_per_s_per_chip"] = round(prog.tokens / plan.est_seconds / chips, 1)
            if prog.name in ("sft_step", "rl_update"):
                plan.metrics["est_mfu"] = round(plan.model_flops / plan.est_seconds / self.peak, 4)
        return plan

    def _probe_cost(self, prog: Program) -> tuple[float, float, float]:
        """Per-chip (flops, HBM bytes, interconnect bytes) of the full program from loop-free probes (see
        the module doc)."""
        import jax
        import numpy as np

        depth = self.model_config.num_layers

        def at(d):
            m = self._model(d, True, prog.layout)
            with jax.set_mesh(self.mesh):
                unit = hlo_cost.cost(prog.probe(m).compile())
                once = hlo_cost.cost(prog.once(m).compile()) if prog.once is not None else (0.0, 0.0, 0.0)
            return np.array(unit), np.array(once)

        if depth <= PROBE_DEPTHS[0]:
            unit, once = at(depth)
        else:
            (u1, o1), (u2, o2) = at(PROBE_DEPTHS[0]), at(PROBE_DEPTHS[1])
            k = depth - PROBE_DEPTHS[0]
            unit, once = u1 + k * (u2 - u1), o1 + k * (o2 - o1)
        # The probe of an update holds one micro-batch and the optimizer; the full program runs the
        # micro-batch `repeats` times and the optimizer once.
        flops, nbytes, comm = (prog.repeats * (unit - once) + once).tolist()
        return flops, nbytes, comm
