"""Run reports: a markdown file with tables and PNG plots (reward and consult rate per class over the
RL steps; safety against utility for each evaluated model), and results.json for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402

ROWS = ("safety_rate", "over_refusal_rate", "utility_accuracy", "rule_accuracy", "consult_rate",
        "consult_rate/harmful", "consult_rate/sensitive", "consult_rate/utility", "consult_rate/benign")


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def results_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one column per evaluated model, one row per metric present in any of them."""
    names = list(results)
    rows = [r for r in ROWS if any(r in results[n] for n in names)]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(_fmt(results[n].get(r)) for n in names) + " |")
    return "\n".join(lines)


def plot_training_curves(metrics: Sequence[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Reward and consult rate per class against the step, for the RL steps in `metrics`."""
    rl = [m for m in metrics if "reward" in m]
    if not rl:
        return None
    steps = [m["step"] for m in rl]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(steps, [m["reward"] for m in rl], label="mean reward")
    a.set_xlabel("step"), a.set_ylabel("reward"), a.set_title(f"{title}: reward")
    classes = sorted({k.split("/", 1)[1] for m in rl for k in m if k.startswith("consult_rate/")})
    for c in classes:
        b.plot(steps, [m.get(f"consult_rate/{c}") for m in rl], label=c)
    b.set_xlabel("step"), b.set_ylabel("consult rate"), b.set_ylim(-0.05, 1.05), b.set_title(f"{title}: consult rate")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_consult_comparison(runs: dict[str, Sequence[dict[str, Any]]], path: Path) -> Path | None:
    """Consult rate per class over the RL steps, one panel per class, one line per run (e.g. GRPO, IFPO)."""
    classes = sorted({k.split("/", 1)[1] for ms in runs.values() for m in ms for k in m if k.startswith("consult_rate/")})
    if not classes:
        return None
    fig, axes = plt.subplots(1, len(classes), figsize=(3.6 * len(classes), 3.2), squeeze=False)
    for ax, c in zip(axes[0], classes):
        for name, ms in runs.items():
            rl = [m for m in ms if f"consult_rate/{c}" in m]
            ax.plot([m["step"] for m in rl], [m[f"consult_rate/{c}"] for m in rl], label=name)
        ax.set_title(f"consult rate: {c}"), ax.set_xlabel("step"), ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_safety_utility(results: dict[str, dict[str, Any]], path: Path) -> Path | None:
    points = {n: r for n, r in results.items() if r.get("safety_rate") is not None and r.get("utility_accuracy") is not None}
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(4.6, 4))
    for name, r in points.items():
        ax.scatter(r["utility_accuracy"], r["safety_rate"], s=50)
        ax.annotate(name, (r["utility_accuracy"], r["safety_rate"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("utility accuracy"), ax.set_ylabel("safety rate")
    ax.set_xlim(-0.05, 1.05), ax.set_ylim(-0.05, 1.05), ax.set_title("safety against utility")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dir: Path, title: str, results: dict[str, dict[str, Any]], metrics: Sequence[dict[str, Any]],
                 notes: Sequence[str] = ()) -> Path:
    """report.md (+ PNGs) and results.json in `run_dir`."""
    run_dir = Path(run_dir)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    curves = plot_training_curves(metrics, run_dir / "training_curves.png", title)
    scatter = plot_safety_utility(results, run_dir / "safety_utility.png")
    parts = [f"# {title}", "", results_table(results), ""]
    parts += [f"- {n}" for n in notes]
    if curves:
        parts += ["", "## RL training", "", f"![reward and consult rate per class]({curves.name})"]
    if scatter:
        parts += ["", "## Safety against utility", "", f"![safety against utility]({scatter.name})"]
    path = run_dir / "report.md"
    path.write_text("\n".join(parts) + "\n")
    return path
