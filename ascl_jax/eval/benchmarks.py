"""Safety, over-refusal and reasoning benchmarks by name, as lists of `Prompt`s.

Every loader returns `list[Prompt]` whose `meta` carries `class` (harmful: should be refused; benign: should
be answered; utility: has a verifiable `reference` answer, and `choices` for multiple choice), `category`
(the benchmark's own category, or None), `source` (the benchmark, or the upstream source a row names) and
`benchmark`. The parsers live in `safety_sets.py` and `reasoning_sets.py`, the file readers in
`benchmark_rows.py`.

Files are read by format: `.csv`, `.tsv`, `.jsonl` / `.json` (one object a line, or one JSON array),
`.parquet` (needs the optional `pyarrow` package) and `.txt` (one prompt a line, HarmBench). With `hub=True` a
benchmark is read from the Hugging Face hub through the optional `datasets` package instead (network needed).

The shipped files (XSTest, StrongREJECT, HarmBench, JailbreakBench harmful, GSM8K, MATH-500, MMLU-Pro,
ARC-Challenge) live in `../shared/data/benchmarks` relative to the repository root; the others are looked up
under a data folder the user gives (`--data-dir`) with the file names listed by `ascl eval
--list-benchmarks`, or passed as `name=PATH`.

A bad file fails with one message naming the file, the line (or row) and the column.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ascl_jax.errors import UserError
from ascl_jax.eval.benchmark_rows import BenchmarkFileError, Rows, read_hub_rows, read_rows
from ascl_jax.eval.reasoning_sets import (
    MATH_INSTRUCTION,
    gsm8k_reference,
    parse_arc,
    parse_gsm8k,
    parse_math500,
    parse_mmlu_pro,
)
from ascl_jax.eval.safety_sets import (
    load_text_lines,
    parse_harmbench,
    parse_jailbreakbench,
    parse_oktest,
    parse_orbench,
    parse_saladbench,
    parse_strongreject,
    parse_wildchat,
    parse_wildguardtest,
    parse_wildjailbreak,
    parse_xstest,
)
from ascl_jax.rollout.trajectory import Prompt

__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkFileError", "CLASSES", "MATH_INSTRUCTION", "Rows", "SHARED_DATA_DIR",
           "benchmark_names", "class_counts", "fixed_subset", "gsm8k_reference", "load_benchmark", "read_rows", "resolve_benchmark"]

CLASSES = ("harmful", "benign", "sensitive", "utility")
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "benchmarks"

# ------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark: how to parse its rows, where its file is by default (relative to the data
    folder), whether that file ships with the project (in ../shared/data/benchmarks), and where it is on
    the hub (repo, config, split, extra load_dataset arguments) when the user passes --hub."""

    name: str
    parse: Callable[[Rows, str], list[Prompt]]
    default_file: str
    shipped: bool = False
    hub: tuple[str, str | None, str, dict[str, Any]] | None = None
    description: str = ""

    def default_path(self, data_dir: str | Path | None = None) -> Path:
        base = Path(data_dir) if data_dir is not None else SHARED_DATA_DIR
        return base / self.default_file

    def load_file(self, path: str | Path) -> list[Prompt]:
        path = Path(path)
        if path.suffix.lower() == ".txt":
            if not self.default_file.endswith(".txt"):
                raise BenchmarkFileError(f"{path}: benchmark {self.name!r} reads a table (.csv, .tsv, .jsonl or "
                                         f".parquet like {Path(self.default_file).name}), not one prompt a line")
            return load_text_lines(path, self.name)
        return self.parse(read_rows(path, "benchmark"), self.name)

    def load_hub(self) -> list[Prompt]:
        if self.hub is None:
            raise UserError(f"benchmark {self.name!r} has no hub source; it ships with the project or is read "
                            "from a file (--data-dir or name=PATH)")
        repo, config, split, kwargs = self.hub
        return self.parse(read_hub_rows(repo, config, split, **kwargs), self.name)


