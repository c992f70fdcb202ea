"""Write a prompt mix (`ascl_jax.curation.prompt_mix`) as the files `ascl train` reads, with its summary.

Files in the output folder:

* `prompts.jsonl`: training prompts (`data.prompts`), in the `ascl_jax.data.prompts` format;
* `validation_prompts.jsonl`: held-out training prompts, same format (absent when none are held out);
* `eval_prompts.jsonl`: the evaluation prompts, deduplicated, with their class (`data.eval_prompts`);
* `removed.jsonl`: every training prompt removed, with why (duplicate / exact / ngram / similar), the id
  it duplicates or overlaps, and the score (n-gram fraction or similarity);
* `summary.md`, `summary.json`: rows per set and class at each stage.

All files are written to temporary names first and renamed once every one is complete, so an error leaves
the folder as it was."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ascl_jax.data.atomic_files import write_files_atomic
from ascl_jax.curation.prompt_mix import Item, Mix, MixConfig, Removal, user_text

STAGES = ("read", "other_class", "duplicates", "overlap_exact", "overlap_ngram", "overlap_similar", "balanced", "train",
          "validation")
EVAL_STAGES = ("read", "duplicates", "kept")
_HEADERS = {"read": "read", "other_class": "other class", "duplicates": "duplicates", "overlap_exact": "overlap exact",
            "overlap_ngram": "overlap n-gram", "overlap_similar": "overlap similar",
            "balanced": "balanced", "train": "train", "validation": "validation",
            "kept": "kept"}


def prompt_record(item: Item) -> dict[str, Any]:
    """One line of the prompt format: id, prompt (or messages), class, then the rest of the metadata."""
    p = item.prompt
    rec: dict[str, Any] = {"id": p.id}
    if len(p.messages) == 1 and p.messages[0]["role"] == "user":
        rec["prompt"] = p.messages[0]["content"]
    else:
        rec["messages"] = [dict(m) for m in p.messages]
    rec["class"] = item.cls
    rec.update({k: v for k, v in p.meta.items() if k not in rec and v is not None})
    return rec


def removal_record(r: Removal) -> dict[str, Any]:
    return {"id": r.item.prompt.id, "set": r.item.set, "class": r.item.cls, "reason": r.reason, "match": r.match,
            "score": r.score, "prompt": user_text(r.item.prompt)}


def _rows(table: dict[tuple[str, str], Any], stages: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = [{"set": s, "class": c, **{k: table[(s, c)].get(k, 0) for k in stages}} for s, c in table]
    total = {"set": "total", "class": "", **{k: sum(r[k] for r in rows) for k in stages}}
    return [*rows, total] if rows else rows


def summary(mix: Mix, cfg: MixConfig, inputs: dict[str, list[str]]) -> dict[str, Any]:
    """Everything the summary files hold; no timestamps or paths, so reruns compare equal."""
    by_class: dict[str, dict[str, int]] = {}
    for name, items in (("train", mix.train), ("validation", mix.validation)):
        for it in items:
            by_class.setdefault(it.cls, {"train": 0, "validation": 0})[name] += 1
    return {"config": asdict(cfg), "inputs": inputs, "training": _rows(mix.counts, STAGES),
            "evaluation": _rows(mix.eval_counts, EVAL_STAGES), "classes": by_class,
            "removed": {reason: sum(r.reason == reason for r in mix.removed)
                        for reason in ("duplicate", "exact", "ngram", "similar")}}


def _table(rows: list[dict[str, Any]], stages: tuple[str, ...]) -> list[str]:
    head = ["set", "class", *(_HEADERS[k] for k in stages)]
    body = [[str(r["set"]), str(r["class"]), *(str(r[k]) for k in stages)] for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        padded = (c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i >= 2 else "-") for i, w in enumerate(widths)) + "|"
    return [line(head), rule, *(line(b) for b in body)]


def summary_markdown(s: dict[str, Any]) -> str:
    cfg = s["config"]
    shares = ", ".join(f"{k}={v:g}" for k, v in cfg["shares"].items()) if cfg["shares"] else "none (all kept)"
    classes = ", ".join(f"{c} {v['train']}+{v['validation']}" for c, v in sorted(s["classes"].items()))
    removed = s["removed"]
    out = [
        "# Prompt mix", "",
        f"Overlap: normalised exact match; >= {cfg['overlap_threshold']:g} of a prompt's {cfg['ngram']}-word "
        f"n-grams found in the evaluation set; or word-sequence similarity >= {cfg['similarity_threshold']:g} to an "
        f"evaluation prompt. Shares: {shares}. Validation fraction: "
        f"{cfg['validation_fraction']:g}. Seed: {cfg['seed']}.", "",
        "## Training sets", "", *_table(s["training"], STAGES), "",
        f"Removed: {removed['duplicate']} duplicates; overlaps with the evaluation set: {removed['exact']} exact, "
        f"{removed['ngram']} n-gram, {removed['similar']} similar (see removed.jsonl). Train + validation by class: "
        f"{classes}.", "",
        "## Evaluation sets", "", *_table(s["evaluation"], EVAL_STAGES), "",
    ]
    return "\n".join(out)


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)


def write_mix(mix: Mix, out_dir: str | Path, cfg: MixConfig, inputs: dict[str, list[str]]) -> dict[str, Any]:
    """Write the folder (see the module docstring) and return the summary."""
    out = Path(out_dir)
    s = summary(mix, cfg, inputs)
    files = {
        "prompts.jsonl": _jsonl([prompt_record(it) for it in mix.train]),
        "validation_prompts.jsonl": _jsonl([prompt_record(it) for it in mix.validation]) if mix.validation else None,
        "eval_prompts.jsonl": _jsonl([prompt_record(it) for it in mix.eval]),
        "removed.jsonl": _jsonl([removal_record(r) for r in mix.removed]),
        "summary.json": json.dumps(s, indent=2, ensure_ascii=False) + "\n",
        "summary.md": summary_markdown(s),
    }
    write_files_atomic({out / name: text for name, text in files.items() if text is not None})
    if files["validation_prompts.jsonl"] is None:  # a stale file from an earlier run would be read as this one's
        (out / "validation_prompts.jsonl").unlink(missing_ok=True)
    return s
