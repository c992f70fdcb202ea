"""Run reports: a markdown file with tables and PNG plots (reward and consult rate per class over the
RL steps; safety against utility and against compliance for each evaluated model), and results.json for
machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402

from ascl_jax.eval.groups import group_summaries, group_tables, summary_rows  # noqa: E402
from ascl_jax.eval.seeds import rl_curve, smooth, wilson_interval  # noqa: E402

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
    """Reward and consult rate per class against the RL step (1 = the first RL step), smoothed over 5
    steps, with the raw points faint."""
    steps, reward = rl_curve(metrics, "reward")
    if not steps.size:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(steps, reward, ".", alpha=0.25, markersize=4)
    a.plot(steps, smooth(reward), label="mean reward (5-step average)")
    a.set_xlabel("RL step"), a.set_ylabel("reward"), a.set_title(f"{title}: reward"), a.legend(fontsize=8)
    classes = sorted({k.split("/", 1)[1] for m in metrics if "reward" in m for k in m if k.startswith("consult_rate/")})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, c in enumerate(classes):
        s, v = rl_curve(metrics, f"consult_rate/{c}")
        colour = colours[i % len(colours)]
        b.plot(s, v, ".", color=colour, alpha=0.2, markersize=4)
        b.plot(s, smooth(v), color=colour, label=c)
    b.set_xlabel("RL step"), b.set_ylabel("consult rate"), b.set_ylim(-0.05, 1.05), b.set_title(f"{title}: consult rate")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _wilson(r: dict[str, Any], key: str) -> tuple[float, float] | None:
    n = r.get(f"n/{key}")
    return wilson_interval(round(r[key] * n), n) if n else None


# The x axes of the safety plot's panels: (rate, axis label, title); "compliance" is 1 − over-refusal rate.
SAFETY_AXES = (("utility_accuracy", "utility accuracy", "utility"),
               ("compliance", "compliance (1 − over-refusal)", "compliance"))


def _point(r: dict[str, Any], key: str) -> tuple[float, tuple[float, float] | None] | None:
    """(rate, its 95% Wilson interval or None) of `key` in one model's results, None where it has no such
    rate; "compliance" is 1 − over_refusal_rate, with the interval flipped."""
    if key == "compliance":
        if r.get("over_refusal_rate") is None:
            return None
        iv = _wilson(r, "over_refusal_rate")
        return 1.0 - r["over_refusal_rate"], ((1.0 - iv[1], 1.0 - iv[0]) if iv else None)
    return (r[key], _wilson(r, key)) if r.get(key) is not None else None


def plot_safety_utility(results: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Each evaluated model (after SFT, after RL, the baseline) at (utility accuracy, safety rate) and,
    beside it, at (compliance, safety rate): both sides of the trade-off, with 95% Wilson intervals of
    every proportion. A panel no model has both rates for is left out."""
    panels = []
    for key, label, title in SAFETY_AXES:
        points = {n: (x, y) for n, r in results.items()
                  if (x := _point(r, key)) is not None and (y := _point(r, "safety_rate")) is not None}
        if points:
            panels.append((label, title, points))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, (label, title, points) in zip(axes[0], panels):
        for name, ((x, xi), (y, yi)) in points.items():
            # max(0, .): at a rate of 0 or 1 the bound and the rate differ only by rounding
            xerr = [[max(0.0, x - xi[0])], [max(0.0, xi[1] - x)]] if xi else None
            yerr = [[max(0.0, y - yi[0])], [max(0.0, yi[1] - y)]] if yi else None
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=name)
        ax.set_xlabel(label), ax.set_ylabel("safety rate")
        ax.set_xlim(-0.05, 1.05), ax.set_ylim(-0.05, 1.05), ax.set_title(f"safety against {title} (95% intervals)")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_paragraph(results: dict[str, dict[str, Any]]) -> str:
    """One paragraph that states in numbers what each evaluated model did (n prompts per rate)."""
    parts = []
    for name, r in results.items():
        bits = []
        for key, what in (("safety_rate", "safety"), ("over_refusal_rate", "over-refusal"),
                          ("utility_accuracy", "utility"), ("rule_accuracy", "rule accuracy")):
            if r.get(key) is not None:
                iv = _wilson(r, key)
                bits.append(f"{what} {r[key]:.2f}" + (f" [{iv[0]:.2f}, {iv[1]:.2f}] of {r[f'n/{key}']}" if iv else ""))
        consult = [f"{c} {r[f'consult_rate/{c}']:.2f}" for c in ("harmful", "sensitive", "utility")
                   if r.get(f"consult_rate/{c}") is not None]
        if consult:
            bits.append("consults on " + ", ".join(consult))
        if bits:
            parts.append(f"{name}: " + "; ".join(bits))
    if not parts:
        return ""
    return ("In numbers (95% Wilson intervals, and the number of prompts each rate is over): "
            + ". ".join(parts) + ".")


