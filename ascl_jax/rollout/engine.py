"""Device side of the rollout: jitted, pure `prefill`, `extend` and `decode_chunk`.

State layout. Each row has a sequence buffer `tokens[b, :seq_len[b]]` aligned with its KV-cache slots:
the prompt, then every sampled or spliced token in order. The cache holds the first `seq_len - 1` of
them; the last one (just sampled, not yet fed) is pending. A decode step feeds the pending token at
slot `seq_len - 1`, samples the next one into slot `seq_len`, and advances `seq_len` by one. So rows
move independently, and a tool turn appends its tokens at each row's own offset with one `extend`.
`sampled[b, s]` marks the tokens the policy drew (the loss mask), `logprobs[b, s]` their sampler
log-probabilities.

Slots. The state's B rows are slots: `admit` prefills new prompts into free ones (stop == IDLE or a
finished row the host has read out) while the others keep decoding, so a batch larger than B streams
through them (`rollout/slots.py` schedules it); `prefill` is the dense case, every row admitted at once.

Randomness: every row carries its own key, folded with the position it is sampling into, so a row's
draws do not depend on batch composition, slot, sharding or process layout.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from ascl_jax.models.config import ModelConfig
from ascl_jax.models.decoder import CACHE_AXES, KVCache, init_cache
from ascl_jax.parallel.sharding import ShardingRules, constrain
from ascl_jax.rollout.sampling import SamplingConfig, sample

RUNNING, STOP_EOS, STOP_TOOL_CALL, STOP_LENGTH, IDLE = 0, 1, 2, 3, 4
STOP_NAMES = {RUNNING: "running", STOP_EOS: "eos", STOP_TOOL_CALL: "tool_call", STOP_LENGTH: "length", IDLE: "idle"}


@dataclass(frozen=True)
class StopTokens:
    """What ends a turn: a token in `eos` ends the episode; a sampled token sequence that completes one
    of `tool_call_end` (e.g. the single id of `</tool_call>`, or its several ids in a vocabulary without
    that token) hands the row to the host for a tool turn."""

    eos: tuple[int, ...]
    tool_call_end: tuple[tuple[int, ...], ...] = ()


def _ends_with(tokens: jax.Array, last: jax.Array, seq: tuple[int, ...]) -> jax.Array:
    """bool[B]: tokens[b, last[b]-len(seq)+1 .. last[b]] == seq."""
    n = len(seq)
    idx = last[:, None] - (n - 1) + jnp.arange(n)[None, :]
    window = jnp.take_along_axis(tokens, jnp.clip(idx, 0, tokens.shape[1] - 1), axis=1)
    return jnp.all(window == jnp.asarray(seq, jnp.int32)[None, :], axis=1) & (idx[:, 0] >= 0)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class DecodeState:
    """Per-row decoding state; every array's leading axis is the batch B, S is the capacity."""

    cache: KVCache
    tokens: jax.Array  # i32[B, S]
    sampled: jax.Array  # bool[B, S]: drawn by the policy (loss mask)
    logprobs: jax.Array  # f32[B, S]: sampler log-probabilities at sampled slots, 0 elsewhere
    seq_len: jax.Array  # i32[B]: tokens in the buffer; the cache holds seq_len - 1
    limit: jax.Array  # i32[B]: a row stops with STOP_LENGTH when seq_len reaches it
    stop: jax.Array  # i32[B]: RUNNING or the reason the row stopped
    row_keys: jax.Array  # key[B]

    @property
    def capacity(self) -> int:
        return self.tokens.shape[1]


def _forward(graphdef: nnx.GraphDef, params: nnx.State, tokens, positions, cache, offsets, select=None,
             reach=None):
    model = nnx.merge(graphdef, params)
    hidden, cache = model.hidden_states(tokens, positions, cache, offsets, select, reach=reach)
    return model, hidden, cache


def _placed(state: DecodeState, rules: ShardingRules) -> DecodeState:
    """`state` with every array's rows over the batch axes (the cache as the model lays it out).

    Fixed placement means the same layout after prefill, decode and extend (no recompiles), a KV cache
    never replicated on every device, and the same rows on the same process throughout a rollout, which
    the multi-process host loop relies on."""
    rows = lambda x: constrain(x, rules, ("batch",) + (None,) * (x.ndim - 1))  # noqa: E731
    cache = KVCache(k=constrain(state.cache.k, rules, CACHE_AXES), v=constrain(state.cache.v, rules, CACHE_AXES))
    return DecodeState(cache, rows(state.tokens), rows(state.sampled), rows(state.logprobs), rows(state.seq_len),
                       rows(state.limit), rows(state.stop), rows(state.row_keys))


