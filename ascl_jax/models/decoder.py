"""One Flax NNX decoder for Llama 3.x, Qwen2/2.5, Qwen3 and SmolLM2.

Differences between the families are config flags: q/k/v bias (Qwen2), q/k RMSNorm (Qwen3), tied
embeddings (SmolLM2, small Qwen), RoPE scaling (Llama 3.1). Parameters carry their logical axes as
metadata (`logical_axes`), which `ascl_jax.parallel.ShardingRules` turns into shardings.

Layers are scanned: every layer parameter is stacked with a leading layer axis (logical axis "layers",
never sharded) and the forward runs one compiled layer body under `jax.lax.scan`, so compile time and
program size do not grow with depth. Training may rematerialise the layer body (`remat`, a
`jax.checkpoint` policy): activations inside a layer are recomputed in the backward pass instead of kept.

The forward takes a KV cache and a write offset per row: the tokens of row b are written at cache
slots offsets[b] .. offsets[b]+T-1 (those past the end are dropped) and attend to every slot up to their
own. Rows therefore advance independently, which is what the rollout engine needs when a tool turn is
spliced into some rows only. A forward of several tokens per row reads only the prefix of the cache its
queries can see (`attention_windows`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, get_args

import jax
import jax.numpy as jnp
from flax import nnx

from ascl_jax.models.attention import attend
from ascl_jax.models.chunked_logprobs import token_stats
from ascl_jax.models.config import ModelConfig
from ascl_jax.models.lora import LoRAConfig, LoRAParam
from ascl_jax.models.rope import apply_rope, inverse_frequencies, rope_tables
from ascl_jax.parallel.sharding import ShardingRules, constrain

_INIT_STD = 0.02

Remat = Literal["none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable"]
REMAT_POLICIES: tuple[str, ...] = get_args(Remat)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class KVCache:
    """Keys and values of every layer, each [L, B, S, num_kv_heads, head_dim] in the compute dtype.

    Slots beyond a row's written length hold stale values; causality by slot index keeps them unread."""

    k: jax.Array
    v: jax.Array

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]


CACHE_AXES = ("layers", "batch", "cache_seq", "act_kv_heads", "head_dim")


def init_cache(config: ModelConfig, batch_size: int, capacity: int) -> KVCache:
    """An all-zero cache of `capacity` slots per row (call inside jit with out_shardings to place it)."""
    shape = (config.num_layers, batch_size, capacity, config.num_kv_heads, config.head_dim)
    dtype = jnp.dtype(config.dtype)
    return KVCache(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype))


def _param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str, ...], dtype: str, init: str,
           layers: int | None = None, kind: type[nnx.Param] = nnx.Param, **metadata) -> nnx.Param:
    """A parameter of `shape`, stacked over `layers` (leading axis "layers") when given."""
    if layers is not None:
        shape, axes = (layers, *shape), ("layers", *axes)
    if init == "normal":
        value = _INIT_STD * jax.random.normal(rngs.params(), shape, jnp.float32)
    elif init == "fan_in_uniform":  # LoRA's A: uniform in +-1/sqrt(fan_in), fan_in = shape[-2]
        bound = 1.0 / math.sqrt(shape[-2])
        value = jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound)
    elif init == "ones":
        value = jnp.ones(shape, jnp.float32)
    else:
        value = jnp.zeros(shape, jnp.float32)
    return kind(value.astype(dtype), logical_axes=axes, **metadata)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, dtype: str, param_dtype: str, axis_name: str, *, rngs: nnx.Rngs,
                 layers: int | None = None):
        self.scale = _param(rngs, (dim,), (axis_name,), param_dtype, "ones", layers)
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        # Statistics in float32 and the cast back before the scale, as the HF reference does.
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(self.dtype) * xf.astype(self.dtype)


