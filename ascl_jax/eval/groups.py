"""The paper's three groups of an evaluation: safety (safety rate on harmful prompts), over-refusal (refusal
rate on benign prompts) and reasoning (accuracy on utility prompts, and pass@k with several samples).

A benchmark joins every group whose class it has prompts of (XSTest's unsafe prompts count for safety, its
safe ones for over-refusal). A group's mean is the unweighted mean over its benchmarks, as papers average
benchmark scores; a model missing a benchmark has no mean for that group."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Group:
    name: str
    metric: str  # the key in a benchmark's metrics
    title: str


GROUPS = (
    Group("safety", "safety_rate", "Safety: safety rate on harmful prompts (higher is better)"),
    Group("over-refusal", "over_refusal_rate", "Over-refusal: refusal rate on benign prompts (lower is better)"),
    Group("reasoning", "utility_accuracy", "Reasoning: accuracy on utility prompts (avg@k; higher is better)"),
)


def _benchmarks(models: dict[str, dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for m in models.values():
        out += [b for b in (m.get("benchmarks") or {}) if b not in out]
    return out


def _value(m: dict[str, Any], bench: str, key: str) -> float | None:
    return ((m.get("benchmarks") or {}).get(bench) or {}).get(key)


def _pass_keys(models: dict[str, dict[str, Any]], benches: Sequence[str]) -> list[str]:
    """The pass@k columns any model has on these benchmarks, by k."""
    keys = {k for m in models.values() for b in benches for k in ((m.get("benchmarks") or {}).get(b) or {})
            if k.startswith("pass@") and k != "pass@1"}
    return sorted(keys, key=lambda k: int(k[5:]))


def group_tables(models: dict[str, dict[str, Any]]) -> list[tuple[Group, list[str], list[tuple[str, list[str]]]]]:
    """For each group with at least one benchmark: (group, header after the first column, rows). A row is
    (benchmark, one cell per model and metric) and the last row is the group's mean."""
    out = []
    names = list(models)
    for group in GROUPS:
        benches = [b for b in _benchmarks(models) if any(_value(m, b, group.metric) is not None
                                                          for m in models.values())]
        if not benches:
            continue
        keys = [group.metric, *(_pass_keys(models, benches) if group.name == "reasoning" else [])]
        header = [n if len(keys) == 1 else f"{n}: {k.replace('utility_accuracy', 'accuracy')}"
                  for n in names for k in keys]
        rows = []
        for b in benches:
            rows.append((b, [_fmt(_value(models[n], b, k)) for n in names for k in keys]))
        means = [_fmt(_mean(models[n], benches, k)) for n in names for k in keys]
        rows.append((f"mean ({len(benches)} benchmark{'s' if len(benches) > 1 else ''})", means))
        out.append((group, header, rows))
    return out


def group_means(models: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """{model: {group: mean of its metric over the group's benchmarks, or None}}."""
    out: dict[str, dict[str, float | None]] = {n: {} for n in models}
    for group in GROUPS:
        benches = [b for b in _benchmarks(models) if any(_value(m, b, group.metric) is not None
                                                          for m in models.values())]
        for n, m in models.items():
            out[n][group.name] = _mean(m, benches, group.metric)
    return out


def _mean(m: dict[str, Any], benches: Sequence[str], key: str) -> float | None:
    vals = [_value(m, b, key) for b in benches]
    return sum(vals) / len(vals) if vals and all(v is not None for v in vals) else None


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"