def _sample_into(state: DecodeState, logits, rows, sampling: SamplingConfig, stops: StopTokens) -> DecodeState:
    """Sample one token for each row in `rows` (bool[B]) from logits f32[B,V] into slot seq_len."""
    slot = state.seq_len
    keys = jax.vmap(jax.random.fold_in)(state.row_keys, slot)
    tok, lp = sample(logits, keys, sampling)
    b = jnp.arange(tok.shape[0])
    slot_c = jnp.minimum(slot, state.capacity - 1)
    tokens = state.tokens.at[b, slot_c].set(jnp.where(rows, tok, state.tokens[b, slot_c]))
    sampled = state.sampled.at[b, slot_c].set(jnp.where(rows, True, state.sampled[b, slot_c]))
    logprobs = state.logprobs.at[b, slot_c].set(jnp.where(rows, lp, state.logprobs[b, slot_c]))
    seq_len = state.seq_len + rows.astype(jnp.int32)
    is_eos = jnp.isin(tok, jnp.asarray(stops.eos, jnp.int32)) if stops.eos else jnp.zeros_like(rows)
    is_tool = jnp.zeros_like(rows)
    for seq in stops.tool_call_end:
        is_tool = is_tool | _ends_with(tokens, slot_c, seq)
    full = seq_len >= state.limit
    reason = jnp.where(is_eos, STOP_EOS, jnp.where(is_tool, STOP_TOOL_CALL, jnp.where(full, STOP_LENGTH, RUNNING)))
    stop = jnp.where(rows, reason, state.stop)
    return DecodeState(state.cache, tokens, sampled, logprobs, seq_len, state.limit, stop, state.row_keys)


def _idle_state(cfg: ModelConfig, slots: int, capacity: int) -> DecodeState:
    return DecodeState(
        cache=init_cache(cfg, slots, capacity),
        tokens=jnp.zeros((slots, capacity), jnp.int32),
        sampled=jnp.zeros((slots, capacity), bool),
        logprobs=jnp.zeros((slots, capacity), jnp.float32),
        seq_len=jnp.ones((slots,), jnp.int32),
        limit=jnp.ones((slots,), jnp.int32),
        stop=jnp.full((slots,), IDLE, jnp.int32),
        row_keys=jax.vmap(jax.random.key)(jnp.zeros((slots,), jnp.uint32)),
    )


def _admit(graphdef, params, state: DecodeState, prompts, prompt_lens, slot_ids, row_keys, limit, *, cfg,
           group_size, sampling, stops) -> DecodeState:
    p, length = prompts.shape
    cache = init_cache(cfg, p, length)
    positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (p, length))
    # Only each prompt's last position is sampled from: the last layer and the logits run on it alone.
    model, hidden, cache = _forward(graphdef, params, prompts, positions, cache, jnp.zeros((p,), jnp.int32),
                                    select=prompt_lens - 1)
    logits = model.logits(hidden[:, 0])
    n = p * group_size
    rep = functools.partial(jnp.repeat, repeats=group_size, axis=0, total_repeat_length=n)
    capacity = state.capacity
    # The admitted rows alone first (the prompt's cache is shared by its samples through the repeat).
    seq_len = rep(prompt_lens).astype(jnp.int32)
    limit = jnp.minimum(limit, capacity).astype(jnp.int32)
    new = DecodeState(
        cache=KVCache(k=cache.k[:, :0], v=cache.v[:, :0]),  # not used by sampling
        tokens=jnp.zeros((n, capacity), jnp.int32).at[:, :length].set(rep(prompts)),
        sampled=jnp.zeros((n, capacity), bool),
        logprobs=jnp.zeros((n, capacity), jnp.float32),
        seq_len=seq_len,
        limit=limit,
        stop=jnp.where(seq_len >= limit, STOP_LENGTH, RUNNING).astype(jnp.int32),
        row_keys=row_keys,
    )
    new = _sample_into(new, rep(logits), new.stop == RUNNING, sampling, stops)
    # Then into their slots; padding entries of `slot_ids` (>= the slot count) are dropped.
    put = lambda old, x: old.at[slot_ids].set(x, mode="drop")  # noqa: E731
    # The cache is filled slot by slot from the prompt each slot takes (a gather of the small prompt
    # cache, then a select along the slots): a scatter of new rows along the row-sharded axis would make
    # the partitioner materialise the repeated rows whole on every chip.
    slots = state.tokens.shape[0]
    source = jnp.full((slots,), -1, jnp.int32).at[slot_ids].set(jnp.arange(n, dtype=jnp.int32), mode="drop")
    taken = (source >= 0)[None, :, None, None, None]
    prompt_of = jnp.maximum(source, 0) // group_size

    def fill(old, prompt_cache):
        window = jax.lax.slice_in_dim(old, 0, length, axis=2)
        new_rows = jnp.take(prompt_cache, prompt_of, axis=1)
        return jax.lax.dynamic_update_slice_in_dim(old, jnp.where(taken, new_rows, window), 0, axis=2)

    kv = [fill(state.cache.k, cache.k), fill(state.cache.v, cache.v)]
    return DecodeState(KVCache(*kv), put(state.tokens, new.tokens), put(state.sampled, new.sampled),
                       put(state.logprobs, new.logprobs), put(state.seq_len, new.seq_len),
                       put(state.limit, new.limit), put(state.stop, new.stop), put(state.row_keys, new.row_keys))


