"""One Flax NNX decoder for Llama 3.x, Qwen2/2.5, Qwen3 and SmolLM2.

Differences between the families are config flags: q/k/v bias (Qwen2), q/k RMSNorm (Qwen3), tied
embeddings (SmolLM2, small Qwen), RoPE scaling (Llama 3.1). Parameters carry their logical axes as
metadata (`logical_axes`), which `ascl_jax.parallel.ShardingRules` turns into shardings.

The forward takes a KV cache and a write offset per row: the tokens of row b are written at cache
slots offsets[b] .. offsets[b]+T-1 (those past the end are dropped) and attend to every slot up to their
own. Rows therefore advance independently, which is what the rollout engine needs when a tool turn is
spliced into some rows only. A forward of several tokens per row reads only the prefix of the cache its
queries can see (`attention_windows`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from ascl_jax.models.config import ModelConfig
from ascl_jax.models.rope import apply_rope, inverse_frequencies, rope_tables
from ascl_jax.parallel.sharding import ShardingRules, constrain

_INIT_STD = 0.02


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class KVCache:
    """Per-layer keys and values, each [B, S, num_kv_heads, head_dim] in the compute dtype.

    Slots beyond a row's written length hold stale values; causality by slot index keeps them unread."""

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]

    @property
    def capacity(self) -> int:
        return self.k[0].shape[1]

    @property
    def batch_size(self) -> int:
        return self.k[0].shape[0]


CACHE_AXES = ("batch", "cache_seq", "act_kv_heads", "head_dim")


def init_cache(config: ModelConfig, batch_size: int, capacity: int) -> KVCache:
    """An all-zero cache of `capacity` slots per row (call inside jit with out_shardings to place it)."""
    shape = (batch_size, capacity, config.num_kv_heads, config.head_dim)
    dtype = jnp.dtype(config.dtype)
    zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
    return KVCache(k=zeros, v=tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers)))


def _param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str, ...], dtype: str, init: str) -> nnx.Param:
    if init == "normal":
        value = _INIT_STD * jax.random.normal(rngs.params(), shape, jnp.float32)
    elif init == "ones":
        value = jnp.ones(shape, jnp.float32)
    else:
        value = jnp.zeros(shape, jnp.float32)
    return nnx.Param(value.astype(dtype), logical_axes=axes)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, dtype: str, param_dtype: str, axis_name: str, *, rngs: nnx.Rngs):
        self.scale = _param(rngs, (dim,), (axis_name,), param_dtype, "ones")
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        # Statistics in float32 and the cast back before the scale, as the HF reference does.
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(self.dtype) * xf.astype(self.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rules: ShardingRules, *, rngs: nnx.Rngs):
        d, h, kv, hd, pd = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.param_dtype
        self.q_proj = _param(rngs, (d, h * hd), ("embed", "heads"), pd, "normal")
        self.k_proj = _param(rngs, (d, kv * hd), ("embed", "kv_heads"), pd, "normal")
        self.v_proj = _param(rngs, (d, kv * hd), ("embed", "kv_heads"), pd, "normal")
        self.o_proj = _param(rngs, (h * hd, d), ("heads", "embed"), pd, "normal")
        if cfg.attention_bias:
            self.q_bias = _param(rngs, (h * hd,), ("heads",), pd, "zeros")
            self.k_bias = _param(rngs, (kv * hd,), ("kv_heads",), pd, "zeros")
            self.v_bias = _param(rngs, (kv * hd,), ("kv_heads",), pd, "zeros")
        if cfg.qk_norm:
            self.q_norm = RMSNorm(hd, cfg.rms_norm_eps, cfg.dtype, pd, "head_dim", rngs=rngs)
            self.k_norm = RMSNorm(hd, cfg.rms_norm_eps, cfg.dtype, pd, "head_dim", rngs=rngs)
        self.cfg = cfg
        self.rules = rules

    def _project(self, x: jax.Array, kernel: nnx.Param, bias_name: str, heads: int) -> jax.Array:
        y = x @ kernel[...].astype(self.cfg.dtype)
        if self.cfg.attention_bias:
            y = y + getattr(self, bias_name)[...].astype(self.cfg.dtype)
        return y.reshape(*x.shape[:2], heads, self.cfg.head_dim)

    def __call__(self, x, cos, sin, cache_k, cache_v, offsets, select=None):
        """x [B, T, D] -> (out [B, Tq, D], updated keys, values or None without a cache). Keys and values
        are made for all T positions; queries for all of them (Tq = T), or with `select` i32[B] for
        position select[b] of each row alone (Tq = 1)."""
        cfg, rules = self.cfg, self.rules
        t = x.shape[1]
        k = self._project(x, self.k_proj, "k_bias", cfg.num_kv_heads)
        v = self._project(x, self.v_proj, "v_bias", cfg.num_kv_heads)
        query_pos = jnp.arange(t)[None, :]  # [1 or B, Tq]: positions among the T fed
        cos_q, sin_q, x_q = cos, sin, x
        if select is not None:
            query_pos = select[:, None]
            cos_q, sin_q, x_q = (jnp.take_along_axis(a, query_pos[:, :, None], axis=1) for a in (cos, sin, x))
        q = self._project(x_q, self.q_proj, "q_bias", cfg.num_heads)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos_q, sin_q), apply_rope(k, cos, sin)
        q = constrain(q, rules, ("batch", "seq", "act_heads", "head_dim"))

        if cache_k is None:  # plain causal forward over the given tokens
            out = _attend(q, k, v, jnp.arange(t)[None, None, :] <= query_pos[:, :, None], cfg)
            return out @ self.o_proj[...].astype(cfg.dtype), None, None

        keys = _write_rows(cache_k, k.astype(cache_k.dtype), offsets)
        values = _write_rows(cache_v, v.astype(cache_v.dtype), offsets)
        keys = constrain(keys, rules, CACHE_AXES)
        values = constrain(values, rules, CACHE_AXES)
        query_slot = offsets[:, None] + query_pos  # [B, Tq]

        def attend_window(width, q, keys, values, query_slot):
            # Only slots [0, width) can be read by these queries: the rest of the cache is skipped, not masked.
            mask = jnp.arange(width)[None, None, :] <= query_slot[:, :, None]  # [B, Tq, width]
            return _attend(q, keys[:, :width], values[:, :width], mask, cfg)

        widths = attention_windows(keys.shape[1]) if t > 1 else (keys.shape[1],)
        if len(widths) == 1:
            out = attend_window(widths[0], q, keys, values, query_slot)
        else:
            # The smallest window holding the furthest query's slot, picked at run time: one compiled program
            # serves every offset, and an extend or prefill near the start of the cache reads only that part.
            # Slots past the reach are masked for every query, so any covering window gives the same result
            # (up to float rounding).
            reach = jnp.max(query_slot) + 1
            index = jnp.minimum(jnp.searchsorted(jnp.asarray(widths), reach), len(widths) - 1)
            branches = [functools.partial(attend_window, w) for w in widths]
            out = jax.lax.switch(index, branches, q, keys, values, query_slot)
        return out @ self.o_proj[...].astype(cfg.dtype), keys, values


