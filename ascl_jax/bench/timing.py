"""Timing helpers for benchmarks: warm up (compile) once, then the median of repeated runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` (its result blocked on), after `warmup` untimed calls."""
    return statistics.median(interleaved_seconds({"fn": fn}, repeats, warmup)["fn"])


def interleaved_seconds(
    fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall times of each `fns[name]()` (its result blocked on) over `repeats` rounds, each round calling
    every function once in turn, after `warmup` untimed calls of each.

    On a shared machine the load drifts over seconds; timing variants in the same rounds exposes them to
    the same drift, so a ratio of their medians compares like with like, which timing one variant after
    the other does not."""
    for _ in range(warmup):
        for fn in fns.values():
            jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return times
