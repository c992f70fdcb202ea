"""DAPO's dynamic sampling (Yu et al. 2025, verl's filter_groups): a group whose rollouts all got the same
reward has zero advantage under every group-relative estimator, so it adds nothing to the gradient but
still dilutes the batch. The trainer draws rollout batches until `prompts_per_step` groups with a spread
are in hand (at most `max_draws` batches); this module picks the rows. Host-side, NumPy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GroupSelection", "groups_with_spread", "select_groups"]


def groups_with_spread(total: np.ndarray, group_size: int) -> np.ndarray:
    """bool[B/G]: whether the rewards f32[B] of each group of `group_size` contiguous rows differ."""
    groups = np.asarray(total, np.float64).reshape(-1, group_size)
    return np.ptp(groups, axis=1) > 0


@dataclass(frozen=True)
class GroupSelection:
    """rows: the indices (into the draws' rows, concatenated) of the batch, whole groups in draw order,
    the groups with a spread first; kept: groups with a spread in it; filled: groups without one that fill
    it up (only when the draws ran out); drawn: groups rolled out; dropped: drawn groups without a spread."""

    rows: np.ndarray
    kept: int
    filled: int
    drawn: int
    dropped: int


def select_groups(totals: list[np.ndarray], group_size: int, groups_needed: int) -> GroupSelection:
    """The batch of `groups_needed` groups from the rewards of one or more draws (each f32[n_i·G]).

    The groups with a spread come first, in the order drawn, up to `groups_needed`; if there are fewer,
    the earliest groups without one fill the rest, so the batch keeps its size (and its compiled shape).
    Raises ValueError when the draws hold fewer than `groups_needed` groups in all."""
    spread = np.concatenate([groups_with_spread(t, group_size) for t in totals])
    if spread.size < groups_needed:
        raise ValueError(f"{spread.size} groups drawn, {groups_needed} needed")
    with_spread = np.flatnonzero(spread)
    kept = with_spread[:groups_needed]
    fill = np.flatnonzero(~spread)[: groups_needed - kept.size]
    groups = np.concatenate([kept, fill])
    rows = (groups[:, None] * group_size + np.arange(group_size)[None, :]).reshape(-1)
    return GroupSelection(rows=rows, kept=int(kept.size), filled=int(fill.size), drawn=int(spread.size),
                          dropped=int((~spread).sum()))
