"""Results over several seeds: means with 95% intervals, curves per RL step with a band, and the markdown of
`ascl compare` (estimators side by side on the same seeds).

Intervals across seeds are Student-t intervals of the mean (n seeds, n - 1 degrees of freedom): with three
seeds the half-width is 2.48 standard deviations, so only large differences separate. Intervals of one
evaluation (one model, n prompts) are Wilson score intervals of a proportion."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

Interval = tuple[float, float | None, float | None]  # (mean, low, high); low/high None with one value


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of `values` and its Student-t interval (None bounds for a single value)."""
    x = np.asarray([v for v in values if v is not None], np.float64)
    if x.size == 0:
        raise ValueError("no values")
    mean = float(x.mean())
    if x.size == 1:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion `successes` / `n` (n > 0)."""
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fmt_interval(iv: Interval | None) -> str:
    if iv is None:
        return "–"
    mean, lo, hi = iv
    return f"{mean:.3f}" if lo is None else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def rl_curve(metrics: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(RL step 1..N, value) of `key` over the RL records of one run (records with a "reward"); the step
    counts RL steps only, whatever the SFT stage before them."""
    rl = [m for m in metrics if "reward" in m]
    if not rl:
        return np.zeros(0, np.int64), np.zeros(0)
    first = min(int(m["step"]) for m in rl)
    pts = [(int(m["step"]) - first + 1, m.get(key)) for m in rl]
    pts = [(s, v) for s, v in pts if v is not None]
    return np.array([s for s, _ in pts], np.int64), np.array([v for _, v in pts], np.float64)


def smooth(values: np.ndarray, window: int = 5) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    if values.size == 0:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def curve_band(runs: Sequence[Sequence[Mapping[str, Any]]], key: str, window: int = 5):
    """Over seeds: (steps, smoothed mean, band low, band high, raw points per seed) of `key` per RL step,
    on the steps every run has. The band is the t-interval of the seeds' smoothed values (none for one)."""
    curves = [rl_curve(ms, key) for ms in runs]
    curves = [(s, v) for s, v in curves if s.size]
    if not curves:
        return None
    common = sorted(set.intersection(*(set(s.tolist()) for s, _ in curves)))
    if not common:
        return None
    steps = np.array(common)
    sm = np.stack([smooth(v[np.isin(s, steps)], window) for s, v in curves])
    mean = sm.mean(axis=0)
    if sm.shape[0] > 1:
        half = stats.t.ppf(0.975, sm.shape[0] - 1) * sm.std(axis=0, ddof=1) / math.sqrt(sm.shape[0])
        lo, hi = mean - half, mean + half
    else:
        lo = hi = None
    return steps, mean, lo, hi, curves


def plot_consult_bands(runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], path: Path,
                       keys: Sequence[str] | None = None) -> Path | None:
    """One panel per class (`consult_rate/<class>`), one line per estimator: the seeds' smoothed mean
    against the RL step, a 95% band across seeds, each seed's raw points faint."""
    found = sorted({k for rs in runs.values() for ms in rs for m in ms for k in m if k.startswith("consult_rate/")})
    keys = [k for k in (keys or found) if k in found]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.8 * len(keys), 3.3), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes[0], keys):
        for i, (name, rs) in enumerate(runs.items()):
            band = curve_band(rs, key)
            if band is None:
                continue
            steps, mean, lo, hi, raw = band
            colour = colours[i % len(colours)]
            for s, v in raw:
                ax.plot(s, v, ".", color=colour, alpha=0.15, markersize=3)
            ax.plot(steps, mean, color=colour, label=f"{name} ({len(raw)} seeds)")
            if lo is not None:
                ax.fill_between(steps, np.clip(lo, 0, 1), np.clip(hi, 0, 1), color=colour, alpha=0.2, linewidth=0)
        ax.set_title(key.replace("_", " ")), ax.set_xlabel("RL step"), ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


COMPARE_ROWS = ("safety_rate", "over_refusal_rate", "utility_accuracy", "rule_accuracy", "consult_rate",
                "consult_rate/harmful", "consult_rate/sensitive", "consult_rate/utility")


def seed_intervals(per_seed: Sequence[Mapping[str, Any]], rows: Sequence[str] = COMPARE_ROWS) -> dict[str, Interval]:
    """{metric: t-interval across seeds} for the metrics every seed reports."""
    out = {}
    for r in rows:
        vals = [s.get(r) for s in per_seed]
        if vals and all(v is not None for v in vals):
            out[r] = t_interval(vals)
    return out