@functools.partial(jax.jit, static_argnames=("cfg", "slots", "capacity", "rules"))
def idle_state(*, cfg: ModelConfig, slots: int, capacity: int, rules: ShardingRules) -> DecodeState:
    """A decode state of `slots` empty rows (stop == IDLE) with `capacity` cache slots each, placed."""
    return _placed(_idle_state(cfg, slots, capacity), rules)


@functools.partial(jax.jit, static_argnames=("graphdef", "cfg", "group_size", "sampling", "stops"),
                   donate_argnames=("state",))
def admit(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    state: DecodeState,
    prompts: jax.Array,
    prompt_lens: jax.Array,
    slot_ids: jax.Array,
    row_keys: jax.Array,
    limit: jax.Array,
    *,
    cfg: ModelConfig,
    group_size: int,
    sampling: SamplingConfig,
    stops: StopTokens,
) -> DecodeState:
    """Prefill new prompts into free slots of `state` and draw their first tokens; other slots are untouched.

    prompts i32[P, L] (right-padded, L <= capacity), prompt_lens i32[P] >= 1, slot_ids i32[P*G] (the slot
    of each new row; an id >= the slot count marks a padding row, dropped), row_keys key[P*G], limit
    i32[P*G] (max seq_len per row). Rows g*G .. g*G+G-1 are the samples of prompt g: one prefill, its
    cache copied into their G slots. Only an L-slot cache per prompt is made for the prefill; peak memory
    is the state plus that."""
    out = _admit(graphdef, params, state, prompts, prompt_lens, slot_ids, row_keys, limit, cfg=cfg,
                 group_size=group_size, sampling=sampling, stops=stops)
    return _placed(out, nnx.merge(graphdef, params).rules)


@functools.partial(jax.jit, static_argnames=("graphdef", "cfg", "group_size", "capacity", "sampling", "stops"))
def prefill(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    prompts: jax.Array,
    prompt_lens: jax.Array,
    row_keys: jax.Array,
    limit: jax.Array,
    *,
    cfg: ModelConfig,
    group_size: int,
    capacity: int,
    sampling: SamplingConfig,
    stops: StopTokens,
) -> DecodeState:
    """The dense start of a batch: every prompt admitted at once into a state of P*G rows.

    prompts i32[P, L] (right-padded, L <= capacity), prompt_lens i32[P] >= 1, row_keys key[P*G],
    limit i32[P*G] (max seq_len per row). Rows g*G .. g*G+G-1 are the samples of prompt g."""
    n = prompts.shape[0] * group_size
    rules = nnx.merge(graphdef, params).rules
    state = _placed(_idle_state(cfg, n, capacity), rules)
    out = _admit(graphdef, params, state, prompts, prompt_lens, jnp.arange(n, dtype=jnp.int32), row_keys, limit,
                 cfg=cfg, group_size=group_size, sampling=sampling, stops=stops)
    return _placed(out, rules)


@functools.partial(jax.jit, static_argnames=("graphdef", "n_steps", "sampling", "stops", "windowed"),
                   donate_argnames=("state",))