class _Projections(nnx.Module):
    """Kernels [in, out] (stacked over layers) and, for the targeted ones, LoRA adapters A [in, r], B [r, out]."""

    def _kernel(self, rngs, name: str, shape: tuple[int, int], axes: tuple[str, str], cfg: ModelConfig,
                layers: int, lora: LoRAConfig, targets: tuple[str, ...]) -> None:
        setattr(self, name, _param(rngs, shape, axes, cfg.param_dtype, "normal", layers))
        if name in targets:
            setattr(self, f"{name}_lora_a", _param(rngs, (shape[0], lora.rank), (axes[0], "lora_rank"),
                                                   cfg.param_dtype, "fan_in_uniform", layers, LoRAParam,
                                                   lora_scale=lora.scale))
            setattr(self, f"{name}_lora_b", _param(rngs, (lora.rank, shape[1]), ("lora_rank", axes[1]),
                                                   cfg.param_dtype, "zeros", layers, LoRAParam,
                                                   lora_scale=lora.scale))

    def _linear(self, x: jax.Array, name: str) -> jax.Array:
        dtype = self.cfg.dtype
        y = x @ getattr(self, name)[...].astype(dtype)
        if name in self.lora_targets:
            a = getattr(self, f"{name}_lora_a")[...].astype(dtype)
            b = getattr(self, f"{name}_lora_b")[...].astype(dtype)
            y = y + ((x @ a) @ b) * jnp.asarray(self.lora_scale, dtype)
        return y


