"""Supervised loss for the cold start: token cross-entropy on the assistant's tokens only."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from ascl_jax.models.decoder import Remat


def sft_loss(model: nnx.Module, batch: dict[str, jax.Array], *, remat: Remat = "none"):
    """batch: tokens i32[B, T], loss_mask f32[B, T] (1 where token t is a target: an assistant token);
    packed rows also carry segments i32[B, T] (one id per conversation, -1 on padding) and positions
    i32[B, T] (each conversation's own, from 0).

    Token t is predicted from the tokens before it in its own segment; `remat` is the decoder's
    rematerialisation policy. The head runs chunk by chunk (`ModelConfig.logprob_chunk`). Returns
    (numerator = sum of masked NLL, denominator = number of target tokens, metric sums)."""
    tokens, mask = batch["tokens"], batch["loss_mask"].astype(jnp.float32)
    segments = batch.get("segments")
    positions = batch.get("positions")
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    hidden, _ = model.hidden_states(tokens, positions, remat=remat, segments=segments)
    lp, _, hit = model.token_stats(hidden[:, :-1], tokens[:, 1:])
    mask = mask[:, 1:]
    if segments is not None:  # the first token of a conversation is not predicted from the one before
        mask = mask * (segments[:, 1:] == segments[:, :-1])
    num = -jnp.sum(lp * mask)
    den = jnp.sum(mask)
    return num, den, {"nll_sum": num, "correct_sum": jnp.sum(hit * mask), "token_count": den}


@functools.lru_cache(maxsize=None)
def sft_loss_fn(remat: Remat = "none"):
    """`sft_loss` with its remat policy bound: one object per policy, since jit caches on its identity."""
    return functools.partial(sft_loss, remat=remat)