def decode_chunk(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    state: DecodeState,
    min_free: jax.Array | int | None = None,
    *,
    n_steps: int,
    sampling: SamplingConfig,
    stops: StopTokens,
    windowed: bool = True,
) -> tuple[DecodeState, jax.Array]:
    """At most `n_steps` decode steps over every running row; a row stops on EOS, a tool-call end token or
    its limit. The loop returns early once no row is running, or once `min_free` (i32[]; default: never)
    rows are not running, so that the host can refill finished slots or answer tool calls.

    With `windowed`, each step's attention reads the cache only up to the longest running row (one of
    `attention_windows`, picked at run time); finished and empty rows neither widen it nor write their
    cache. Returns (state, i32[2]: steps run, running row-steps), the latter for slot occupancy."""
    bsz = state.tokens.shape[0]
    min_free = jnp.int32(bsz + 1) if min_free is None else jnp.asarray(min_free, jnp.int32)

    def cond(carry):
        i, s, _ = carry
        running = s.stop == RUNNING
        return (i < n_steps) & jnp.any(running) & (jnp.sum(~running) < min_free)

    def body(carry):
        i, s, busy = carry
        running = s.stop == RUNNING
        b = jnp.arange(bsz)
        offset = s.seq_len - 1
        pending = s.tokens[b, offset]
        reach = None
        if windowed:
            # Rows that are not running write nowhere (past the end: dropped) and set no reach.
            offset = jnp.where(running, offset, s.capacity)
            reach = jnp.max(jnp.where(running, s.seq_len, 0))
        model, hidden, cache = _forward(graphdef, params, pending[:, None], offset[:, None], s.cache, offset,
                                        reach=reach)
        logits = model.logits(hidden[:, 0])
        s = DecodeState(cache, s.tokens, s.sampled, s.logprobs, s.seq_len, s.limit, s.stop, s.row_keys)
        return i + 1, _sample_into(s, logits, running, sampling, stops), busy + jnp.sum(running, dtype=jnp.int32)

    rules = nnx.merge(graphdef, params).rules
    steps, state, busy = jax.lax.while_loop(cond, body, (jnp.int32(0), _placed(state, rules), jnp.int32(0)))
    return _placed(state, rules), jnp.stack([steps, busy])


@functools.partial(jax.jit, static_argnames=("graphdef", "sampling", "stops"), donate_argnames=("state",))
def extend(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    state: DecodeState,
    new_tokens: jax.Array,
    new_lens: jax.Array,
    *,
    sampling: SamplingConfig,
    stops: StopTokens,
) -> tuple[DecodeState, jax.Array]:
    """Append new_tokens i32[B, E] (first new_lens[b] of them) after each row's pending token, run them
    through the model at the row's own offset, and sample the row's next token.

    Rows with new_lens == 0 are untouched (their cache writes go past its end and are dropped). The
    appended tokens are not marked as sampled. Returns (state, logits f32[B, V] of each row's last appended
    token). The caller guarantees seq_len + E <= capacity for extended rows. Attention reads the cache only
    up to the furthest slot fed in an extended row (see `attention_windows`), and the last layer and the
    vocabulary projection run on one position per row."""
    bsz, e = new_tokens.shape
    b = jnp.arange(bsz)
    rows = new_lens > 0
    offset = state.seq_len - 1
    pending = state.tokens[b, offset]
    fed = jnp.concatenate([pending[:, None], new_tokens], axis=1)  # [B, E+1]
    positions = offset[:, None] + jnp.arange(e + 1, dtype=jnp.int32)[None, :]
    reach = jnp.max(jnp.where(rows, state.seq_len + new_lens, 1))
    # Only each row's last appended token is sampled from: the last layer and the logits run on it alone.
    model, hidden, cache = _forward(graphdef, params, fed, positions, state.cache,
                                    jnp.where(rows, offset, state.capacity), select=new_lens, reach=reach)
    logits = model.logits(hidden[:, 0])

    slots = state.seq_len[:, None] + jnp.arange(e)[None, :]
    valid = rows[:, None] & (jnp.arange(e)[None, :] < new_lens[:, None])
    slots = jnp.where(valid, slots, state.capacity)  # out-of-range writes are dropped
    tokens = state.tokens.at[b[:, None], slots].set(new_tokens, mode="drop")
    sampled = state.sampled.at[b[:, None], slots].set(False, mode="drop")
    logprobs = state.logprobs.at[b[:, None], slots].set(0.0, mode="drop")
    seq_len = state.seq_len + jnp.where(rows, new_lens, 0)
    stop = jnp.where(rows, jnp.where(seq_len >= state.limit, STOP_LENGTH, RUNNING), state.stop)
    s = DecodeState(cache, tokens, sampled, logprobs, seq_len, state.limit, stop, state.row_keys)
    return _placed(_sample_into(s, logits, rows & (stop == RUNNING), sampling, stops), model.rules), logits