class Attention(_Projections):
    def __init__(self, cfg: ModelConfig, rules: ShardingRules, *, rngs: nnx.Rngs, layers: int,
                 lora: LoRAConfig = LoRAConfig()):
        d, h, kv, hd, pd = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.param_dtype
        self.cfg = cfg
        self.rules = rules
        self.lora_targets = lora.targets_of("attn")
        self.lora_scale = lora.scale
        for name, shape, axes in (("q_proj", (d, h * hd), ("embed", "heads")),
                                  ("k_proj", (d, kv * hd), ("embed", "kv_heads")),
                                  ("v_proj", (d, kv * hd), ("embed", "kv_heads")),
                                  ("o_proj", (h * hd, d), ("heads", "embed"))):
            self._kernel(rngs, name, shape, axes, cfg, layers, lora, self.lora_targets)
        if cfg.attention_bias:
            self.q_bias = _param(rngs, (h * hd,), ("heads",), pd, "zeros", layers)
            self.k_bias = _param(rngs, (kv * hd,), ("kv_heads",), pd, "zeros", layers)
            self.v_bias = _param(rngs, (kv * hd,), ("kv_heads",), pd, "zeros", layers)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(hd, cfg.rms_norm_eps, cfg.dtype, pd, "head_dim", rngs=rngs, layers=layers)
            self.k_norm = RMSNorm(hd, cfg.rms_norm_eps, cfg.dtype, pd, "head_dim", rngs=rngs, layers=layers)

    def _project(self, x: jax.Array, name: str, heads: int) -> jax.Array:
        y = self._linear(x, f"{name}_proj")
        if self.cfg.attention_bias:
            y = y + getattr(self, f"{name}_bias")[...].astype(self.cfg.dtype)
        return y.reshape(*x.shape[:2], heads, self.cfg.head_dim)

    def __call__(self, x, cos, sin, cache: KVCache | None, layer, offsets, select=None, reach=None, segments=None):
        """One layer's attention (this module holding that layer's parameters). x [B, T, D] -> (out
        [B, Tq, D], cache with this layer's keys and values written, or None without a cache). Keys and
        values are made for all T positions; queries for all of them (Tq = T), or with `select` i32[B] for
        position select[b] of each row alone (Tq = 1). `layer` i32[]: this layer's index in the cache.
        `reach` i32[]: the cache slots [0, reach) are all that any query whose output is used can see
        (default: up to the furthest query's slot); attention reads the smallest window covering them.
        `segments` i32[B, T] (uncached forward only): packed rows, a token attends within its segment."""
        cfg, rules = self.cfg, self.rules
        t = x.shape[1]
        k = self._project(x, "k", cfg.num_kv_heads)
        v = self._project(x, "v", cfg.num_kv_heads)
        query_pos = jnp.arange(t)[None, :]  # [1 or B, Tq]: positions among the T fed
        cos_q, sin_q, x_q = cos, sin, x
        if select is not None:
            query_pos = select[:, None]
            cos_q, sin_q, x_q = (jnp.take_along_axis(a, query_pos[:, :, None], axis=1) for a in (cos, sin, x))
        q = self._project(x_q, "q", cfg.num_heads)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos_q, sin_q), apply_rope(k, cos, sin)
        q = constrain(q, rules, ("batch", "seq", "act_heads", "head_dim"))

        if cache is None:  # plain causal forward over the given tokens
            q_segments = segments if select is None or segments is None else jnp.take_along_axis(segments, query_pos, 1)
            out = self._attend(q, k, v, None if select is None else query_pos, q_segments, segments)
            return self._linear(out, "o_proj"), None

        cache = KVCache(k=_write_rows(cache.k, layer, k.astype(cache.k.dtype), offsets),
                        v=_write_rows(cache.v, layer, v.astype(cache.v.dtype), offsets))
        cache = KVCache(k=constrain(cache.k, rules, CACHE_AXES), v=constrain(cache.v, rules, CACHE_AXES))
        query_slot = offsets[:, None] + query_pos  # [B, Tq]

        def attend_window(width, q, cache, query_slot):
            # Only slots [0, width) can be read by these queries: the rest of the cache is skipped, not masked.
            keys, values = (_layer_window(c, layer, width) for c in (cache.k, cache.v))
            return self._attend(q, keys, values, query_slot)

        widths = attention_windows(cache.capacity) if t > 1 or reach is not None else (cache.capacity,)
        if len(widths) == 1:
            out = attend_window(widths[0], q, cache, query_slot)
        else:
            # The smallest window holding the furthest query's slot, picked at run time: one compiled program
            # serves every offset, and an extend or prefill near the start of the cache reads only that part.
            # Slots past the reach are masked for every query, so any covering window gives the same result
            # (up to float rounding). A decode step is given its reach (the longest running row), so
            # finished rows and empty slots do not widen it.
            reach = jnp.max(query_slot) + 1 if reach is None else reach
            index = jnp.minimum(jnp.searchsorted(jnp.asarray(widths), reach), len(widths) - 1)
            branches = [functools.partial(attend_window, w) for w in widths]
            out = jax.lax.switch(index, branches, q, cache, query_slot)
        return self._linear(out, "o_proj"), cache


    def _attend(self, q, keys, values, q_slot, q_segments=None, kv_segments=None):
        cfg = self.cfg
        return attend(q, keys, values, backend=cfg.attention, dtype=cfg.dtype, q_slot=q_slot, q_segments=q_segments,
                      kv_segments=kv_segments, block=cfg.attention_block, rules=self.rules)


