"""Continuous batching against the dense static batch on a long-tailed length distribution.

Every row's stop is given as its own length limit (EOS ignored), drawn so that most rows end early and a
few run to the budget: 70% stop within 15% of it, 25% between, 5% reach it. Both engines therefore do
exactly the same work; the static one holds every row for the whole batch (slots = rows) and the
continuous one streams them through fewer slots, refilling each as its row ends. Both run in one process,
timed in the same rounds (median of the rounds)."""

from __future__ import annotations

import statistics
import time

import numpy as np

from ascl_jax.bench.timing import interleaved_seconds
from ascl_jax.models.registry import load_model
from ascl_jax.rollout.engine import StopTokens
from ascl_jax.rollout.sampling import SamplingConfig, row_keys
from ascl_jax.rollout.shapes import bucket
from ascl_jax.rollout.slots import stream_rows


def longtail_lengths(rows: int, budget: int, rng: np.random.RandomState) -> np.ndarray:
    """i64[rows] new-token counts in [1, budget]: 70% within 15% of `budget`, 25% above, 5% at it."""
    short = max(1, int(0.15 * budget))
    kind = rng.choice(3, size=rows, p=[0.70, 0.25, 0.05])
    lengths = np.where(kind == 0, rng.randint(1, short + 1, rows), rng.randint(short + 1, budget + 1, rows))
    return np.where(kind == 2, budget, lengths).astype(np.int64)


def bench_longtail(
    model_name: str,
    batch: int = 64,
    group_size: int = 4,
    prompt_len: int = 64,
    new_tokens: int = 512,
    slots: int | None = None,
    chunk: int = 32,
    greedy: bool = True,
    repeats: int = 3,
    dtype: str | None = None,
    seed: int = 0,
) -> dict:
    """`batch` rows (`batch / group_size` random prompts of `prompt_len` tokens) with long-tailed lengths up
    to `new_tokens`, through the static engine and through `slots` slots (default batch / 4). Returns a
    JSON-ready dict: `continuous_over_static` (throughput ratio), `kv_cache_ratio` (peak KV-cache bytes,
    continuous over static), `tokens_identical` (every row's tokens equal in both)."""
    if batch % group_size:
        raise ValueError(f"batch ({batch}) must be a multiple of group_size ({group_size})")
    slots = slots or max(group_size, batch // 4 // group_size * group_size)
    model = load_model(model_name, dtype=dtype)
    cfg = model.config
    rng = np.random.RandomState(seed)
    prompts = [rng.randint(0, cfg.vocab_size, prompt_len).tolist() for _ in range(batch // group_size)]
    lengths = longtail_lengths(batch, new_tokens, rng)
    capacity = bucket(prompt_len) + bucket(new_tokens)
    keys = row_keys(seed, np.arange(batch))
    sampling = SamplingConfig(greedy=greedy)
    runs: dict[str, tuple] = {}

    def run(name, n_slots):
        def go():
            runs[name] = stream_rows(model, prompts, group_size=group_size, limits=prompt_len + lengths, keys=keys,
                                     slots=n_slots, capacity=capacity, chunk=chunk, prompt_bucket=64,
                                     sampling=sampling, stops=StopTokens(eos=()))
            return None
        return go

    times = interleaved_seconds({"static": run("static", batch), "continuous": run("continuous", slots)}, repeats)
    t_static, t_cont = (statistics.median(times[k]) for k in ("static", "continuous"))
    (out_s, st_s), (out_c, st_c) = runs["static"], runs["continuous"]
    generated = int(lengths.sum())
    assert all(len(out_s[r].tokens) == prompt_len + lengths[r] for r in range(batch))
    identical = all(np.array_equal(out_s[r].tokens, out_c[r].tokens) for r in range(batch))
    ratios = [s / c for s, c in zip(times["static"], times["continuous"])]

    def side(t, st):
        return {"seconds": round(t, 4), "tokens_per_s": round(generated / t, 1), "slots": st.slots,
                "kv_cache_bytes": st.kv_cache_bytes, "occupancy": round(st.occupancy, 3),
                "decode_steps": st.decode_steps, "admissions": st.admissions,
                "prefill_seconds": round(st.prefill_seconds, 4), "decode_seconds": round(st.decode_seconds, 4)}

    return {
        "bench": "rollout",
        "workload": "longtail",
        "model": model_name,
        "params": cfg.num_params,
        "dtype": cfg.dtype,
        "rows": batch,
        "group_size": group_size,
        "prompt_len": prompt_len,
        "budget": new_tokens,
        "capacity": capacity,
        "generated_tokens": generated,
        "length_quartiles": [int(q) for q in np.percentile(lengths, [25, 50, 75])],
        "rows_at_budget": int((lengths == new_tokens).sum()),
        "greedy": greedy,
        "devices": len(model.mesh.devices.flat),
        "static": side(t_static, st_s),
        "continuous": side(t_cont, st_c),
        "continuous_over_static": round(t_static / t_cont, 3),
        "continuous_over_static_per_round": [round(float(q), 3) for q in np.percentile(ratios, [25, 50, 75])],
        "kv_cache_ratio": round(st_c.kv_cache_bytes / st_s.kv_cache_bytes, 3),
        "tokens_identical": identical,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
