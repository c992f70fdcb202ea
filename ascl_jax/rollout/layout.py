"""The rollout's own layout of the training weights.

Training shards weights FSDP-style (the `embed` dimension over `fsdp`), so a forward all-gathers every
weight; once per micro-batch is cheap next to the work of a long sequence, but a decode step does little
work per weight and would gather all of them at every step. The rollout may therefore run on another
layout of the same weights on the same mesh, resharded before the rollout phase (the time is logged):

- `train`: the training layout itself (no reshard; decode all-gathers the weights each step);
- `replicated`: weights whole across the data and fsdp axes, split over `tensor` as in training; rows
  stay split over data and fsdp. No gathers; every chip holds the weights / tensor;
- `tensor`: weights and attention heads split over fsdp x tensor (Megatron-style; a dimension that
  fsdp x tensor does not divide, e.g. 8 KV heads on 16 chips, is split over its largest leading part),
  rows split over `data` only. Each chip reads its share of the weights; activations are all-reduced.

`ascl plan` compiles the rollout programs in the configured layout and counts their collectives, which
is how the default was chosen (docs/benchmarks.md)."""

from __future__ import annotations

import time
from typing import Literal, get_args

import jax
from flax import nnx

from ascl_jax.models.params import param_shardings
from ascl_jax.models.registry import LoadedModel
from ascl_jax.parallel.sharding import ShardingRules

RolloutLayout = Literal["train", "replicated", "tensor"]
ROLLOUT_LAYOUTS: tuple[str, ...] = get_args(RolloutLayout)

_TENSOR = ("fsdp", "tensor")


def rollout_rules(layout: RolloutLayout, base: ShardingRules = ShardingRules()) -> ShardingRules:
    """The sharding rules of the rollout phase for `layout`, derived from the training rules `base`."""
    if layout == "train":
        return base
    if layout not in ROLLOUT_LAYOUTS:
        raise ValueError(f"rollout layout must be one of {', '.join(ROLLOUT_LAYOUTS)}, got {layout!r}")
    over: dict = {"embed": None}
    if layout == "tensor":
        over.update({name: _TENSOR for name in ("vocab", "heads", "kv_heads", "mlp", "act_heads", "act_kv_heads",
                                                 "act_mlp", "act_vocab")})
        over["batch"] = ("data",)
    return ShardingRules(tuple((name, over.get(name, axes)) for name, axes in base.rules))


def with_rules(model: LoadedModel, rules: ShardingRules) -> tuple[nnx.GraphDef, nnx.State]:
    """The model's graph rebuilt with `rules` (the engine lays out its state by the rules the modules
    carry) and the shardings its parameters take under them. Nothing is copied."""
    module = nnx.merge(model.graphdef, model.params)
    for _, m in nnx.iter_modules(module):
        if isinstance(getattr(m, "rules", None), ShardingRules):
            m.rules = rules
    graphdef, params = nnx.split(module)
    return graphdef, param_shardings(params, model.mesh, rules)


def for_rollout(model: LoadedModel, layout: RolloutLayout) -> tuple[LoadedModel, float]:
    """(the model in `layout`, the seconds the reshard took). The training weights are left as they are:
    the rollout's copy lives for the rollout phase, so the chips hold both layouts meanwhile."""
    if layout == "train":
        return model, 0.0
    rules = rollout_rules(layout, model.rules)
    t0 = time.perf_counter()
    graphdef, shardings = with_rules(model, rules)
    params = jax.block_until_ready(jax.device_put(model.params, shardings))
    out = LoadedModel(model.name, model.config, graphdef, params, model.tokenizer, model.mesh, rules,
                      model.chat_family)
    return out, time.perf_counter() - t0