def write_report(run_dir: Path, title: str, results: dict[str, dict[str, Any]], metrics: Sequence[dict[str, Any]],
                 notes: Sequence[str] = ()) -> Path:
    """report.md (+ PNGs) and results.json in `run_dir`."""
    run_dir = Path(run_dir)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    curves = plot_training_curves(metrics, run_dir / "training_curves.png", title)
    scatter = plot_safety_utility(results, run_dir / "safety_utility.png")
    parts = [f"# {title}", "", results_table(results), "", run_paragraph(results), ""]
    parts += [f"- {n}" for n in notes]
    if curves:
        parts += ["", "## RL training", "", f"![reward and consult rate per class]({curves.name})"]
    if scatter:
        parts += ["", "## Safety against utility and compliance", "",
                  f"![safety against utility and against compliance]({scatter.name})"]
    path = run_dir / "report.md"
    path.write_text("\n".join(parts) + "\n")
    return path


# ------------------------------------------------------------------------------ benchmark evaluations
# `ascl eval` results: {label: {"model", "config", "benchmarks": {name: metrics}, "overall": metrics}}, metrics
# as `ascl_jax.eval.runner.compute_metrics` returns them (point estimates, "ci", "by_category").

H_AVG_NOTE = ("each average is the unweighted mean over the group's benchmarks; H-avg = harmonic mean of (safety "
              "avg, 100 − over-refusal avg, reasoning avg), Wang et al. 2026 (arXiv 2602.13562), App. E; it is not "
              "given without all three averages")
EVAL_ROWS = ("n", "samples", "safety_rate", "strongreject_score", "over_refusal_rate", "utility_accuracy", "consult_rate",
             "consult_rate/harmful", "consult_rate/benign", "consult_rate/utility", "rules_retrieved", "answered_rate",
             "judge_parse_errors")


def _with_ci(metrics: dict[str, Any], key: str) -> str:
    v = metrics.get(key)
    if v is None:
        return "–"
    ci = (metrics.get("ci") or {}).get(key)
    return f"{_fmt(v)} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and key != "n" else _fmt(v)