def _with(parse, **fixed):
    return lambda rows, name: parse(rows, name, **fixed)


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("xstest", parse_xstest, "xstest/xstest_prompts.csv", True,
              description="XSTest v2: 250 safe prompts that look unsafe (benign) + 200 unsafe contrasts"),
    Benchmark("strongreject", parse_strongreject, "strongreject/strongreject_dataset.csv", True,
              description="StrongREJECT: 313 forbidden prompts, 6 categories"),
    Benchmark("strongreject-small", parse_strongreject, "strongreject/strongreject_small_dataset.csv", True,
              description="StrongREJECT small: 60 forbidden prompts"),
    Benchmark("harmbench", parse_harmbench, "harmbench/harmbench_prompts.txt", True,
              description="HarmBench standard text behaviours, one a line"),
    Benchmark("jailbreakbench", _with(parse_jailbreakbench, cls="harmful"), "jailbreakbench/behaviors.csv", True,
              hub=("JailbreakBench/JBB-Behaviors", "behaviors", "harmful", {}),
              description="JBB-Behaviors: 100 harmful behaviours"),
    Benchmark("jailbreakbench-benign", _with(parse_jailbreakbench, cls="benign"),
              "jailbreakbench/benign-behaviors.csv", hub=("JailbreakBench/JBB-Behaviors", "behaviors", "benign", {}),
              description="JBB-Behaviors: 100 benign behaviours"),
    Benchmark("wildjailbreak", parse_wildjailbreak, "wildjailbreak/eval.tsv",
              hub=("allenai/wildjailbreak", "eval", "train", {"delimiter": "\t", "keep_default_na": False}),
              description="WildJailbreak eval split: 2000 adversarial harmful + 210 adversarial benign"),
    Benchmark("orbench-hard", _with(parse_orbench, cls="benign"), "orbench/or-bench-hard-1k.csv",
              hub=("bench-llm/or-bench", "or-bench-hard-1k", "train", {}),
              description="OR-Bench-Hard-1K: benign prompts that look harmful"),
    Benchmark("orbench-toxic", _with(parse_orbench, cls="harmful"), "orbench/or-bench-toxic.csv",
              hub=("bench-llm/or-bench", "or-bench-toxic", "train", {}),
              description="OR-Bench-Toxic: harmful prompts"),
    Benchmark("wildguardtest", parse_wildguardtest, "wildguardtest/wildguardtest.parquet",
              hub=("allenai/wildguardmix", "wildguardtest", "test", {}),
              description="WildGuardTest prompts, by prompt harm label"),
    Benchmark("gsm8k", parse_gsm8k, "gsm8k/test.jsonl", True, hub=("openai/gsm8k", "main", "test", {}),
              description="GSM8K test: grade-school maths (utility)"),
    Benchmark("math500", parse_math500, "math500/test.jsonl", True, hub=("HuggingFaceH4/MATH-500", None, "test", {}),
              description="MATH-500 (utility)"),
    Benchmark("mmlu-pro", parse_mmlu_pro, "mmlu_pro/test.jsonl", True, hub=("TIGER-Lab/MMLU-Pro", None, "test", {}),
              description="MMLU-Pro test: 12,032 ten-option questions, 14 subjects (utility)"),
    Benchmark("arc-challenge", parse_arc, "arc_challenge/ARC-Challenge-Test.jsonl", True,
              hub=("allenai/ai2_arc", "ARC-Challenge", "test", {}),
              description="ARC-Challenge test: 1,172 grade-school science questions (utility)"),
    Benchmark("oktest", parse_oktest, "oktest/OKTest.csv",
              description="OKTest: benign prompts with harmful-sounding words (over-refusal)"),
    Benchmark("saladbench", parse_saladbench, "saladbench/base_set.json",
              hub=("OpenSafetyLab/Salad-Data", "base_set", "train", {}),
              description="Salad-Bench base set: 21,318 harmful questions, 3-level taxonomy"),
    Benchmark("saladbench-attack", parse_saladbench, "saladbench/attack_enhanced_set.json",
              hub=("OpenSafetyLab/Salad-Data", "attack_enhanced_set", "train", {}),
              description="Salad-Bench attack-enhanced set: 5,000 jailbreak-wrapped harmful questions"),
    Benchmark("wildchat", parse_wildchat, "wildchat/wildchat.parquet", hub=("allenai/WildChat", None, "train", {}),
              description="WildChat: first user turns; toxic-flagged conversations harmful, the rest benign"),
)}


def benchmark_names() -> list[str]:
    return list(BENCHMARKS)


def resolve_benchmark(spec: str, data_dir: str | Path | None = None) -> tuple[str, Benchmark, Path | None]:
    """`name` or `name=PATH` → (name, benchmark, file path or None for hub). Unknown names fail listing
    the known ones."""
    name, _, path = spec.partition("=")
    name = name.strip()
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)} (or give name=PATH)")
    return name, BENCHMARKS[name], Path(path) if path else None


