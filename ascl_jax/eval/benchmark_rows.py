"""Benchmark tables as rows with their line (or row) numbers: CSV, TSV, JSON lines, a JSON array, parquet,
or a Hugging Face hub dataset; and the cell readers every benchmark parser uses, whose errors name the
file, the line (or row) and the column."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ascl_jax.data.prompts import check_file, read_text
from ascl_jax.errors import UserError
from ascl_jax.rollout.trajectory import Prompt


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


def read_rows(path: str | Path, what: str = "data") -> Rows:
    """The rows of a CSV, TSV, JSONL / JSON-array or parquet file (by its suffix), with line (or row) numbers.
    `what` names the file's role in the errors ("no such benchmark file")."""
    path = Path(path)
    check_file(path, what, BenchmarkFileError)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, "\t" if suffix == ".tsv" else ",", read_text(path, what, BenchmarkFileError))
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl(path, read_text(path, what, BenchmarkFileError))
    if suffix == ".parquet":
        return _read_parquet(path)
    raise BenchmarkFileError(f"{path}: unknown file type {suffix or '(none)'!r}; use .csv, .tsv, .jsonl or .parquet")


def _read_csv(path: Path, delimiter: str, text: str) -> Rows:
    try:
        # newline="": the csv module splits the lines itself, keeping newlines inside quoted fields
        with io.StringIO(text.removeprefix("\ufeff"), newline="") as fh:  # a BOM, as Excel writes one
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
    except csv.Error as exc:
        raise BenchmarkFileError(f"{path}: malformed {'TSV' if delimiter == chr(9) else 'CSV'} ({exc})") from None
    return Rows(str(path), columns, rows, "line")


def _read_jsonl(path: Path, text: str) -> Rows:
    """JSON lines, or one JSON array of objects (Salad-Data's `base_set.json`): a `.json` file whose first
    non-blank character is `[` is an array; its rows are numbered by position (unit "row")."""
    if text.lstrip().startswith("["):
        return _read_json_array(path, text)
    rows, columns = [], {}
    # split on newlines only: str.splitlines also breaks at U+0085 and U+2028, which occur inside JSON strings
    for n, line in enumerate(text.split("\n"), 1):
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


def _read_json_array(path: Path, text: str) -> Rows:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchmarkFileError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    rows, columns = [], {}
    for i, obj in enumerate(data, 1):
        if not isinstance(obj, dict):
            raise BenchmarkFileError(f"{path} row {i}: expected a JSON object, got {type(obj).__name__}")
        columns.update(dict.fromkeys(obj))
        rows.append((i, obj))
    return Rows(str(path), tuple(columns), rows, "row")


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


def require_columns(rows: Rows, *columns: str) -> None:
    """Fail naming the file, the first missing column and the columns found."""
    missing = [c for c in columns if c not in rows.columns]
    if missing and not rows.columns:
        raise BenchmarkFileError(f"{rows.where}: empty file; expected rows with the columns {', '.join(columns)}")
    if missing:
        raise BenchmarkFileError(
            f"{rows.where}: missing column {missing[0]!r} (found: {', '.join(rows.columns) or 'none'})"
        )


def cell(rows: Rows, n: int, row: dict[str, Any], column: str, *, required: bool = True) -> str | None:
    """The stripped text of `row[column]` (numbers as text); an empty or missing cell is an error naming
    the file, line and column when `required`, else None."""
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


def optional_cell(rows: Rows, n: int, row: dict[str, Any], column: str) -> str | None:
    """`row[column]` as text, or None where the table has no such column or the cell is empty."""
    return cell(rows, n, row, column, required=False) if column in rows.columns else None


def make_prompt(pid: str, text: str, meta: dict[str, Any], suffix: str = "") -> Prompt:
    """A one-turn user prompt (`text` + `suffix`, e.g. an answer-format instruction)."""
    return Prompt(pid, ({"role": "user", "content": text + suffix},), meta)


def benchmark_meta(benchmark: str, cls: str, category: str | None, source: str | None,
                   **extra: Any) -> dict[str, Any]:
    """The meta every benchmark prompt carries: class, category, source (the benchmark when None), benchmark."""
    return {"class": cls, "category": category, "source": source or benchmark, "benchmark": benchmark, **extra}

