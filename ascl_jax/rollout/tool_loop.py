"""Host side of the rollout: decode in chunks; rows that stopped on a tool call are parsed, the rules
are retrieved, and the tool-turn delta is spliced into every such row with one `extend` call; decoding
resumes from the same KV cache. A tool turn costs its new tokens only, never a re-prefill.

The rows stream through a fixed number of decode slots (`rollout/slots.py`). Shapes are bucketed
(prompt length, prompts per admission, extend length; slots and capacity are fixed by the config), so
a training run compiles a few programs once."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import jax
import numpy as np

from ascl_jax.chat.formats import ChatFormat
from ascl_jax.chat.call_types import ToolCall, ToolCallConfig
from ascl_jax.errors import ConfigError, UserError
from ascl_jax.models.registry import LoadedModel
from ascl_jax.parallel.host import allgather, allgather_objects, put_global, read_local, row_sharding
from ascl_jax.rollout.engine import STOP_EOS, STOP_LENGTH, STOP_TOOL_CALL, DecodeState, StopTokens, extend
from ascl_jax.rollout.layout import ROLLOUT_LAYOUTS, RolloutLayout
from ascl_jax.rollout.sampling import SamplingConfig, row_keys
from ascl_jax.rollout.shapes import bucket
from ascl_jax.rollout.slots import RowOutput, SlotStats, stream_rows
from ascl_jax.rollout.trajectory import Prompt, ToolTurn, Trajectory
from ascl_jax.rules.tool import TOOL_NAME
from ascl_jax.rules.tools import TOOL_NAMES, RuleTool

TRUNCATION_MARKER = " [truncated]"


@dataclass(frozen=True)
class RolloutConfig:
    """Budgets and shapes of a rollout.

    max_prompt_tokens: longest prompt accepted; max_new_tokens: tokens after the prompt (sampled and
    spliced together); max_tool_calls: tool calls per episode (one more stops the row, reason
    `tool_cap`); max_tool_response_tokens: tokens of one tool response (cut with a visible marker);
    slots: decode rows the engine holds, through which the batch's rows stream (0: the whole batch at
    once; otherwise a multiple of group_size). KV-cache memory is slots x capacity. layout: the weights'
    layout during an RL step's rollout (`rollout/layout.py`: train | replicated | tensor). tool: the rule
    tool offered (`rules/tools.py`: consult_safety_rules, or retrieve_policy, the paper's)."""

    group_size: int = 4
    max_prompt_tokens: int = 256
    max_new_tokens: int = 256
    max_tool_calls: int = 2
    max_tool_response_tokens: int = 192
    decode_chunk: int = 32
    slots: int = 0
    layout: RolloutLayout = "train"
    tool: str = TOOL_NAME
    prompt_bucket: int = 64
    extend_bucket: int = 64
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    tool_calls: ToolCallConfig = field(default_factory=ToolCallConfig)

    def __post_init__(self) -> None:
        for name in ("group_size", "max_prompt_tokens", "max_new_tokens", "decode_chunk", "prompt_bucket",
                     "extend_bucket", "max_tool_response_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"rollout.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_tool_calls < 0:
            raise ConfigError(f"rollout.max_tool_calls must be >= 0, got {self.max_tool_calls}")
        if self.layout not in ROLLOUT_LAYOUTS:
            raise ConfigError(f"rollout.layout must be one of {', '.join(ROLLOUT_LAYOUTS)}, got {self.layout!r}")
        if self.tool not in TOOL_NAMES:
            raise ConfigError(f"rollout.tool must be one of {', '.join(TOOL_NAMES)}, got {self.tool!r}")
        if self.slots < 0 or self.slots % self.group_size:
            raise ConfigError(f"rollout.slots must be 0 (the whole batch) or a multiple of rollout.group_size "
                              f"({self.group_size}), got {self.slots}")

    @property
    def capacity(self) -> int:
        """KV-cache slots per row: fixed for a run, so it never triggers a recompile."""
        return bucket(self.max_prompt_tokens, self.prompt_bucket) + bucket(self.max_new_tokens, self.extend_bucket)


@dataclass
class _Row:
    """Host bookkeeping of one row between device calls."""

    turn_start: int
    tool_turns: list[ToolTurn] = field(default_factory=list)
    host_stop: str | None = None  # tool_cap / length / eos (a call-less turn), decided here rather than on the device


@dataclass(frozen=True)
class Rollout:
    """The trajectories of a batch (rows g*G .. g*G+G-1 are the samples of prompt g) and where the time
    went: `device_seconds` in prefill/decode calls, `tool_seconds` on the host answering calls (the
    splicing `extend` included); `stats` splits the device time and tells how full the slots were."""

    trajectories: list[Trajectory]
    device_seconds: float
    tool_seconds: float
    extend_calls: int
    stats: SlotStats


def run_rollout(
    model: LoadedModel,
    fmt: ChatFormat,
    tools: Sequence[RuleTool | None],
    prompts: Sequence[Prompt],
    cfg: RolloutConfig,
    seed: int,
    row_offset: int = 0,
) -> Rollout:
    """Roll out `cfg.group_size` samples of every prompt, `tools[g]` being the rule tool of prompts[g]
    (None: no tool is offered to that prompt; a per-prompt tool lets each episode draw its rule book).
    The rows stream through `cfg.slots` decode slots (0: all at once).

    `seed` and the global row id (`row_offset` + row) pick each row's random stream, so a row's tokens do
    not depend on batch layout or slot count."""
    if not prompts:
        raise UserError("rollout: no prompts")
    if len(tools) != len(prompts):
        raise UserError(f"rollout: {len(tools)} tools for {len(prompts)} prompts; give one per prompt")
    g = cfg.group_size
    encoded = []
    for p, tool in zip(prompts, tools):
        ids = fmt.prompt_tokens(list(p.messages), [tool.schema] if tool is not None else None)
        if len(ids) > cfg.max_prompt_tokens:
            raise UserError(
                f"prompt {p.id!r} is {len(ids)} tokens; rollout.max_prompt_tokens is {cfg.max_prompt_tokens}"
            )
        encoded.append(ids)
    lens = np.array([len(x) for x in encoded], np.int32)
    eos, call_ends = fmt.stop_token_ids(with_tools=any(t is not None for t in tools))
    stops = StopTokens(eos=eos, tool_call_end=call_ends)
    n_rows = len(prompts) * g
    rows = [_Row(turn_start=int(lens[i // g])) for i in range(n_rows)]
    tool_seconds = 0.0

    def service(state, slot_row, mine):
        nonlocal tool_seconds
        t0 = time.perf_counter()
        state, extend_seconds = _tool_turns(model, fmt, tools, cfg, state, slot_row, mine, rows, stops)
        tool_seconds += time.perf_counter() - t0
        return state, extend_seconds

    start = time.perf_counter()
    outputs, stats = stream_rows(
        model, encoded, group_size=g, limits=np.repeat(lens, g) + cfg.max_new_tokens,
        keys=row_keys(seed, row_offset + np.arange(n_rows)), slots=cfg.slots, capacity=cfg.capacity,
        chunk=cfg.decode_chunk, prompt_bucket=cfg.prompt_bucket, sampling=cfg.sampling, stops=stops,
        service=service,
    )
    trajectories = _trajectories(fmt, prompts, cfg, outputs, rows, lens)
    total = time.perf_counter() - start
    return Rollout(trajectories, total - tool_seconds, tool_seconds, stats.extend_calls, stats)


def _tool_turns(model, fmt, tools, cfg, state, slot_row, mine, rows, stops) -> tuple[DecodeState, float | None]:
    """Answer the calls of this process's waiting rows (`mine`: the slots it holds; `slot_row`: the global
    row in each slot) and splice every process's deltas with one extend call, which all processes make
    together when any has a delta. Returns (state, the extend's seconds, or None when none ran)."""
    stop = read_local(state.stop).copy()  # written below where the host stops a row
    waiting = [s for s in mine[stop[mine] == STOP_TOOL_CALL].tolist() if slot_row[s] >= 0]
    if len(waiting):
        tokens, seq_len, limit = read_local(state.tokens), read_local(state.seq_len), read_local(state.limit)
    deltas: dict[int, list[int]] = {}
    for s in waiting:
        r = int(slot_row[s])
        row = rows[r]
        tool = tools[r // cfg.group_size]
        text = fmt.decode(tokens[s, row.turn_start : seq_len[s]])
        calls = fmt.parse_tool_calls(text, [tool.schema], cfg.tool_calls)
        if not calls and fmt.call_ends_turn:  # a turn that ended without a call is the answer
            row.host_stop = "eos"
            continue
        if len(row.tool_turns) >= cfg.max_tool_calls:
            row.host_stop = "tool_cap"
            continue
        turns = [_answer(call, fmt, tool, cfg) for call in calls]
        if not turns:  # the stop sequence came without a parsable call: tell the model so
            turns = [ToolTurn(text, None, None, "no_call", f"Error: no tool call found before {fmt.spec.call_end}.",
                              (), False)]
        delta = fmt.tool_turn_delta([t.response for t in turns])
        row.tool_turns.extend(turns)
        if seq_len[s] + len(delta) + 1 > limit[s]:  # no room to splice and still answer
            row.host_stop = "length"
            continue
        deltas[s] = delta
        row.turn_start = int(seq_len[s]) + len(delta)
    host_stopped = [s for s in waiting if rows[int(slot_row[s])].host_stop is not None]
    for s in host_stopped:
        stop[s] = STOP_LENGTH if rows[int(slot_row[s])].host_stop == "length" else STOP_EOS
    if host_stopped:
        state = dataclasses.replace(state, stop=put_global(stop.astype(np.int32), state.stop.sharding))
    # The extend's width is the same on every process: the widest delta anywhere.
    longest = int(allgather(np.array(max((len(d) for d in deltas.values()), default=0))).max())
    if not longest:
        return state, None
    t0 = time.perf_counter()
    width = bucket(longest, cfg.extend_bucket)
    new = np.zeros((len(slot_row), width), np.int32)
    new_lens = np.zeros(len(slot_row), np.int32)
    for s, d in deltas.items():
        new[s, : len(d)] = d
        new_lens[s] = len(d)
    # Same layout as the state's rows: another layout would compile extend anew.
    state, _ = extend(model.graphdef, model.params, state,
                      put_global(new, row_sharding(state.tokens.sharding)),
                      put_global(new_lens, state.seq_len.sharding), sampling=cfg.sampling, stops=stops)
    jax.block_until_ready(state.stop)
    return state, time.perf_counter() - t0


def _answer(call, fmt: ChatFormat, tool: RuleTool, cfg: RolloutConfig) -> ToolTurn:
    if not isinstance(call, ToolCall):
        return ToolTurn(call.raw, None, None, str(call.kind), call.message, (), False)
    result = tool.call(call.arguments)
    text, cut = _bounded(fmt, result.text, cfg.max_tool_response_tokens)
    return ToolTurn(call.raw, call.name, dict(call.arguments), result.error, text, tuple(result.rule_ids),
                    result.truncated or cut)


def _bounded(fmt: ChatFormat, text: str, max_tokens: int) -> tuple[str, bool]:
    """`text` cut to at most `max_tokens` tokens, with a visible marker when cut."""
    ids = fmt.encode_text(text)
    if len(ids) <= max_tokens:
        return text, False
    marker = len(fmt.encode_text(TRUNCATION_MARKER))
    keep = fmt.decode(ids[: max(0, max_tokens - marker)])
    return keep.rstrip("\ufffd") + TRUNCATION_MARKER, True


def _trajectories(fmt, prompts, cfg, outputs: dict[int, RowOutput], rows, lens) -> list[Trajectory]:
    """Every row's Trajectory, in row order, on every process: each builds those of the rows it read out
    (`outputs`) and they are exchanged, so rewards, advantages and logs see the whole batch everywhere."""
    out = []
    for r, o in sorted(outputs.items()):
        row = rows[r]
        gid, n, plen = r // cfg.group_size, len(o.tokens), int(lens[r // cfg.group_size])
        reason = row.host_stop or {STOP_EOS: "eos", STOP_LENGTH: "length"}.get(o.stop, "error")
        completion = fmt.decode(o.tokens[plen:n])
        answer_end = n - 1 if reason == "eos" else n  # without the eos token itself
        last_turn = fmt.decode(o.tokens[min(row.turn_start, answer_end) : answer_end])
        out.append((r, Trajectory(
            prompt=prompts[gid],
            group_id=gid,
            sample_index=r % cfg.group_size,
            tokens=o.tokens,
            prompt_len=plen,
            loss_mask=o.sampled.astype(np.int8),
            sampler_logprobs=o.logprobs,
            tool_turns=tuple(row.tool_turns),
            stop_reason=reason,
            completion_text=completion,
            final_answer=fmt.final_answer(last_turn) if reason == "eos" else "",
        )))
    every = sorted((pair for part in allgather_objects(out) for pair in part), key=lambda pair: pair[0])
    return [t for _, t in every]