def attention_windows(capacity: int) -> tuple[int, ...]:
    """Key-window widths (ascending, the last is `capacity`) among which a multi-token cached forward
    picks the smallest one covering its queries: multiples of a step of at least 64 slots, at most 4 of
    them. Each width is one more copy of the attention code per layer in the compiled program (prefill
    and extend compile in about 1.5x the time); more widths would skip more slots for more compile time."""
    step = max(64, -(-capacity // (4 * 64)) * 64)
    return tuple(range(step, capacity, step)) + (capacity,)


def _write_rows(cache: jax.Array, new: jax.Array, offsets: jax.Array) -> jax.Array:
    """cache [B, S, K, D] with new [B, T, K, D] written at slots offsets[b] .. offsets[b]+T-1 of row b;
    slots at or past S are dropped.

    Not `dynamic_update_slice`: it would shift a write that runs past the end back to S-T, over the row's
    valid slots. That happens to a row left out of an `extend` (padded, its writes never read) when it
    is near its end. On CPU the scatter costs about what the vmapped update slice did."""
    slots = offsets[:, None] + jnp.arange(new.shape[1])[None, :]  # [B, T]
    return cache.at[jnp.arange(cache.shape[0])[:, None], slots].set(new, mode="drop")


def _attend(q: jax.Array, keys: jax.Array, values: jax.Array, mask: jax.Array, cfg: ModelConfig) -> jax.Array:
    """Grouped-query attention: q [B, T, H, hd] over keys, values [B, S, KV, hd] where mask bool[B or 1, T, S]
    allows; returns [B, T, H*hd] in the compute dtype (scores and softmax in float32)."""
    b, t = q.shape[:2]
    s, kv, hd = keys.shape[1], cfg.num_kv_heads, cfg.head_dim
    group = cfg.num_heads // kv
    # Heads first, and a KV head's query heads and positions merged into one axis, so both products are
    # plain matmuls batched over (B, KV). With positions inside the batch dims ("btkgd,bskd->bkgts") XLA:CPU
    # transposes the [T, S] scores and probabilities around each product, which cost more than the
    # products themselves in a long extend.
    qh = q.reshape(b, t, kv, group, hd).transpose(0, 2, 3, 1, 4).reshape(b, kv, group * t, hd)
    kh = keys.astype(q.dtype).transpose(0, 2, 1, 3)  # [B, KV, S, hd]
    vh = values.astype(cfg.dtype).transpose(0, 2, 1, 3)
    scores = jnp.einsum("bkqd,bksd->bkqs", qh, kh, preferred_element_type=jnp.float32) * (hd**-0.5)
    scores = scores.reshape(b, kv, group, t, s)
    scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(cfg.dtype).reshape(b, kv, group * t, s)
    out = jnp.einsum("bkqs,bksd->bkqd", probs, vh)  # [B, KV, G*T, hd]
    return out.reshape(b, kv, group, t, hd).transpose(0, 3, 1, 2, 4).reshape(b, t, kv * group * hd)


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rules: ShardingRules, *, rngs: nnx.Rngs):
        d, f, pd = cfg.hidden_size, cfg.intermediate_size, cfg.param_dtype
        self.gate_proj = _param(rngs, (d, f), ("embed", "mlp"), pd, "normal")
        self.up_proj = _param(rngs, (d, f), ("embed", "mlp"), pd, "normal")
        self.down_proj = _param(rngs, (f, d), ("mlp", "embed"), pd, "normal")
        self.dtype = cfg.dtype
        self.rules = rules

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.silu(x @ self.gate_proj[...].astype(self.dtype)) * (x @ self.up_proj[...].astype(self.dtype))
        h = constrain(h, self.rules, ("batch", "seq", "act_mlp"))
        return h @ self.down_proj[...].astype(self.dtype)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rules: ShardingRules, *, rngs: nnx.Rngs):
        self.input_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, "norm", rngs=rngs)
        self.attn = Attention(cfg, rules, rngs=rngs)
        self.post_attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, "norm", rngs=rngs)
        self.mlp = MLP(cfg, rules, rngs=rngs)
        self.rules = rules

    def __call__(self, x, cos, sin, cache_k, cache_v, offsets, select=None):
        h, k, v = self.attn(self.input_norm(x), cos, sin, cache_k, cache_v, offsets, select)
        if select is not None:  # only these positions go on; the others' keys and values are made
            x = jnp.take_along_axis(x, select[:, None, None], axis=1)
        x = constrain(x + h, self.rules, ("batch", "seq", "act_embed"))
        x = x + self.mlp(self.post_attn_norm(x))
        return constrain(x, self.rules, ("batch", "seq", "act_embed")), k, v


