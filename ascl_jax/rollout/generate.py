"""Plain batched generation (no tool turns): prefill once, then decode in chunks until every row stops."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ascl_jax.errors import UserError
from ascl_jax.models.registry import LoadedModel
from ascl_jax.rollout.engine import RUNNING, STOP_NAMES, StopTokens, decode_chunk, prefill
from ascl_jax.rollout.sampling import SamplingConfig

PROMPT_BUCKET = 64


def bucket(n: int, multiple: int = PROMPT_BUCKET) -> int:
    """Round n up to a multiple, so that varying lengths compile a few programs, not one each."""
    return max(multiple, -(-n // multiple) * multiple)


def row_keys(seed: int, row_ids: np.ndarray) -> jax.Array:
    """One key per row from its global id: a row's samples do not depend on batch layout."""
    base = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(row_ids, jnp.uint32))


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
) -> list[Generation]:
    """Generate up to `max_new_tokens` for each prompt (lists of token ids)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UserError("every prompt needs at least one token")
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    cfg = model.config
    stops = stop_tokens or StopTokens(eos=tuple(cfg.eos_token_ids))
    lens = np.array([len(p) for p in prompts], np.int32)
    length = bucket(int(lens.max()))
    capacity = bucket(length + max_new_tokens)
    if capacity > cfg.max_position_embeddings:
        raise UserError(
            f"prompt plus max_new_tokens needs {capacity} positions; the model supports {cfg.max_position_embeddings}"
        )
    batch = np.full((len(prompts), length), cfg.pad_token_id or 0, np.int32)
    for i, p in enumerate(prompts):
        batch[i, : len(p)] = p
    with jax.set_mesh(model.mesh):
        state = prefill(
            model.graphdef, model.params, jnp.asarray(batch), jnp.asarray(lens),
            row_keys(seed, np.arange(len(prompts))), jnp.asarray(lens + max_new_tokens),
            cfg=cfg, group_size=1, capacity=capacity, sampling=sampling, stops=stops,
        )
        while bool(jnp.any(state.stop == RUNNING)):
            state = decode_chunk(model.graphdef, model.params, state, n_steps=chunk, sampling=sampling, stops=stops)
    tokens, seq_len = np.asarray(state.tokens), np.asarray(state.seq_len)
    logprobs, stop = np.asarray(state.logprobs), np.asarray(state.stop)
    return [
        Generation(
            prompt_tokens=list(prompts[i]),
            tokens=tokens[i, lens[i] : seq_len[i]].tolist(),
            logprobs=logprobs[i, lens[i] : seq_len[i]].tolist(),
            stop_reason=STOP_NAMES[int(stop[i])],
        )
        for i in range(len(prompts))
    ]
