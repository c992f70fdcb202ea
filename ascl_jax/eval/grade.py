"""Score completions written elsewhere (another stack, an API, a paper's released outputs) on a benchmark
with the same answer extraction and judge as `ascl eval`, so their numbers and ours are comparable.

Completions file: JSON lines `{"id": ..., "completion": "..."}`. `id` is a prompt id of the benchmark as
`ascl eval` names it (`gsm8k-12`, `xstest-7`) or the same without the benchmark prefix (`12`). Several
lines with one id are samples of that prompt (scored as avg@k and pass@k; every graded prompt must then
have the same number). Prompts without a completion are not graded; the summary says how many were.

The final answer is the text after the last `</think>`, with tool-call blocks and tool responses removed
(`final_answer_text`). Tool calls are counted in the `<tool_call>` form (Hermes / Qwen); completions of
another tool syntax count as not consulting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ascl_jax.data.prompts import check_file
from ascl_jax.errors import UserError
from ascl_jax.eval.benchmark_rows import read_rows
from ascl_jax.eval.records import answer_record, compute_metrics
from ascl_jax.rl.judges import Judge
from ascl_jax.rl.refusal import final_answer_text
from ascl_jax.rollout.trajectory import Prompt

_TOOL_CALL = re.compile(r"<tool_call>")


class CompletionsFileError(UserError):
    """A malformed completions file (names the file and the line)."""


@dataclass(frozen=True)
class Completion:
    line: int
    id: str
    text: str


def read_completions(path: str | Path) -> list[Completion]:
    """The `{"id", "completion"}` lines of a JSONL file, in order; every error names the file and line."""
    check_file(Path(path), "completions", CompletionsFileError)
    if Path(path).suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        raise CompletionsFileError(f"{path}: expected JSON lines (.jsonl) of {{\"id\", \"completion\"}}")
    rows = read_rows(path, "completions")
    out = []
    for n, obj in rows.rows:
        pid, completion = obj.get("id"), obj.get("completion")
        if not isinstance(pid, str | int) or isinstance(pid, bool):
            raise CompletionsFileError(f"{rows.at(n)}: 'id' must be a string or an integer, got {pid!r}")
        if not isinstance(completion, str):
            raise CompletionsFileError(f"{rows.at(n)}: 'completion' must be a string, got "
                                       f"{type(completion).__name__}")
        out.append(Completion(n, str(pid), completion))
    if not out:
        raise CompletionsFileError(f"{path}: no completions (expected JSON lines {{\"id\", \"completion\"}})")
    return out


def match_completions(benchmark: str, prompts: Sequence[Prompt], completions: Sequence[Completion],
                      where: str) -> list[tuple[Prompt, Completion]]:
    """(prompt, completion) pairs, a prompt's samples as `<id>#s<j>` (meta `base_id`, `sample`) when it
    has several. Unknown ids and unequal sample counts fail naming the file and line."""
    by_id = {p.id: p for p in prompts}
    grouped: dict[str, list[Completion]] = {}
    for c in completions:
        pid = c.id if c.id in by_id else f"{benchmark}-{c.id}"
        if pid not in by_id:
            known = ", ".join(list(by_id)[:3])
            raise CompletionsFileError(f"{where}:{c.line}: id {c.id!r} is not a prompt of {benchmark} "
                                       f"(ids look like {known}, ...)")
        grouped.setdefault(pid, []).append(c)
    counts = {len(v) for v in grouped.values()}
    if len(counts) > 1:
        pid = next(k for k, v in grouped.items() if len(v) != max(counts))
        raise CompletionsFileError(f"{where}: prompt {pid} has {len(grouped[pid])} completions, others have "
                                   f"{max(counts)}; give every prompt the same number of samples")
    k = counts.pop()
    out = []
    for p in prompts:  # benchmark order, so results do not depend on the file's order
        for j, c in enumerate(grouped.get(p.id, [])):
            prompt = p if k == 1 else replace(p, id=f"{p.id}#s{j}", meta={**p.meta, "base_id": p.id, "sample": j})
            out.append((prompt, c))
    return out


def grade(benchmark: str, prompts: Sequence[Prompt], completions: Sequence[Completion], judge: Judge, *,
          where: str, n_boot: int = 1000, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Judge every completion's final answer; return (metrics as `compute_metrics` gives them, records)."""
    pairs = match_completions(benchmark, prompts, completions, where)
    answers = [final_answer_text(c.text) for _, c in pairs]
    verdicts = judge.judge_batch([p for p, _ in pairs], answers)
    key = f"graded:{judge.name}"
    records = []
    for (p, c), answer, verdict in zip(pairs, answers, verdicts):
        calls = len(_TOOL_CALL.findall(c.text))
        # a completion that ends without an answer (cut by a length limit) reads as not answered
        stop = "eos" if answer else "length"
        records.append(answer_record(p, answer, c.text, verdict, key, stop_reason=stop, num_tool_calls=calls,
                                     consulted=calls > 0, rule_ids=[], tool_categories=[]))
    metrics = compute_metrics(records, n_boot, seed)
    metrics["graded_prompts"] = len({r["base_id"] for r in records})
    metrics["benchmark_prompts"] = len(prompts)
    return metrics, records
