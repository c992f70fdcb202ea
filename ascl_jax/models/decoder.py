"""One Flax NNX decoder for Llama 3.x, Qwen2/2.5, Qwen3 and SmolLM2.

Differences between the families are config flags: q/k/v bias (Qwen2), q/k RMSNorm (Qwen3), tied
embeddings (SmolLM2, small Qwen), RoPE scaling (Llama 3.1). Parameters carry their logical axes as
metadata (`logical_axes`), which `ascl_jax.parallel.ShardingRules` turns into shardings.

The forward takes a KV cache and a write offset per row: the tokens of row b are written at cache
slots offsets[b] .. offsets[b]+T-1 and attend to every slot up to their own. Rows therefore advance
independently, which is what the rollout engine needs when a tool turn is spliced into some rows only.
"""

from __future__ import annotations

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

    def __call__(self, x, cos, sin, cache_k, cache_v, offsets):
        cfg, rules = self.cfg, self.rules
        b, t, _ = x.shape
        q = self._project(x, self.q_proj, "q_bias", cfg.num_heads)
        k = self._project(x, self.k_proj, "k_bias", cfg.num_kv_heads)
        v = self._project(x, self.v_proj, "v_bias", cfg.num_kv_heads)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q = constrain(q, rules, ("batch", "seq", "act_heads", "head_dim"))

        if cache_k is None:  # plain causal forward over the given tokens
            keys, values = k, v
            slot = jnp.arange(t)
            mask = (slot[None, :] <= slot[:, None])[None]  # [1, T, S=T]
        else:
            write = jax.vmap(lambda c, n, o: jax.lax.dynamic_update_slice(c, n, (o, 0, 0)))
            keys = write(cache_k, k.astype(cache_k.dtype), offsets)
            values = write(cache_v, v.astype(cache_v.dtype), offsets)
            keys = constrain(keys, rules, CACHE_AXES)
            values = constrain(values, rules, CACHE_AXES)
            query_slot = offsets[:, None] + jnp.arange(t)[None, :]  # [B, T]
            mask = jnp.arange(keys.shape[1])[None, None, :] <= query_slot[:, :, None]  # [B, T, S]

        group = cfg.num_heads // cfg.num_kv_heads
        qg = q.reshape(b, t, cfg.num_kv_heads, group, cfg.head_dim)
        scores = jnp.einsum("btkgd,bskd->bkgts", qg, keys.astype(q.dtype), preferred_element_type=jnp.float32)
        scores = scores * (cfg.head_dim**-0.5)
        scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(cfg.dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, values.astype(cfg.dtype))
        out = out.reshape(b, t, cfg.num_heads * cfg.head_dim)
        y = out @ self.o_proj[...].astype(cfg.dtype)
        if cache_k is None:
            return y, None, None
        return y, keys, values


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

    def __call__(self, x, cos, sin, cache_k, cache_v, offsets):
        h, k, v = self.attn(self.input_norm(x), cos, sin, cache_k, cache_v, offsets)
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

    def hidden_states(self, tokens, positions, cache: KVCache | None = None, offsets=None):
        """Final-norm hidden states [B, T, D] (compute dtype) and the updated cache."""
        cfg = self.cfg
        x = jnp.take(self.embed[...], tokens, axis=0).astype(cfg.dtype)
        x = constrain(x, self.rules, ("batch", "seq", "act_embed"))
        inv_freq, attention_factor = inverse_frequencies(cfg.rope, cfg.head_dim)
        cos, sin = rope_tables(positions, inv_freq, attention_factor)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            ck = None if cache is None else cache.k[i]
            cv = None if cache is None else cache.v[i]
            x, k, v = layer(x, cos, sin, ck, cv, offsets)
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
