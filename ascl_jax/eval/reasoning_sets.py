"""Parsers of the reasoning (utility) benchmarks: GSM8K and MATH-500 (a numeric or expression answer read
from `\\boxed{}`), MMLU-Pro and ARC-Challenge (multiple choice: meta `choices` holds the option texts in
letter order and `reference` the correct letter, so `utility_correct` grades the option chosen)."""

from __future__ import annotations

import re

from ascl_jax.eval.benchmark_rows import (
    BenchmarkFileError,
    Rows,
    benchmark_meta,
    cell,
    make_prompt,
    optional_cell,
    require_columns,
)
from ascl_jax.rl.choice_answers import LETTERS
from ascl_jax.rollout.trajectory import Prompt

# Appended to maths questions so the answer can be read (answers_match reads \boxed{} first).
MATH_INSTRUCTION = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
# MMLU-Pro's own chain-of-thought instruction, used for every multiple-choice set.
CHOICE_INSTRUCTION = ('\n\nThink step by step and then finish your answer with "The answer is (X)" where X is '
                      "the letter of the correct option.")


_GSM_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_reference(answer: str) -> str | None:
    """The number after GSM8K's `####` marker (thousands separators removed), or None."""
    m = _GSM_ANSWER.search(answer or "")
    return m.group(1).replace(",", "").strip() if m else None


def parse_gsm8k(rows: Rows, benchmark: str = "gsm8k") -> list[Prompt]:
    """GSM8K (test.jsonl): question, answer ending in `#### <number>` (the reference)."""
    require_columns(rows, "question", "answer")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        ref = gsm8k_reference(cell(rows, n, row, "answer"))
        if not ref:
            raise BenchmarkFileError(f"{rows.at(n)}: column 'answer' has no '#### <answer>' line")
        out.append(make_prompt(f"{benchmark}-{i}", cell(rows, n, row, "question"),
                           benchmark_meta(benchmark, "utility", None, benchmark, reference=ref),
                           MATH_INSTRUCTION))
    return out


def parse_math500(rows: Rows, benchmark: str = "math500") -> list[Prompt]:
    """MATH-500 (test.jsonl): problem, answer (the reference), subject (the category), level, unique_id."""
    require_columns(rows, "problem", "answer")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        uid = optional_cell(rows, n, row, "unique_id")
        subject = optional_cell(rows, n, row, "subject")
        level = row.get("level")
        meta = benchmark_meta(benchmark, "utility", subject, benchmark, reference=cell(rows, n, row, "answer"), level=level,
                     unique_id=uid)
        out.append(make_prompt(f"{benchmark}-{i}", cell(rows, n, row, "problem"), meta, MATH_INSTRUCTION))
    return out


def choice_question(question: str, options: list[str]) -> str:
    """The question followed by its options as lettered lines ("A. ...")."""
    lines = [question.strip(), ""] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    return "\n".join(lines)


def _choice_prompt(pid: str, question: str, options: list[str], answer: int, meta: dict) -> Prompt:
    meta = {**meta, "reference": LETTERS[answer], "choices": list(options)}
    return make_prompt(pid, choice_question(question, options), meta, CHOICE_INSTRUCTION)


def parse_mmlu_pro(rows: Rows, benchmark: str = "mmlu_pro") -> list[Prompt]:
    """MMLU-Pro (test.jsonl): question, options (up to 10 texts), answer (letter) and/or answer_index,
    category, question_id, src."""
    require_columns(rows, "question", "options")
    if "answer" not in rows.columns and "answer_index" not in rows.columns:
        raise BenchmarkFileError(f"{rows.where}: missing column 'answer' (or 'answer_index'); found: "
                                 f"{', '.join(rows.columns)}")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        options = row.get("options")
        if not isinstance(options, list) or not 2 <= len(options) <= len(LETTERS) or not all(
                isinstance(o, str | int | float) for o in options):
            raise BenchmarkFileError(f"{rows.at(n)}: column 'options' must be a list of 2 to {len(LETTERS)} texts")
        options = [str(o).strip() for o in options]
        if row.get("answer_index") is not None:
            answer = row["answer_index"]
            if not isinstance(answer, int) or not 0 <= answer < len(options):
                raise BenchmarkFileError(f"{rows.at(n)}: column 'answer_index' is {answer!r}; expected 0 to "
                                         f"{len(options) - 1}")
        else:
            letter = (cell(rows, n, row, "answer") or "").upper()
            if len(letter) != 1 or LETTERS.find(letter) not in range(len(options)):
                raise BenchmarkFileError(f"{rows.at(n)}: column 'answer' is {row.get('answer')!r}; expected a "
                                         f"letter A to {LETTERS[len(options) - 1]}")
            answer = LETTERS.index(letter)
        qid = optional_cell(rows, n, row, "question_id")
        cat = optional_cell(rows, n, row, "category")
        src = optional_cell(rows, n, row, "src")
        out.append(_choice_prompt(f"{benchmark}-{qid or i}", cell(rows, n, row, "question"), options, answer,
                                  benchmark_meta(benchmark, "utility", cat, src)))
    return out


def parse_arc(rows: Rows, benchmark: str = "arc_challenge") -> list[Prompt]:
    """AI2 ARC (ARC-Challenge-Test.jsonl): id, question {stem, choices [{text, label}]}, answerKey; or the
    hub's layout (question text, choices {text: [...], label: [...]}). Labels are letters or digits ("1".."4"
    in some rows); options are lettered A, B, ... in the file's order."""
    require_columns(rows, "question", "answerKey")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        q = row.get("question")
        if isinstance(q, str) and isinstance(row.get("choices"), dict):  # the hub's layout (allenai/ai2_arc)
            c = row["choices"]
            q = {"stem": q, "choices": [{"text": t, "label": lab}
                                        for t, lab in zip(c.get("text") or [], c.get("label") or [])]}
        choices = q.get("choices") if isinstance(q, dict) else None
        if not isinstance(q, dict) or not isinstance(q.get("stem"), str) or not isinstance(choices, list) or not all(
                isinstance(c, dict) and isinstance(c.get("text"), str) and c.get("label") is not None
                for c in choices):
            raise BenchmarkFileError(f"{rows.at(n)}: column 'question' must be {{stem, choices: [{{text, label}}]}}")
        if not 2 <= len(choices) <= len(LETTERS):
            raise BenchmarkFileError(f"{rows.at(n)}: {len(choices)} choices; expected 2 to {len(LETTERS)}")
        labels = [str(c["label"]).strip() for c in choices]
        key = cell(rows, n, row, "answerKey")
        if key not in labels:
            raise BenchmarkFileError(f"{rows.at(n)}: answerKey {key!r} is not one of the labels {', '.join(labels)}")
        pid = optional_cell(rows, n, row, "id")
        out.append(_choice_prompt(f"{benchmark}-{pid or i}", q["stem"], [c["text"].strip() for c in choices],
                                  labels.index(key), benchmark_meta(benchmark, "utility", None, benchmark)))
    return out
