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
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ascl_jax.bench import hlo_cost
from ascl_jax.bench.topology import TpuSlice, slice_devices
from ascl_jax.errors import ConfigError, UserError

GIB = 2**30
HBM_USABLE = 0.95  # the runtime and fragmentation take a few percent of HBM
PROBE_DEPTHS = (1, 2)  # unrolled, so even the last layer apart (prefill, extend) leaves no loop
# Worst-case tokens a tool turn's delta adds beyond the response (template and role tokens).
TOOL_TURN_OVERHEAD = 64


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
            "note": "memory: XLA's compiled per-chip figures; seconds: estimates from XLA's cost counts on the "
                    "chip's data-sheet roofline, not measurements",
        }


# ----- abstract state


def _is_var(x) -> bool:
    from flax import nnx

    return isinstance(x, nnx.Variable)


def _sds(shape, dtype, sharding):
    import jax

    return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)


def _tree_bytes(tree) -> int:
    """Bytes of a tree's arrays, whole (not per chip)."""
    import jax
    import numpy as np

    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def tree_bytes_per_chip(tree) -> int:
    """Bytes one device holds of an abstract (or real) tree, from each leaf's sharding."""
    import jax
    import numpy as np

    total = 0
    for leaf in jax.tree.leaves(tree):
        sharding = getattr(leaf, "sharding", None)
        shape = sharding.shard_shape(leaf.shape) if sharding is not None else leaf.shape
        total += int(np.prod(shape)) * np.dtype(leaf.dtype).itemsize
    return total


@dataclass
class _Model:
    """The model's abstract state on the mesh, at one depth."""

    config: Any
    graphdef: Any
    params: Any  # the whole state (what the rollout and the log-prob passes take)
    trainable: Any
    frozen: Any
    opt_states: dict[str, Any]  # per stage ("sft", "rl")
    rules: Any  # the sharding rules it is laid out by


def _abstract_model(mcfg, rules, lora, mesh, txs: dict, unroll) -> _Model:
    import jax

    from ascl_jax.models.lora import trainable_split
    from ascl_jax.models.params import abstract_decoder, param_shardings
    from ascl_jax.training.optimizer import optimizer_state_shardings

    graphdef, abstract = abstract_decoder(mcfg, rules, lora, unroll)
    shardings = param_shardings(abstract, mesh, rules)
    params = jax.tree.map(lambda v, s: v.replace(_sds(v.shape, v.dtype, s)), abstract, shardings, is_leaf=_is_var)
    trainable, frozen = trainable_split(params)
    opt = {}
    for stage, tx in txs.items():
        shapes = jax.eval_shape(tx.init, trainable)
        opt[stage] = jax.tree.map(lambda a, s: _sds(a.shape, a.dtype, s), shapes,
                                  optimizer_state_shardings(tx, trainable, mesh))
    return _Model(mcfg, graphdef, params, trainable, frozen, opt, rules)


# ----- the programs of a run


@dataclass(frozen=True)
class _Program:
    name: str
    what: str
    lower: Callable[[_Model], Any]  # the full program
    probe: Callable[[_Model], Any]  # one unit of it (one micro-batch / one decode step), nothing looping
    repeats: int  # units in the full program
    once: Callable[[_Model], Any] | None  # a part the full program runs once beside its units (the optimizer)
    model_flops: float  # whole slice, analytic
    weight_passes: float  # times the weights are read (analytic bytes)
    cache_bytes: int  # KV cache bytes per chip read (analytic bytes)
    resident: Callable[[_Model], int]
    tokens: int
    same_as: str | None = None  # compiled once with this program (same function, shapes and shardings)
    layout: str = "train"  # the weights' layout it runs on (rollout/layout.py)


