"""Rollout throughput: prefill and decode tokens/s, and what a tool turn costs when its tokens are
spliced with one `extend` call versus re-prefilling the whole context (as agentic loops that re-render
the conversation do). All variants run in one process with the same shapes, side by side: each timing
round runs every variant once, and each figure is the median over the rounds."""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ascl_jax.bench.timing import interleaved_seconds
from ascl_jax.models.registry import load_model
from ascl_jax.rollout.engine import StopTokens, decode_chunk, extend, prefill
from ascl_jax.rollout.sampling import row_keys
from ascl_jax.rollout.shapes import bucket
from ascl_jax.rollout.sampling import SamplingConfig


def bench_rollout(
    model_name: str,
    batch: int = 8,
    prompt_len: int = 64,
    new_tokens: int = 128,
    splice_len: int = 128,
    greedy: bool = True,
    repeats: int = 3,
    dtype: str | None = None,
) -> dict:
    """Times, on `batch` random prompts of `prompt_len` tokens with EOS ignored: prefill; decode; a
    single-turn rollout that samples `new_tokens` tokens; and the same rollout with one tool turn of
    `splice_len` tokens half way, spliced with `extend` or by re-prefilling the whole context; decode also
    with every step reading the whole cache (`decode_full_cache_tokens_per_s`), the engine before its
    decode read only up to the longest running row. Returns a
    JSON-ready dict; `tool_turn_ratio_extend` is the tool-turn rollout's median time over the single-turn
    one's (both sample `new_tokens` tokens), `tool_turn_ratio_reprefill` the same with the re-prefill, and
    `tool_turn_ratio_extend_full_cache` the extend's ratio when both decode against the whole cache. The
    windowed ratio is above the full-cache one because after the splice every decode step reads
    `splice_len` more keys than the single turn's does: a cost of the longer context, not of the splice."""
    model = load_model(model_name, dtype=dtype)
    cfg, g, p = model.config, model.graphdef, model.params
    sampling = SamplingConfig(greedy=greedy)
    stops = StopTokens(eos=())  # EOS ignored: every row generates exactly new_tokens
    capacity = bucket(prompt_len + new_tokens + splice_len + 1)
    rng = np.random.RandomState(0)
    prompts = jnp.asarray(rng.randint(0, cfg.vocab_size, (batch, prompt_len)), jnp.int32)
    lens = jnp.full((batch,), prompt_len, jnp.int32)
    keys = row_keys(0, np.arange(batch))
    limit = jnp.full((batch,), capacity, jnp.int32)
    splice = jnp.asarray(rng.randint(0, cfg.vocab_size, (batch, splice_len)), jnp.int32)
    splice_lens = jnp.full((batch,), splice_len, jnp.int32)
    half = new_tokens // 2

    def start(tokens=prompts, lengths=lens):
        return prefill(g, p, tokens, lengths, keys, limit, cfg=cfg, group_size=1, capacity=capacity,
                       sampling=sampling, stops=stops)

    def decode(state, n, windowed=True):
        return decode_chunk(g, p, state, n_steps=n, sampling=sampling, stops=stops, windowed=windowed)[0]

    def single_turn(windowed=True):
        return decode(start(), new_tokens - 1, windowed)

    def tool_turn_extend(windowed=True):
        state = decode(start(), half - 1, windowed)
        state, _ = extend(g, p, state, splice, splice_lens, sampling=sampling, stops=stops)
        return decode(state, new_tokens - half - 1, windowed)

    reprefill_len = bucket(prompt_len + half + splice_len)

    def tool_turn_reprefill():
        state = decode(start(), half - 1)
        # re-render: the whole context so far plus the tool text, prefilled from scratch
        ctx = jnp.concatenate([state.tokens[:, : prompt_len + half], splice], axis=1)
        ctx = jnp.pad(ctx, ((0, 0), (0, reprefill_len - ctx.shape[1])))
        state = start(ctx, jnp.full((batch,), prompt_len + half + splice_len, jnp.int32))
        return decode(state, new_tokens - half - 1)

    with jax.set_mesh(model.mesh):
        first = start()
        jax.block_until_ready(first)

        def decode_only():
            return decode(jax.tree.map(jnp.copy, first), new_tokens - 1)

        def decode_full():
            return decode(jax.tree.map(jnp.copy, first), new_tokens - 1, windowed=False)

        times = interleaved_seconds({"prefill": start, "decode": decode_only, "decode_full": decode_full,
                                     "single": single_turn, "extend": tool_turn_extend,
                                     "reprefill": tool_turn_reprefill,
                                     "single_full": lambda: single_turn(False),
                                     "extend_full": lambda: tool_turn_extend(False)}, repeats)
        out = single_turn()
    t_prefill, t_decode, t_full, t_single, t_extend, t_reprefill, t_single_full, t_extend_full = (
        statistics.median(times[k]) for k in ("prefill", "decode", "decode_full", "single", "extend", "reprefill",
                                              "single_full", "extend_full"))
    # The same ratio within each round (the two rollouts timed moments apart): its quartiles show how far
    # the machine's noise reaches, and stay put when the load swings between rounds.
    ratios = [e / s for e, s in zip(times["extend"], times["single"])]
    quartiles = [round(float(q), 3) for q in np.percentile(ratios, [25, 50, 75])]
    assert int(out.seq_len[0]) == prompt_len + new_tokens
    return {
        "bench": "rollout",
        "model": model_name,
        "params": cfg.num_params,
        "dtype": cfg.dtype,
        "batch": batch,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "splice_len": splice_len,
        "capacity": capacity,
        "greedy": greedy,
        "devices": len(model.mesh.devices.flat),
        "prefill_tokens_per_s": round(batch * prompt_len / t_prefill, 1),
        "decode_tokens_per_s": round(batch * (new_tokens - 1) / t_decode, 1),
        "decode_ms_per_step": round(1000 * t_decode / (new_tokens - 1), 3),
        # the same decode with every step reading the whole cache (capacity), as before windowing
        "decode_full_cache_tokens_per_s": round(batch * (new_tokens - 1) / t_full, 1),
        "windowed_over_full_cache": round(t_full / t_decode, 3),
        "single_turn_seconds": round(t_single, 4),
        "tool_turn_extend_seconds": round(t_extend, 4),
        "tool_turn_reprefill_seconds": round(t_reprefill, 4),
        "tool_turn_ratio_extend": round(t_extend / t_single, 3),
        "tool_turn_ratio_reprefill": round(t_reprefill / t_single, 3),
        "tool_turn_ratio_extend_per_round": quartiles,
        # Both rollouts decoding against the whole cache: the tool turn's extra context then costs its decode
        # steps nothing, so this ratio is the splice's own price (and what the ratio was before windowing).
        "tool_turn_ratio_extend_full_cache": round(t_extend_full / t_single_full, 3),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