def eval_table_rows(models: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(row label, one cell per model): each benchmark's metrics, then the pooled `all` rows; a value is
    shown with its 95% bootstrap interval where there is one."""
    benches: list[str] = []
    for m in models.values():
        benches += [b for b in m.get("benchmarks", {}) if b not in benches]
    sections = [(b, [m.get("benchmarks", {}).get(b) or {} for m in models.values()]) for b in benches]
    if len(benches) > 1:
        sections.append(("all", [m.get("overall") or {} for m in models.values()]))
    rows = []
    for name, cols in sections:
        passes = sorted({k for c in cols for k in c if k.startswith("pass@")}, key=lambda k: int(k[5:]))
        for key in (*EVAL_ROWS, *passes):
            if any(c.get(key) is not None for c in cols):
                rows.append((f"{name} / {key}", [_with_ci(c, key) for c in cols]))
    return rows


def markdown_table(header: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---|" * (len(header) - 1)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr><td>" + escape(label) + "</td>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"
                   for label, cells in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def _category_score(m: dict[str, Any]) -> tuple[str, float | None]:
    for key in ("safety_rate", "over_refusal_rate", "utility_accuracy"):
        if m.get(key) is not None:
            return key, m[key]
    return "", None


def _bench(m: dict[str, Any], bench: str) -> dict[str, Any]:
    return (m.get("benchmarks") or {}).get(bench) or {}


def _has_rubric_score(models: dict[str, dict[str, Any]]) -> bool:
    return any(b.get("strongreject_score") is not None
               for m in models.values() for b in (m.get("benchmarks") or {}).values())


def category_columns(models: dict[str, dict[str, Any]], bench: str) -> tuple[str, ...]:
    """The per-model columns of `bench`'s category table: the score and the consult rate, and the mean
    StrongREJECT score where a model was judged by the rubric on it."""
    with_rubric = any(_bench(m, bench).get("strongreject_score") is not None for m in models.values())
    return ("score", "consult rate", *(("StrongREJECT",) if with_rubric else ()))


def category_table_rows(models: dict[str, dict[str, Any]], bench: str) -> list[tuple[str, list[str]]]:
    """Per category of `bench`: the category's score (safety rate, over-refusal rate or accuracy, by its
    class), consult rate and, where `category_columns` has it, StrongREJECT score: those cells per model."""
    with_rubric = "StrongREJECT" in category_columns(models, bench)
    cats: list[str] = []
    for m in models.values():
        cats += [c for c in _bench(m, bench).get("by_category", {}) if c not in cats]
    rows = []
    for c in cats:
        cells = []
        for m in models.values():
            cm = (_bench(m, bench).get("by_category") or {}).get(c) or {}
            key, _ = _category_score(cm)
            cells += [f"{key.replace('_', ' ')} {_with_ci(cm, key)}" if key else "–", _with_ci(cm, "consult_rate")]
            if with_rubric:
                cells.append(_with_ci(cm, "strongreject_score"))
        n = max((_bench(m, bench).get("by_category") or {}).get(c, {}).get("n", 0) for m in models.values())
        rows.append((f"{c} (n={n})", cells))
    return rows


def plot_eval_scatter(models: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Safety rate (y) against utility accuracy (x) per model, with 95% intervals; where no model was run
    on a utility benchmark, x is benign compliance (1 − over-refusal rate)."""
    use_utility = any((m.get("overall") or {}).get("utility_accuracy") is not None for m in models.values())
    points = {}
    for name, m in models.items():
        o = m.get("overall") or {}
        ci = o.get("ci") or {}
        if o.get("safety_rate") is None:
            continue
        if use_utility and o.get("utility_accuracy") is not None:
            x, xci = o["utility_accuracy"], ci.get("utility_accuracy")
        elif not use_utility and o.get("over_refusal_rate") is not None:
            x = 1.0 - o["over_refusal_rate"]
            c = ci.get("over_refusal_rate")
            xci = [1.0 - c[1], 1.0 - c[0]] if c else None
        else:
            continue
        points[name] = (x, o["safety_rate"], xci, ci.get("safety_rate"))
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for name, (x, y, xci, yci) in points.items():
        xerr = [[x - xci[0]], [xci[1] - x]] if xci else None
        yerr = [[y - yci[0]], [yci[1] - y]] if yci else None
        ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=name)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("utility accuracy" if use_utility else "benign compliance (1 − over-refusal)")
    ax.set_ylabel("safety rate (1 − attack success)")
    ax.set_xlim(-0.05, 1.05), ax.set_ylim(-0.05, 1.05), ax.set_title("safety against utility")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_consult_by_category(models: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Horizontal bars: consult rate per benchmark category, one bar per model."""
    import numpy as np

    labels: list[str] = []
    for m in models.values():
        for b, bm in (m.get("benchmarks") or {}).items():
            labels += [f"{b}: {c}" for c in (bm.get("by_category") or {}) if f"{b}: {c}" not in labels]
    if not labels:
        return None

    def value(m, label):
        b, c = label.split(": ", 1)
        return ((((m.get("benchmarks") or {}).get(b) or {}).get("by_category") or {}).get(c) or {}).get("consult_rate")

    k = len(models)
    height = 0.8 / k
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(labels) * max(1, k * 0.6) + 1)))
    ys = np.arange(len(labels))
    for i, (name, m) in enumerate(models.items()):
        vals = [value(m, lab) or 0.0 for lab in labels]
        ax.barh(ys + i * height - 0.4 + height / 2, vals, height=height, label=name)
    ax.set_yticks(ys, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0), ax.set_xlabel("consult rate"), ax.set_title("rule consults per category")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_eval_report(out_dir: Path, models: dict[str, dict[str, Any]], title: str = "ASCL evaluation",
                      notes: Sequence[str] = ()) -> dict[str, Path]:
    """results.json, report.md, report.html and two plots (safety_utility.png, consult_by_category.png)
    in `out_dir`: the summary (the paper's three group averages and H-avg, `groups.summary_rows`), the
    table of each group, one table of all metrics with a column per model, then per-category tables per
    benchmark. results.json holds `models` and the same `summary` ({model: `GroupSummary.as_dict()`})."""
    from html import escape

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.json"
    tmp = results.with_name(results.name + ".tmp")
    summary = {n: s.as_dict() for n, s in group_summaries(models).items()}
    tmp.write_text(json.dumps({"title": title, "models": models, "summary": summary}, indent=2))
    tmp.replace(results)
    names = list(models)
    scatter = plot_eval_scatter(models, out_dir / "safety_utility.png")
    bars = plot_consult_by_category(models, out_dir / "consult_by_category.png")
    main_rows = eval_table_rows(models)
    benches: list[str] = []
    for m in models.values():
        benches += [b for b in m.get("benchmarks", {}) if b not in benches]
    judge = {n: (m.get("config") or {}).get("judge") for n, m in models.items()}
    lines = ["models: " + ", ".join(f"{n} = {m.get('model')}" for n, m in models.items()),
             "judge: " + ", ".join(f"{n}: {j}" for n, j in judge.items()),
             "values: point estimate [95% bootstrap interval]; safety_rate = 1 − attack success on harmful "
             "prompts; over_refusal_rate = refusals on benign prompts"]
    if _has_rubric_score(models):
        lines.append("strongreject_score = mean StrongREJECT rubric score on harmful prompts (0 = refused or "
                     "useless, 1 = fully convincing and specific); unreadable judge outputs are left out of it and "
                     "counted in judge_parse_errors")
    lines += list(notes)

    md = [f"# {title}", ""]
    html = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
            "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px} th{background:#eee}</style></head><body>",
            f"<h1>{escape(title)}</h1>"]
    summary_title = "Summary: the paper's group averages (%) and H-avg"
    md += [f"## {summary_title}", "", markdown_table(["", *names], summary_rows(models)), "",
           f"- {H_AVG_NOTE}", ""]
    html += [f"<h2>{escape(summary_title)}</h2>", html_table(["", *names], summary_rows(models)),
             f"<p>{escape(H_AVG_NOTE)}</p>"]
    for group, header, rows in group_tables(models):
        md += [f"## {group.title}", "", markdown_table(["benchmark", *header], rows), ""]
        html += [f"<h2>{escape(group.title)}</h2>", html_table(["benchmark", *header], rows)]
    md += ["## All metrics", "", markdown_table(["metric", *names], main_rows), ""] + [f"- {n}" for n in lines]
    html += ["<h2>All metrics</h2>", html_table(["metric", *names], main_rows), "<ul>"]
    html += [f"<li>{escape(n)}</li>" for n in lines] + ["</ul>"]
    for img, caption in ((scatter, "Safety against utility"), (bars, "Consult rate per category")):
        if img:
            md += ["", f"## {caption}", "", f"![{caption.lower()}]({img.name})"]
            html += [f"<h2>{escape(caption)}</h2>", f"<img src='{escape(img.name)}' alt='{escape(caption)}'>"]
    for b in benches:
        rows = category_table_rows(models, b)
        cat_header = ["category"] + [f"{n}: {h}" for n in names for h in category_columns(models, b)]
        if rows:
            md += ["", f"## {b}: per category", "", markdown_table(cat_header, rows)]
            html += [f"<h2>{escape(b)}: per category</h2>", html_table(cat_header, rows)]
    html.append("</body></html>")
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text("\n".join(md) + "\n")
    html_path.write_text("\n".join(html) + "\n")
    out = {"results": results, "markdown": md_path, "html": html_path}
    if scatter:
        out["scatter"] = scatter
    if bars:
        out["consult_bars"] = bars
    return out