def attention_windows(capacity: int) -> tuple[int, ...]:
    """Key-window widths (ascending, the last is `capacity`) among which a multi-token cached forward
    picks the smallest one covering its queries: multiples of a step of at least 64 slots, at most 4 of
    them. Each width is one more copy of the attention code per layer in the compiled program (prefill
    and extend compile in about 1.5x the time); more widths would skip more slots for more compile time."""
    step = max(64, -(-capacity // (4 * 64)) * 64)
    return tuple(range(step, capacity, step)) + (capacity,)


def _write_rows(cache: jax.Array, layer: jax.Array, new: jax.Array, offsets: jax.Array) -> jax.Array:
    """cache [L, B, S, K, D] with new [B, T, K, D] written into layer `layer` at slots offsets[b] ..
    offsets[b]+T-1 of row b; slots at or past S are dropped.

    One scatter into the stacked cache (in place inside the layer scan). Not `dynamic_update_slice`: it
    would shift a write that runs past the end back to S-T, over the row's valid slots. That happens to a
    row left out of an `extend` (padded, its writes never read) when it is near its end."""
    slots = offsets[:, None] + jnp.arange(new.shape[1])[None, :]  # [B, T]
    rows = jnp.arange(cache.shape[1])[:, None]
    return cache.at[layer, rows, slots].set(new, mode="drop")


def _layer_window(cache: jax.Array, layer: jax.Array, width: int) -> jax.Array:
    """Slots [0, width) of one layer of a stacked cache [L, B, S, K, D] -> [B, width, K, D]."""
    _, b, _, k, d = cache.shape
    return jax.lax.dynamic_slice(cache, (layer, 0, 0, 0, 0), (1, b, width, k, d))[0]


class MLP(_Projections):
    def __init__(self, cfg: ModelConfig, rules: ShardingRules, *, rngs: nnx.Rngs, layers: int,
                 lora: LoRAConfig = LoRAConfig()):
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.cfg = cfg
        self.rules = rules
        self.lora_targets = lora.targets_of("mlp")
        self.lora_scale = lora.scale
        for name, shape, axes in (("gate_proj", (d, f), ("embed", "mlp")), ("up_proj", (d, f), ("embed", "mlp")),
                                  ("down_proj", (f, d), ("mlp", "embed"))):
            self._kernel(rngs, name, shape, axes, cfg, layers, lora, self.lora_targets)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.silu(self._linear(x, "gate_proj")) * self._linear(x, "up_proj")
        h = constrain(h, self.rules, ("batch", "seq", "act_mlp"))
        return self._linear(h, "down_proj")


class Block(nnx.Module):
    """All decoder layers, each parameter stacked over `layers`; called on one layer's slice of them."""

    def __init__(self, cfg: ModelConfig, rules: ShardingRules, *, rngs: nnx.Rngs, layers: int,
                 lora: LoRAConfig = LoRAConfig()):
        norm = functools.partial(RMSNorm, cfg.hidden_size, cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, "norm",
                                 rngs=rngs, layers=layers)
        self.input_norm = norm()
        self.attn = Attention(cfg, rules, rngs=rngs, layers=layers, lora=lora)
        self.post_attn_norm = norm()
        self.mlp = MLP(cfg, rules, rngs=rngs, layers=layers, lora=lora)
        self.rules = rules

    def __call__(self, x, cos, sin, cache, layer, offsets, select=None, reach=None, segments=None):
        h, cache = self.attn(self.input_norm(x), cos, sin, cache, layer, offsets, select, reach, segments)
        if select is not None:  # only these positions go on; the others' keys and values are made
            x = jnp.take_along_axis(x, select[:, None, None], axis=1)
        x = constrain(x + h, self.rules, ("batch", "seq", "act_embed"))
        x = x + self.mlp(self.post_attn_norm(x))
        return constrain(x, self.rules, ("batch", "seq", "act_embed")), cache


def _remat(fn, policy: Remat):
    if policy == "none":
        return fn
    if policy not in REMAT_POLICIES:
        raise ValueError(f"remat must be one of {', '.join(REMAT_POLICIES)}, got {policy!r}")
    saveable = {
        "full": None,
        "dots_saveable": jax.checkpoint_policies.dots_saveable,
        "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    }[policy]
    return jax.checkpoint(fn, policy=saveable, prevent_cse=False)


class Decoder(nnx.Module):
    """Causal LM. Call: (tokens i32[B,T], positions i32[B,T], cache, offsets i32[B]) -> (logits f32[B,T,V], cache).

    Without a cache the forward is a plain causal pass over the T tokens (training). With a cache the
    new keys and values are written at each row's offset and the updated cache is returned."""

    def __init__(self, cfg: ModelConfig, rules: ShardingRules = ShardingRules(), *, rngs: nnx.Rngs,
                 lora: LoRAConfig = LoRAConfig(), scan_unroll: int | bool = 1):
        """`scan_unroll`: layers per iteration of the layer scan (True: all, straight-line code). Results do
        not depend on it; `ascl plan` unrolls its small cost probes so that XLA counts every layer."""
        self.scan_unroll = scan_unroll
        self.embed = _param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), cfg.param_dtype, "normal")
        self.layers = Block(cfg, rules, rngs=rngs, layers=cfg.num_layers, lora=lora)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, "norm", rngs=rngs)
        if not cfg.tie_word_embeddings:
            self.lm_head = _param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), cfg.param_dtype, "normal")
        self.cfg = cfg
        self.rules = rules

    def hidden_states(self, tokens, positions, cache: KVCache | None = None, offsets=None, select=None, *,
                      reach=None, remat: Remat = "none", segments=None):
        """Final-norm hidden states [B, T, D] (compute dtype) and the updated cache.

        With `select` i32[B], only position select[b] of each row is returned ([B, 1, D]): the last layer
        then runs its queries, output projection and MLP on that position alone, while keys and values
        are still made (and cached) for every position. Sampling after a prefill or an extend needs no
        more, and the last layer's work on the other positions would be thrown away.

        `reach` i32[] (with a cache): attention reads cache slots [0, reach) at most (see `Attention`).

        `remat` rematerialises each layer in the backward pass (training); it changes memory, not results.

        `segments` i32[B, T] (without a cache): packed rows; a token attends only to earlier tokens of its
        own segment (give each segment's positions from 0 in `positions`)."""
        cfg = self.cfg
        x = jnp.take(self.embed[...], tokens, axis=0).astype(cfg.dtype)
        x = constrain(x, self.rules, ("batch", "seq", "act_embed"))
        inv_freq, attention_factor = inverse_frequencies(cfg.rope, cfg.head_dim)
        cos, sin = rope_tables(positions, inv_freq, attention_factor)
        graphdef, stacked = nnx.split(self.layers)

        def layer(x, cache, params, i, sel=None):
            return nnx.merge(graphdef, params)(x, cos, sin, cache, i, offsets, sel, reach, segments)

        if select is None:
            def body(carry, xs):
                return layer(*carry, *xs), None

            (x, cache), _ = jax.lax.scan(_remat(body, remat), (x, cache), (stacked, jnp.arange(cfg.num_layers)),
                                         unroll=self.scan_unroll)
        else:
            # The last layer runs apart on the selected positions. The others index the stacked parameters
            # by layer (no slice of the stack is copied); this path is inference only, so no gradient has
            # to flow back through the indexing.
            def at(i):
                return jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, keepdims=False), stacked)

            def body(carry, i):
                return layer(*carry, at(i), i), None

            last = cfg.num_layers - 1
            (x, cache), _ = jax.lax.scan(body, (x, cache), jnp.arange(last), unroll=self.scan_unroll)
            x, cache = layer(x, cache, at(last), jnp.int32(last), select)
        return self.norm(x), cache

    def logits(self, hidden: jax.Array) -> jax.Array:
        """Projects hidden states [..., D] to float32 logits [..., V]."""
        cfg = self.cfg
        if cfg.tie_word_embeddings:
            w = self.embed[...].astype(cfg.dtype)
            out = jnp.einsum("...d,vd->...v", hidden, w, preferred_element_type=jnp.float32)
        else:
            w = self.lm_head[...].astype(cfg.dtype)
            out = jnp.einsum("...d,dv->...v", hidden, w, preferred_element_type=jnp.float32)
        return constrain(out, self.rules, ("batch", "seq", "act_vocab")[-out.ndim:])

    def token_stats(self, hidden: jax.Array, targets: jax.Array, temperature: float = 1.0):
        """(log-probability, entropy, target-is-argmax) f32[B, T] of targets i32[B, T] given hidden [B, T, D],
        chunked over positions (`cfg.logprob_chunk`) so the [B, T, V] logits never exist at once."""
        return token_stats(self.logits, hidden, targets, temperature=temperature, chunk=self.cfg.logprob_chunk)

    def __call__(self, tokens, positions, cache: KVCache | None = None, offsets=None, *, remat: Remat = "none",
                 segments=None):
        hidden, cache = self.hidden_states(tokens, positions, cache, offsets, remat=remat, segments=segments)
        return self.logits(hidden), cache
