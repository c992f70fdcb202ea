"""Packing cold-start conversations into fixed-width rows: several conversations a row, each its own
segment with positions from 0, so long and short examples train without padding to the longest.

A packed batch carries `segments` i32[N, W] (the conversation's index within its row, -1 on padding) and
`positions` i32[N, W] beside tokens and loss_mask; attention stays within a segment (every attention
backend takes segment ids), and the loss skips the first token of each segment, which is not predicted
from the conversation before it. The loss of a packed batch equals the loss of the same conversations
unpacked (tests/test_packing.py)."""

from __future__ import annotations

import numpy as np

from ascl_jax.data.prompts import DataError


def first_fit_rows(lengths: list[int], width: int) -> list[list[int]]:
    """Example indices per row: first-fit over the examples by decreasing length (ties by index, so the
    packing is deterministic). Every example must fit in `width`."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[int] = []
    for i in order:
        n = lengths[i]
        if n > width:
            raise DataError(f"example {i} has {n} tokens; sft.max_tokens is {width}")
        slot = next((r for r, f in enumerate(free) if f >= n), None)
        if slot is None:
            rows.append([i])
            free.append(width - n)
        else:
            rows[slot].append(i)
            free[slot] -= n
    return rows


def pack_rows(examples: list[tuple[list[int], list[int]]], pad_id: int, width: int) -> dict[str, np.ndarray]:
    """tokens i32[R, W], loss_mask f32[R, W], segments i32[R, W], positions i32[R, W] for the
    (token ids, loss mask) examples packed into R rows of `width` (sft.max_tokens) tokens."""
    rows = first_fit_rows([len(ids) for ids, _ in examples], width)
    out = {"tokens": np.full((len(rows), width), pad_id, np.int32),
           "loss_mask": np.zeros((len(rows), width), np.float32),
           "segments": np.full((len(rows), width), -1, np.int32),
           "positions": np.zeros((len(rows), width), np.int32)}
    for r, members in enumerate(rows):
        at = 0
        for s, i in enumerate(members):
            ids, mask = examples[i]
            n = len(ids)
            out["tokens"][r, at:at + n] = ids
            out["loss_mask"][r, at:at + n] = mask
            out["segments"][r, at:at + n] = s
            out["positions"][r, at:at + n] = np.arange(n)
            at += n
    return out


def padding_fraction(batch: dict[str, np.ndarray], lengths: list[int]) -> float:
    """The share of a data set's token slots that hold padding."""
    return 1.0 - sum(lengths) / batch["tokens"].size
