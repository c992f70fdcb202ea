"""Supervised loss for the cold start: token cross-entropy on the assistant's tokens only."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from ascl_jax.models.decoder import Remat


def sft_loss(model: nnx.Module, batch: dict[str, jax.Array], *, remat: Remat = "none"):
    """batch: tokens i32[B, T], loss_mask f32[B, T] (1 where token t is a target: an assistant token).

    Token t is predicted from tokens < t; `remat` is the decoder's rematerialisation policy. Returns (numerator = sum of masked NLL, denominator = number of
    target tokens, metric sums)."""
    tokens, mask = batch["tokens"], batch["loss_mask"].astype(jnp.float32)
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    logits, _ = model(tokens, positions, remat=remat)
    logits, targets, mask = logits[:, :-1], tokens[:, 1:], mask[:, 1:]
    nll = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    num = jnp.sum(nll * mask)
    den = jnp.sum(mask)
    return num, den, {"nll_sum": num, "correct_sum": jnp.sum(correct * mask), "token_count": den}


@functools.lru_cache(maxsize=None)
def sft_loss_fn(remat: Remat = "none"):
    """`sft_loss` with its remat policy bound: one object per policy, since jit caches on its identity."""
    return functools.partial(sft_loss, remat=remat)