def run_programs(cfg, mcfg, mesh, rules) -> list[_Program]:
    """The programs `ascl train` compiles for `cfg` (a TrainConfig), in the order the run meets them."""
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    from ascl_jax.models.decoder import CACHE_AXES, KVCache
    from ascl_jax.parallel.host import row_sharding
    from ascl_jax.rollout.layout import rollout_rules
    from ascl_jax.parallel.sharding import batch_sharding
    from ascl_jax.rl.batch import pack_width, sequence_logprobs
    from ascl_jax.rl.trainer import bind_rl_loss
    from ascl_jax.rollout.engine import StopTokens, admit, decode_chunk, extend, idle_state
    from ascl_jax.rollout.sampling import SamplingConfig, row_keys
    from ascl_jax.rollout.shapes import bucket
    from ascl_jax.rollout.slots import resolve_slots
    from ascl_jax.sft.loss import sft_loss_fn
    from ascl_jax.training.optimizer import make_optimizer
    from ascl_jax.training.update import apply_gradients, update_step

    replicated = NamedSharding(mesh, PartitionSpec())

    def rows_of(shape, dtype):
        return _sds(shape, dtype, batch_sharding(mesh, rules, shape))

    def opt_bytes(stage):
        return lambda m: tree_bytes_per_chip(m.opt_states[stage])

    programs: list[_Program] = []
    eos = tuple(mcfg.eos_token_ids) or (0,)
    stops = StopTokens(eos=eos, tool_call_end=(((max(eos) + 1) % mcfg.vocab_size,),))

    def update_programs(name, stage, tx, loss_fn, batch_fn, rows, width, micro, what, resident):
        def lower(m, rows=rows, micro=micro):
            return update_step.lower(m.graphdef, m.trainable, m.opt_states[stage], batch_fn(rows, width),
                                     loss_fn=loss_fn, tx=tx, num_micro=micro, frozen=m.frozen)

        def once(m):
            grads = jax.tree.map(lambda a: _sds(a.shape, a.dtype, a.sharding), m.trainable)
            f32 = _sds((), jnp.float32, replicated)
            fn = jax.jit(functools.partial(apply_gradients, tx=tx))
            return fn.lower(m.trainable, m.opt_states[stage], grads, f32, f32, {})

        tokens = rows * width
        return _Program(name, what, lower, functools.partial(lower, rows=rows // micro, micro=1), micro, once,
                        3 * mcfg.flops_per_token(width) * tokens, 3.0, 0, resident, tokens)

    has_sft = cfg.sft.steps > 0 and (cfg.data.task == "demo" or bool(cfg.data.sft))
    if has_sft:
        s = cfg.sft
        tx = make_optimizer(s.optimizer)

        def sft_batch(rows, width):
            return {"tokens": rows_of((rows, width), jnp.int32), "loss_mask": rows_of((rows, width), jnp.float32)}

        programs.append(update_programs(
            "sft_step", "sft", tx, sft_loss_fn(s.remat), sft_batch, s.batch_size, s.max_tokens, s.micro_batches,
            f"{s.batch_size} rows x {s.max_tokens} tokens, {s.micro_batches} micro-batches, remat {s.remat}",
            lambda m: 0))

    def rollout_programs(prefix, prompts, group, rollout, resident):
        capacity = rollout.capacity
        plen = bucket(rollout.max_prompt_tokens, rollout.prompt_bucket)
        width = min(bucket(rollout.max_tool_response_tokens + TOOL_TURN_OVERHEAD, rollout.extend_bucket), capacity)
        # The engine holds `slots` rows; an admission prefills at most slots / G prompts into them.
        rows = resolve_slots(rollout.slots, prompts * group, group)
        prompts = rows // group
        sampling = rollout.sampling
        keys = jax.eval_shape(lambda: row_keys(0, np.arange(rows)))
        state_box: dict[str, Any] = {}

        # prompts, their lengths, slot ids, the row keys and limits: host arrays, which jit takes replicated
        admit_args = (_sds((prompts, plen), jnp.int32, replicated), _sds((prompts,), jnp.int32, replicated),
                      _sds((rows,), jnp.int32, replicated), _sds(keys.shape, keys.dtype, replicated),
                      _sds((rows,), jnp.int32, replicated))
        admit_static = dict(group_size=group, sampling=sampling, stops=stops)

        def state_of(m):
            # The decode state as the engine holds it: shapes from tracing, and the layout `_placed` gives it
            # (rows over the batch axes, the cache by CACHE_AXES), without compiling anything.
            key = id(m)
            if key not in state_box:
                shapes = jax.eval_shape(functools.partial(idle_state, cfg=m.config, slots=rows, capacity=capacity,
                                                          rules=m.rules))
                placed = {f.name: _sds(getattr(shapes, f.name).shape, getattr(shapes, f.name).dtype,
                                       batch_sharding(mesh, m.rules, getattr(shapes, f.name).shape))
                          for f in dataclasses.fields(shapes) if f.name != "cache"}
                cache = KVCache(*(_sds(c.shape, c.dtype, m.rules.sharding(mesh, CACHE_AXES, c.shape))
                                  for c in (shapes.cache.k, shapes.cache.v)))
                state_box[key] = dataclasses.replace(shapes, cache=cache, **placed)
            return state_box[key]

        def lower_prefill(m):
            return admit.lower(m.graphdef, m.params, state_of(m), *admit_args, cfg=m.config, **admit_static)

        def lower_decode(m, steps=rollout.decode_chunk):
            return decode_chunk.lower(m.graphdef, m.params, state_of(m), _sds((), jnp.int32, replicated),
                                      n_steps=steps, sampling=sampling, stops=stops)

        def lower_extend(m):
            state = state_of(m)
            new = _sds((rows, width), jnp.int32, row_sharding(state.tokens.sharding))
            lens = _sds((rows,), jnp.int32, state.seq_len.sharding)
            return extend.lower(m.graphdef, m.params, state, new, lens, sampling=sampling, stops=stops)

        layout = rollout.layout
        if layout != "train":  # the training weights stay beside the rollout's copy
            resident = (lambda m, during=resident: during(m) + tree_bytes_per_chip(m.params))
        cache_shape = (mcfg.num_layers, rows, capacity, mcfg.num_kv_heads, mcfg.head_dim)
        kv_sharding = rollout_rules(layout, rules).sharding(mesh, CACHE_AXES, cache_shape)
        kv_chip = 2 * math.prod(kv_sharding.shard_shape(cache_shape)) * np.dtype(mcfg.dtype).itemsize
        steps = rollout.decode_chunk
        return [
            _Program(f"{prefix}prefill", f"{prompts} prompts x {plen} tokens (x{group} samples share it), "
                     f"capacity {capacity}", lower_prefill, lower_prefill, 1, None,
                     mcfg.flops_per_token(plen) * prompts * plen, 1.0, 0, resident, prompts * plen, layout=layout),
            _Program(f"{prefix}decode_chunk", f"{rows} slots x {steps} steps, capacity {capacity}", lower_decode,
                     functools.partial(lower_decode, steps=1), steps, None,
                     mcfg.flops_per_token(2 * capacity) * rows * steps, float(steps), kv_chip * steps, resident,
                     rows * steps, layout=layout),
            _Program(f"{prefix}extend", f"{rows} slots x {width} spliced tokens, capacity {capacity}", lower_extend,
                     lower_extend, 1, None, mcfg.flops_per_token(2 * capacity) * rows * width, 1.0, kv_chip, resident,
                     rows * width, layout=layout),
        ]

    has_rl = cfg.method == "ascl" and cfg.rl.steps > 0
    rl, ro = cfg.rl, cfg.rollout
    kl = rl.loss.kl_coef > 0
    ref_bytes = (lambda m: tree_bytes_per_chip(m.trainable)) if kl else (lambda m: 0)

    def during(m):  # beside a rollout or a log-prob pass: the RL trainer's optimizer state and reference copy
        return opt_bytes("rl")(m) + ref_bytes(m) if has_rl else 0

    if has_rl:
        tx = make_optimizer(cfg.optimizer)
        temperature = 1.0 if ro.sampling.greedy else ro.sampling.temperature
        rows = rl.prompts_per_step * ro.group_size
        width = pack_width([ro.max_prompt_tokens + ro.max_new_tokens])
        programs += rollout_programs("", rl.prompts_per_step, ro.group_size, ro, during)

        def lower_lp(m, rows=rows, micro=rl.micro_batches):
            return sequence_logprobs.lower(m.graphdef, m.params, rows_of((rows, width), jnp.int32),
                                           temperature=temperature, num_micro=micro)

        lp_what = f"{rows} rows x {width} tokens, {rl.micro_batches} micro-batches"
        fwd = mcfg.flops_per_token(width) * rows * width
        programs.append(_Program("rl_logprobs", lp_what, lower_lp,
                                 functools.partial(lower_lp, rows=rows // rl.micro_batches, micro=1),
                                 rl.micro_batches, None, fwd, 1.0, 0, during, rows * width))
        if kl:
            programs.append(_Program("ref_logprobs", lp_what + " (reference weights)", lower_lp,
                                     functools.partial(lower_lp, rows=rows // rl.micro_batches, micro=1),
                                     rl.micro_batches, None, fwd, 1.0, 0,
                                     lambda m: opt_bytes("rl")(m) + tree_bytes_per_chip(m.trainable), rows * width,
                                     same_as="rl_logprobs"))

        def rl_batch(rows, width):
            b = {"tokens": rows_of((rows, width), jnp.int32), "loss_mask": rows_of((rows, width), jnp.float32),
                 "old_logprobs": rows_of((rows, width), jnp.float32), "advantages": rows_of((rows,), jnp.float32)}
            if kl:
                b["ref_logprobs"] = rows_of((rows, width), jnp.float32)
            return b

        programs.append(update_programs(
            "rl_update", "rl", tx, bind_rl_loss(rl.loss, temperature, rl.remat), rl_batch, rows, width,
            rl.micro_batches, f"{rows} rows x {width} tokens, {rl.micro_batches} micro-batches, remat {rl.remat}",
            ref_bytes))

    has_eval = cfg.eval.max_prompts > 0 and (cfg.data.task == "demo" or bool(cfg.data.eval_prompts))
    if has_eval:
        from ascl_jax.eval.rollout_eval import EVAL_BATCH

        ev = dataclasses.replace(ro, group_size=1, sampling=SamplingConfig(greedy=True),
                                 max_new_tokens=cfg.eval.max_new_tokens)
        prompts = min(EVAL_BATCH, cfg.eval.max_prompts)
        programs += rollout_programs("eval_", prompts, 1, ev, during)
    return programs


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
        self.model_config = model_config.replace(**({"dtype": cfg.dtype, "param_dtype": cfg.dtype} if cfg.dtype else {}))
        self._models: dict[tuple, _Model] = {}
        self._compiled: dict[str, Any] = {}

    def _txs(self):
        from ascl_jax.training.optimizer import make_optimizer

        return {"sft": make_optimizer(self.cfg.sft.optimizer), "rl": make_optimizer(self.cfg.optimizer)}

    def _model(self, depth: int | None, unroll, layout: str = "train") -> _Model:
        from ascl_jax.rollout.layout import rollout_rules

        key = (depth, unroll, layout)
        if key not in self._models:
            mcfg = self.model_config if depth is None else self.model_config.replace(num_layers=depth)
            self._models[key] = _abstract_model(mcfg, rollout_rules(layout, self.rules), self.cfg.lora, self.mesh,
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
                       self.cfg.model, self.model_config.num_params, out, time.perf_counter() - start)

    def _plan_program(self, prog: _Program, cost: bool = True) -> ProgramPlan:
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
        weights = _tree_bytes(full.params) / self.mesh_sizes["tensor"]
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
        # Collectives are not assumed to overlap the compute: a bound from above, like the program's.
        plan.est_seconds = max(flops / self.peak, nbytes / self.bandwidth) + comm / self.ici
        if plan.est_seconds > 0:
            plan.metrics["est_tokens_per_s_per_chip"] = round(prog.tokens / plan.est_seconds / chips, 1)
            if prog.name in ("sft_step", "rl_update"):
                plan.metrics["est_mfu"] = round(plan.model_flops / plan.est_seconds / self.peak, 4)
        return plan

    def _probe_cost(self, prog: _Program) -> tuple[float, float, float]:
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
