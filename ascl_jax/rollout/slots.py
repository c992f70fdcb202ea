"""Host side of continuous batching: the rows of a batch stream through a fixed number of decode slots.

Layout. The device state has `slots` rows (engine.DecodeState). `slot_row[s]` is the global row that slot
s holds (-1: free). Each host step:
  1. admit: while G slots are free and prompts wait, the next prompts are prefilled into free slots with
     one `admit` call (the G samples of a prompt share its prefill, so a prompt enters when G slots are
     free: with a few slots per prompt, admitting per sample would prefill a prompt G times);
  2. decode one chunk; it returns early once G rows are not running while prompts still wait, so a slot
     freed mid-chunk idles for at most the steps until G are free;
  3. `service` answers tool calls (the tool loop splices them with one `extend`);
  4. finished rows (EOS, length, or stopped by the host) are read out and their slots freed.
Memory is bounded by slots x capacity, not by the batch. A row's random stream depends on its global id
and position only, so the tokens of a row do not depend on the slot count (up to float rounding in the
batched products, which does not move a greedy choice on CPU in f32; see
tests/test_tool_loop.py::test_trajectories_do_not_depend_on_the_slot_count and
tests/test_kv_cache.py::test_generate_through_fewer_slots_gives_the_same_tokens).

Every process runs this loop in step: scheduling decisions use global views of the stop flags
(`to_host`), and each process reads out the rows its devices hold.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ascl_jax.errors import UserError
from ascl_jax.models.registry import LoadedModel
from ascl_jax.parallel.host import local_rows, owned_rows, read_local, to_host
from ascl_jax.rollout.engine import RUNNING, STOP_TOOL_CALL, DecodeState, StopTokens, admit, decode_chunk, idle_state
from ascl_jax.rollout.shapes import bucket
from ascl_jax.rollout.sampling import SamplingConfig

# (state, slot_row i64[slots], local slots i64[n]) -> (state, extend seconds or None when nothing was spliced)
ToolService = Callable[[DecodeState, np.ndarray, np.ndarray], tuple[DecodeState, float | None]]


@dataclass(frozen=True)
class RowOutput:
    """One finished row as read out of its slot: tokens i32[n] (prompt and everything after it),
    sampled bool[n] (drawn by the policy), logprobs f32[n], and the device stop code."""

    tokens: np.ndarray
    sampled: np.ndarray
    logprobs: np.ndarray
    stop: int


@dataclass(frozen=True)
class SlotStats:
    """Where a streamed rollout's time went and how full its slots were.

    occupancy: running row-steps over slots x decode steps (1.0: no slot ever idled); kv_cache_bytes: the
    KV-cache arrays alive at the peak (the slots' cache plus the largest admission's prompt cache and its
    per-sample copy), over all devices."""

    slots: int
    admissions: int
    decode_steps: int
    row_steps: int
    prefill_seconds: float
    decode_seconds: float
    extend_seconds: float
    extend_calls: int
    kv_cache_bytes: int

    @property
    def occupancy(self) -> float:
        return self.row_steps / max(1, self.slots * self.decode_steps)


def resolve_slots(slots: int, rows: int, group_size: int) -> int:
    """The slot count for a batch of `rows`: `slots` (0: all rows at once), at most `rows`."""
    if slots == 0 or slots >= rows:
        return rows
    if slots < group_size or slots % group_size:
        raise UserError(f"rollout.slots ({slots}) must be a multiple of rollout.group_size ({group_size}), or 0")
    return slots


def _kv_bytes(model: LoadedModel, rows: int, width: int) -> int:
    cfg = model.config
    return 2 * cfg.num_layers * rows * width * cfg.num_kv_heads * cfg.head_dim * np.dtype(cfg.dtype).itemsize


def stream_rows(
    model: LoadedModel,
    prompts: Sequence[Sequence[int]],
    *,
    group_size: int,
    limits: np.ndarray,
    keys: jax.Array,
    slots: int,
    capacity: int,
    chunk: int,
    prompt_bucket: int,
    sampling: SamplingConfig,
    stops: StopTokens,
    service: ToolService | None = None,
) -> tuple[dict[int, RowOutput], SlotStats]:
    """Roll out `group_size` rows per prompt (token ids) through `slots` slots of `capacity` cache slots.

    limits i32[P*G]: each row stops with reason length when its sequence reaches it (<= capacity);
    keys key[P*G]: each row's random key. Rows g*G .. g*G+G-1 are the samples of prompt g. Returns the
    rows this process owns (global row -> RowOutput) and the run's SlotStats."""
    g = group_size
    n_rows = len(prompts) * g
    slots = resolve_slots(slots, n_rows, g)
    lens = np.array([len(p) for p in prompts], np.int64)
    if int(lens.max()) > capacity or int(lens.min()) < 1:
        raise UserError(f"rollout: prompts must hold 1..{capacity} tokens, got {int(lens.min())}..{int(lens.max())}")
    limits = np.minimum(np.asarray(limits, np.int64), capacity)
    pad = model.config.pad_token_id or 0
    per_admission = slots // g
    mcfg, graphdef, params = model.config, model.graphdef, model.params

    waiting = deque(range(len(prompts)))
    slot_row = np.full(slots, -1, np.int64)
    out: dict[int, RowOutput] = {}
    admissions = steps = row_steps = extend_calls = 0
    t_prefill = t_decode = t_extend = 0.0
    peak_admission = 0
    with jax.set_mesh(model.mesh):
        state = idle_state(cfg=mcfg, slots=slots, capacity=capacity, rules=model.rules)
        mine = local_rows(state.stop.shape, state.stop.sharding)
        owned = set(owned_rows(state.stop.shape, state.stop.sharding).tolist())
        while True:
            free = np.flatnonzero(slot_row < 0)
            take = min(len(free) // g, len(waiting))
            if take:
                t0 = time.perf_counter()
                group = [waiting.popleft() for _ in range(take)]
                # Few shapes: the prompt count in powers of two up to a full admission, the length in buckets.
                p = min(1 << (take - 1).bit_length(), per_admission)
                length = min(bucket(int(lens[group].max()), prompt_bucket), capacity)
                batch = np.full((p, length), pad, np.int32)
                plens = np.ones(p, np.int32)
                for i, gid in enumerate(group):
                    batch[i, : lens[gid]] = prompts[gid]
                    plens[i] = lens[gid]
                rows = np.concatenate([np.arange(gid * g, gid * g + g) for gid in group])
                slot_ids = np.full(p * g, slots, np.int32)  # padding rows land past the end: dropped
                slot_ids[: len(rows)] = free[: len(rows)]
                picked = np.zeros(p * g, np.int64)
                picked[: len(rows)] = rows
                state = admit(graphdef, params, state, jnp.asarray(batch), jnp.asarray(plens), jnp.asarray(slot_ids),
                              keys[jnp.asarray(picked)], jnp.asarray(limits[picked].astype(np.int32)), cfg=mcfg,
                              group_size=g, sampling=sampling, stops=stops)
                slot_row[free[: len(rows)]] = rows
                jax.block_until_ready(state.stop)
                t_prefill += time.perf_counter() - t0
                admissions += 1
                peak_admission = max(peak_admission, _kv_bytes(model, p + p * g, length))
            if not waiting and (slot_row < 0).all():
                break
            t0 = time.perf_counter()
            state, counts = decode_chunk(graphdef, params, state, g if waiting else slots + 1, n_steps=chunk,
                                         sampling=sampling, stops=stops)
            counts = np.asarray(counts)
            t_decode += time.perf_counter() - t0
            steps, row_steps = steps + int(counts[0]), row_steps + int(counts[1])
            if service is not None:
                state, seconds = service(state, slot_row, mine)
                if seconds is not None:
                    t_extend, extend_calls = t_extend + seconds, extend_calls + 1
            stop = to_host(state.stop)
            done = np.flatnonzero((slot_row >= 0) & (stop != RUNNING) & (stop != STOP_TOOL_CALL))
            if len(done):
                arrays = [read_local(a) for a in (state.tokens, state.sampled, state.logprobs, state.seq_len)]
                tokens, sampled, logprobs, seq_len = arrays
                for s in done.tolist():
                    if s in owned:
                        n = int(seq_len[s])
                        out[int(slot_row[s])] = RowOutput(tokens[s, :n].astype(np.int32), sampled[s, :n].copy(),
                                                          logprobs[s, :n].astype(np.float32), int(stop[s]))
                slot_row[done] = -1
    stats = SlotStats(
        slots=slots, admissions=admissions, decode_steps=steps, row_steps=row_steps, prefill_seconds=t_prefill,
        decode_seconds=t_decode, extend_seconds=t_extend, extend_calls=extend_calls,
        kv_cache_bytes=_kv_bytes(model, slots, capacity) + peak_admission,
    )
    return out, stats

