"""The programs `ascl train` compiles, built on abstract state: the model, its optimizer states and each
program's inputs as `jax.ShapeDtypeStruct`s with the run's real shapes and shardings, so that `Planner`
(`ascl_jax.bench.plan`) can compile them for a slice it does not have."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Worst-case tokens a tool turn's delta adds beyond the response (template and role tokens).
TOOL_TURN_OVERHEAD = 64


# ----- abstract state


def _is_var(x) -> bool:
    from flax import nnx

    return isinstance(x, nnx.Variable)


def _sds(shape, dtype, sharding):
    import jax

    return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)


def tree_bytes(tree) -> int:
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
class AbstractModel:
    """The model's abstract state on the mesh, at one depth."""

    config: Any
    graphdef: Any
    params: Any  # the whole state (what the rollout and the log-prob passes take)
    trainable: Any
    frozen: Any
    opt_states: dict[str, Any]  # per stage ("sft", "rl")
    rules: Any  # the sharding rules it is laid out by


def abstract_model(mcfg, rules, lora, mesh, txs: dict, unroll) -> AbstractModel:
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
    return AbstractModel(mcfg, graphdef, params, trainable, frozen, opt, rules)


# ----- the programs of a run


@dataclass(frozen=True)
class Program:
    name: str
    what: str
    lower: Callable[[AbstractModel], Any]  # the full program
    probe: Callable[[AbstractModel], Any]  # one unit of it (one micro-batch / one decode step), nothing looping
    repeats: int  # units in the full program
    once: Callable[[AbstractModel], Any] | None  # a part the full program runs once beside its units (the optimizer)
    model_flops: float  # whole slice, analytic
    weight_passes: float  # times the weights are read (analytic bytes)
    cache_bytes: int  # KV cache bytes per chip read (analytic bytes)
    resident: Callable[[AbstractModel], int]
    tokens: int
    same_as: str | None = None  # compiled once with this program (same function, shapes and shardings)
    # Attention FLOPs (whole slice, part of model_flops) that XLA's cost analysis does not see: a Pallas
    # kernel is opaque to it, and the blockwise loops are counted once whatever their trip count.
    kernel_flops: float = 0.0
    layout: str = "train"  # the weights' layout it runs on (rollout/layout.py)


def run_programs(cfg, mcfg, mesh, rules) -> list[Program]:
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

    programs: list[Program] = []
    eos = tuple(mcfg.eos_token_ids) or (0,)

    def unseen_attention(seq, tokens, passes=1.0):
        """The attention FLOPs of `tokens` query tokens over `seq` keys that XLA does not count: all of
        them unless the attention is the dense path (a decode step, one query a row, always is)."""
        if mcfg.attention == "dense":
            return 0.0
        return passes * (mcfg.flops_per_token(seq) - mcfg.flops_per_token(0)) * tokens
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
        return Program(name, what, lower, functools.partial(lower, rows=rows // micro, micro=1), micro, once,
                        3 * mcfg.flops_per_token(width) * tokens, 3.0, 0, resident, tokens,
                        kernel_flops=unseen_attention(width, tokens, 3.0))

    has_sft = cfg.sft.steps > 0 and (cfg.data.task == "demo" or bool(cfg.data.sft))
    if has_sft:
        s = cfg.sft
        tx = make_optimizer(s.optimizer)

        def sft_batch(rows, width):
            b = {"tokens": rows_of((rows, width), jnp.int32), "loss_mask": rows_of((rows, width), jnp.float32)}
            if s.packing:
                b.update(segments=rows_of((rows, width), jnp.int32), positions=rows_of((rows, width), jnp.int32))
            return b

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
            Program(f"{prefix}prefill", f"{prompts} prompts x {plen} tokens (x{group} samples share it), "
                     f"capacity {capacity}", lower_prefill, lower_prefill, 1, None,
                     mcfg.flops_per_token(plen) * prompts * plen, 1.0, 0, resident, prompts * plen, layout=layout,
                     kernel_flops=unseen_attention(plen, prompts * plen)),
            Program(f"{prefix}decode_chunk", f"{rows} slots x {steps} steps, capacity {capacity}", lower_decode,
                     functools.partial(lower_decode, steps=1), steps, None,
                     mcfg.flops_per_token(2 * capacity) * rows * steps, float(steps), kv_chip * steps, resident,
                     rows * steps, layout=layout),
            Program(f"{prefix}extend", f"{rows} slots x {width} spliced tokens, capacity {capacity}", lower_extend,
                     lower_extend, 1, None, mcfg.flops_per_token(2 * capacity) * rows * width, 1.0, kv_chip, resident,
                     rows * width, layout=layout, kernel_flops=unseen_attention(2 * capacity, rows * width)),
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
        programs.append(Program("rl_logprobs", lp_what, lower_lp,
                                 functools.partial(lower_lp, rows=rows // rl.micro_batches, micro=1),
                                 rl.micro_batches, None, fwd, 1.0, 0, during, rows * width,
                                 kernel_flops=unseen_attention(width, rows * width)))
        if kl:
            programs.append(Program("ref_logprobs", lp_what + " (reference weights)", lower_lp,
                                     functools.partial(lower_lp, rows=rows // rl.micro_batches, micro=1),
                                     rl.micro_batches, None, fwd, 1.0, 0,
                                     lambda m: opt_bytes("rl")(m) + tree_bytes_per_chip(m.trainable), rows * width,
                                     same_as="rl_logprobs", kernel_flops=unseen_attention(width, rows * width)))

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
