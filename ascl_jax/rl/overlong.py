"""Over-long rows: DAPO's soft over-long reward penalty and the mask that leaves truncated rows out of
the loss (Yu et al. 2025, "DAPO", section 3.4)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def overlong_penalty(lengths, max_len: int, buffer: int, penalty: float = 1.0):
    """Reward added to each row, f32[N] (<= 0), for completion lengths i32[N] under a budget of `max_len`
    tokens: 0 up to max_len - buffer, then falling linearly to -penalty at max_len, and -penalty beyond.
    buffer 0 gives zeros. Works on numpy and jax arrays."""
    xp = jnp if not isinstance(lengths, np.ndarray) else np
    lengths = xp.asarray(lengths, xp.float32)
    if buffer == 0:
        return xp.zeros_like(lengths)
    over = (lengths - (max_len - buffer)) / buffer
    return -penalty * xp.clip(over, 0.0, 1.0).astype(xp.float32)


def truncated_loss_mask(loss_mask: np.ndarray, truncated: np.ndarray) -> np.ndarray:
    """loss_mask [N, T] with the rows where truncated bool[N] zeroed."""
    return np.where(np.asarray(truncated, bool)[:, None], 0, loss_mask).astype(loss_mask.dtype)