class Decoder(nnx.Module):
    """Causal LM. Call: (tokens i32[B,T], positions i32[B,T], cache, offsets i32[B]) -> (logits f32[B,T,V], cache).

    Without a cache the forward is a plain causal pass over the T tokens (training). With a cache the
    new keys and values are written at each row's offset and the updated cache is returned."""

    def __init__(self, cfg: ModelConfig, rules: ShardingRules = ShardingRules(), *, rngs: nnx.Rngs):
        self.embed = _param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), cfg.param_dtype, "normal")
        self.layers = nnx.List([Block(cfg, rules, rngs=rngs) for _ in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, "norm", rngs=rngs)
        if not cfg.tie_word_embeddings:
            self.lm_head = _param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), cfg.param_dtype, "normal")
        self.cfg = cfg
        self.rules = rules

    def hidden_states(self, tokens, positions, cache: KVCache | None = None, offsets=None, select=None):
        """Final-norm hidden states [B, T, D] (compute dtype) and the updated cache.

        With `select` i32[B], only position select[b] of each row is returned ([B, 1, D]): the last layer
        then runs its queries, output projection and MLP on that position alone, while keys and values
        are still made (and cached) for every position. Sampling after a prefill or an extend needs no
        more, and the last layer's work on the other positions would be thrown away."""
        cfg = self.cfg
        x = jnp.take(self.embed[...], tokens, axis=0).astype(cfg.dtype)
        x = constrain(x, self.rules, ("batch", "seq", "act_embed"))
        inv_freq, attention_factor = inverse_frequencies(cfg.rope, cfg.head_dim)
        cos, sin = rope_tables(positions, inv_freq, attention_factor)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            ck = None if cache is None else cache.k[i]
            cv = None if cache is None else cache.v[i]
            x, k, v = layer(x, cos, sin, ck, cv, offsets, select if i == len(self.layers) - 1 else None)
            new_k.append(k)
            new_v.append(v)
        x = self.norm(x)
        return x, (None if cache is None else KVCache(k=tuple(new_k), v=tuple(new_v)))

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

    def __call__(self, tokens, positions, cache: KVCache | None = None, offsets=None):
        hidden, cache = self.hidden_states(tokens, positions, cache, offsets)
        return self.logits(hidden), cache
