"""Plain batched generation (no tool turns) through the slot engine, and the shape and key helpers the
rollout shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ascl_jax.errors import UserError
from ascl_jax.models.registry import LoadedModel
from ascl_jax.parallel.host import allgather_objects
from ascl_jax.rollout.engine import STOP_NAMES, StopTokens
from ascl_jax.rollout.sampling import SamplingConfig, row_keys
from ascl_jax.rollout.shapes import PROMPT_BUCKET, bucket
from ascl_jax.rollout.slots import stream_rows

@dataclass(frozen=True)
class Generation:
    prompt_tokens: list[int]
    tokens: list[int]  # generated ids, the stop token included
    logprobs: list[float]
    stop_reason: str


def generate(
    model: LoadedModel,
    prompts: list[list[int]],
    max_new_tokens: int,
    sampling: SamplingConfig = SamplingConfig(greedy=True),
    seed: int = 0,
    chunk: int = 32,
    stop_tokens: StopTokens | None = None,
    slots: int = 0,
) -> list[Generation]:
    """Generate up to `max_new_tokens` for each prompt (lists of token ids), streaming them through
    `slots` decode rows (0: all at once)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UserError("every prompt needs at least one token")
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    cfg = model.config
    stops = stop_tokens or StopTokens(eos=tuple(cfg.eos_token_ids))
    lens = np.array([len(p) for p in prompts], np.int32)
    capacity = bucket(bucket(int(lens.max())) + max_new_tokens)
    if capacity > cfg.max_position_embeddings:
        raise UserError(
            f"prompt plus max_new_tokens needs {capacity} positions; the model supports {cfg.max_position_embeddings}"
        )
    outputs, _ = stream_rows(
        model, prompts, group_size=1, limits=lens + max_new_tokens, keys=row_keys(seed, np.arange(len(prompts))),
        slots=slots, capacity=capacity, chunk=chunk, prompt_bucket=PROMPT_BUCKET, sampling=sampling, stops=stops,
    )
    every = {r: o for part in allgather_objects(sorted(outputs.items())) for r, o in part}
    return [
        Generation(
            prompt_tokens=list(prompts[i]),
            tokens=every[i].tokens[lens[i]:].tolist(),
            logprobs=every[i].logprobs[lens[i]:].tolist(),
            stop_reason=STOP_NAMES[every[i].stop],
        )
        for i in range(len(prompts))
    ]
