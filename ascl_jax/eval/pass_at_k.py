"""Scores of several samples per prompt: pass@k and avg@k.

With n samples of a prompt of which c are correct, the unbiased estimate of pass@k (the chance that at
least one of k samples drawn without replacement from the n is correct; Chen et al. 2021) is

    pass@k = 1 - C(n - c, k) / C(n, k)

computed as a running product, which stays exact for large n. avg@k is the mean correctness over the
samples (equal to pass@1's estimate). A benchmark's value is the mean over its prompts; its interval is a
bootstrap over prompts, never over samples, since samples of one prompt are not independent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one prompt with `n` samples of which `c` are correct (1 <= k <= n)."""
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= c <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def k_values(n: int) -> list[int]:
    """The k reported for n samples: the powers of two up to n, and n."""
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    return ks if ks[-1] == n else [*ks, n]


def by_prompt(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by the prompt they sample (`base_id`; a record without one is its own prompt), in
    first-seen order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r.get("base_id") or r["id"], []).append(r)
    return out


def prompt_means(records: Sequence[dict[str, Any]], values: np.ndarray) -> np.ndarray:
    """`values` (f32[len(records)], one per record) averaged over each prompt's samples: f64[prompts]."""
    groups: dict[str, list[float]] = {}
    for r, v in zip(records, values):
        groups.setdefault(r.get("base_id") or r["id"], []).append(float(v))
    return np.array([np.mean(g) for g in groups.values()], np.float64)


def pass_at_k_values(records: Sequence[dict[str, Any]]) -> dict[int, np.ndarray]:
    """Per-prompt pass@k (k in `k_values(n)`) over utility records with `correct`: {k: f64[prompts]}.
    Every prompt must have the same number of samples (a partial cache is an error upstream)."""
    groups = [g for g in by_prompt([r for r in records if r.get("class") == "utility"]).values()]
    if not groups:
        return {}
    n = len(groups[0])
    if any(len(g) != n for g in groups):
        sizes = sorted({len(g) for g in groups})
        raise ValueError(f"pass@k needs the same number of samples for every prompt; got {sizes}")
    correct = [sum(bool(r.get("correct")) for r in g) for g in groups]
    return {k: np.array([pass_at_k(n, c, k) for c in correct], np.float64) for k in k_values(n)}