def load_benchmark(spec: str, data_dir: str | Path | None = None, *, hub: bool = False,
                   limit: int | None = None, subset: int | None = None) -> list[Prompt]:
    """Load a benchmark by `name` or `name=PATH`.

    Order: an explicit PATH; with `hub=True`, the hub (for benchmarks that have a hub source); else the
    default file under `data_dir` (default: the shared benchmark folder for the shipped ones). `limit`
    keeps the first N prompts; `subset` keeps a fixed random N (see `fixed_subset`), for files sorted by
    subject such as MMLU-Pro, whose first N would all be one subject."""
    if limit is not None and subset is not None:
        raise UserError("give a limit (the first N prompts) or a subset (a fixed random N), not both")
    name, bench, path = resolve_benchmark(spec, data_dir)
    if path is not None:
        prompts = bench.load_file(path)
    elif hub and bench.hub is not None:
        prompts = bench.load_hub()
    else:
        if data_dir is not None and not Path(data_dir).is_dir():
            raise UserError(f"--data-dir {data_dir}: {'is a file' if Path(data_dir).exists() else 'no such folder'}; "
                            "give the folder that holds the benchmark files")
        default = bench.default_path(data_dir)
        if not default.is_file():
            where = "--data-dir" if data_dir is not None else "the shared data folder"
            hint = " or --hub (online, with the 'datasets' package)" if bench.hub else ""
            raise UserError(f"benchmark {name!r}: no file {default} (looked in {where}); pass {name}=PATH, a "
                            f"--data-dir holding {bench.default_file}{hint}")
        prompts = bench.load_file(default)
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise UserError(f"benchmark {name!r}: duplicate prompt id {dup!r}; ids must be unique")
    if subset is not None:
        return fixed_subset(prompts, subset)
    return prompts[:limit] if limit is not None else prompts


def fixed_subset(prompts: list[Prompt], n: int) -> list[Prompt]:
    """N prompts chosen by a fixed seeded permutation (the same N on every machine and run), in file order.
    Each prompt's rank is a hash of its id, so the subset of a file does not change when rows are added
    elsewhere in it."""
    if n < 1:
        raise UserError(f"subset must be >= 1, got {n}")
    ranked = sorted(range(len(prompts)), key=lambda i: _id_rank(prompts[i].id))
    keep = sorted(ranked[:n])
    return [prompts[i] for i in keep]


def _id_rank(prompt_id: str, salt: str = "") -> str:
    """A prompt's place in a fixed random order: the hash of its id (after `salt:` when salted)."""
    return hashlib.sha256((f"{salt}:{prompt_id}" if salt else prompt_id).encode()).hexdigest()


def stratified_subset(prompts: list[Prompt], n: int, salt: str) -> list[Prompt]:
    """N prompts spread evenly over the sets of a mixed file (its `benchmark` meta, else `class`), in file order.

    Each set gets n // sets prompts, and the first n % sets sets (in file order) one more; a set smaller
    than its share gives the rest to the others. Within a set the choice is a fixed random one, ranked by a
    hash of `salt` and the id: the salt keeps it independent of `fixed_subset`, which may have chosen the
    file's rows by the unsalted hash (`ascl data prompts --eval-subset`), so that ranking them by that hash
    again would put whole sets first."""
    if n < 1:
        raise UserError(f"subset must be >= 1, got {n}")
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(str(p.meta.get("benchmark") or p.meta.get("class") or ""), []).append(i)
    # Round-robin over the sets: every set's k-th pick comes before any set's (k+1)-th.
    order = sorted((k, g, i) for g, idx in enumerate(groups.values())
                   for k, i in enumerate(sorted(idx, key=lambda i: _id_rank(prompts[i].id, salt))))
    return [prompts[i] for i in sorted(i for _, _, i in order[:n])]


# Convenience loaders over the shipped files (a path may be given instead).
def load_xstest(path: str | Path | None = None) -> list[Prompt]:
    return BENCHMARKS["xstest"].load_file(path or BENCHMARKS["xstest"].default_path())


def load_strongreject(path: str | Path | None = None, small: bool = False) -> list[Prompt]:
    b = BENCHMARKS["strongreject-small" if small else "strongreject"]
    return b.load_file(path or b.default_path())


def load_harmbench(path: str | Path | None = None) -> list[Prompt]:
    return BENCHMARKS["harmbench"].load_file(path or BENCHMARKS["harmbench"].default_path())


def class_counts(prompts: Iterable[Prompt]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in prompts:
        out[p.meta["class"]] = out.get(p.meta["class"], 0) + 1
    return out