def behaviour_rows(runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]) -> list[str]:
    """Markdown rows, one per prompt class: for each estimator, the mean reward of the rows that called
    the tool and of those that did not, and the mean per step of the sum of their advantages (the push
    the update gives each behaviour), averaged over the RL steps of every seed. `runs`: estimator -> one
    metrics list per seed (the RL step lines, with `reward_mean/<class>/<behaviour>` and
    `advantage_sum/...`). Empty when no run logged them."""
    keys = sorted({k for seeds in runs.values() for m in seeds for line in m for k in line
                   if k.startswith("advantage_sum/")})
    classes = sorted({k.split("/")[1] for k in keys})
    if not classes:
        return []

    def mean(name: str, key: str) -> str:
        vals = [line[key] for m in runs[name] for line in m if key in line]
        if not vals:
            return "-"
        return f"{np.mean(vals):{'+' if key.startswith('advantage') else ''}.2f}"

    names = list(runs)
    out = ["| class | " + " | ".join(f"{n}: reward, consulted / not | {n}: advantage a step, consulted / not"
                                     for n in names) + " |", "|---|" + "---|---|" * len(names)]
    for cls in classes:
        cells = []
        for n in names:
            cells.append(" / ".join(mean(n, f"reward_mean/{cls}/{b}") for b in ("consulted", "not_consulted")))
            cells.append(" / ".join(mean(n, f"advantage_sum/{cls}/{b}") for b in ("consulted", "not_consulted")))
        out.append(f"| {cls} | " + " | ".join(cells) + " |")
    return out


def comparison_markdown(final: Mapping[str, Sequence[Mapping[str, Any]]], initial: Sequence[Mapping[str, Any]],
                        seeds: Sequence[int], setting: str, plot: str | None,
                        curves: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]] | None = None) -> str:
    """`comparison.md`: per estimator, the after-RL metrics over `seeds` (mean [95% interval]), the
    after-SFT starting point they share, a paragraph that says in numbers what happened, and (from the
    RL step lines in `curves`) what each behaviour earned and how hard the update pushed it."""
    names = list(final)
    ivs = {n: seed_intervals(final[n]) for n in names}
    start = seed_intervals(initial)
    rows = [r for r in COMPARE_ROWS if r in start or any(r in ivs[n] for n in names)]
    lines = [f"# {' vs '.join(names)}: {len(seeds)} seeds ({', '.join(map(str, seeds))})", "", setting, "",
             "Final evaluation after RL, mean over seeds with its 95% t-interval; `after SFT` is the start that "
             "every estimator shares for a seed.", "",
             "| metric | after SFT | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for r in rows:
        lines.append(f"| {r} | {fmt_interval(start.get(r))} | "
                     + " | ".join(fmt_interval(ivs[n].get(r)) for n in names) + " |")
    lines += ["", comparison_paragraph(ivs, start)]
    table = behaviour_rows(curves or {})
    if table:
        lines += ["", "During RL, per prompt class and behaviour (called the tool or not), averaged over the steps "
                  "and seeds: the rows' mean reward, and the sum of their advantages a step. An estimator holds "
                  "a behaviour back only where the push on it is negative.", "", *table]
    if plot:
        lines += ["", f"![consult rate per class over RL steps, a band per estimator]({plot})"]
    return "\n".join(lines) + "\n"


def _separated(a: Interval, b: Interval) -> bool:
    return a[1] is not None and b[1] is not None and (a[2] < b[1] or b[2] < a[1])


def comparison_paragraph(ivs: Mapping[str, Mapping[str, Interval]], start: Mapping[str, Interval]) -> str:
    """What happened, in numbers: consult rates where they are not needed and where they are, utility
    and safety, and whether the intervals separate the estimators."""
    names = list(ivs)
    parts = []
    for key, what in (("consult_rate/utility", "consult on utility prompts (where the rules cannot help)"),
                      ("consult_rate/harmful", "consult on harmful prompts"),
                      ("consult_rate/sensitive", "consult on sensitive prompts (where only the rules tell)"),
                      ("utility_accuracy", "utility accuracy"), ("safety_rate", "safety rate"),
                      ("over_refusal_rate", "over-refusal rate")):
        have = [n for n in names if key in ivs[n]]
        if not have:
            continue
        vals = ", ".join(f"{n} {ivs[n][key][0]:.2f}" for n in have)
        s = f" (after SFT {start[key][0]:.2f})" if key in start else ""
        sep = ""
        if len(have) == 2:
            a, b = (ivs[n][key] for n in have)
            sep = "; the intervals separate them" if _separated(a, b) else "; the intervals overlap"
        parts.append(f"{what}: {vals}{s}{sep}")
    return "After RL, " + ". ".join(parts) + "."
