"""Where `ascl data prompts` reads its prompt sets from.

A source spec is one of:

* `name`: a known benchmark (`ascl_jax.eval.benchmarks.BENCHMARKS`), its shipped or default file;
* `name=PATH`: that benchmark's parser on another file;
* `PATH`: a file of the project's own prompt format (`ascl_jax.data.prompts`: a `prompt` or `messages`
  column, optional `id`, `class`, `reference`, `category`, ...) as JSONL, CSV, TSV or parquet, or a `.txt`
  file of one prompt a line.

Every prompt comes back with `meta["class"]` set (the row's own class, else the class the caller gives)
and `meta["benchmark"]` naming the set it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ascl_jax.data.prompts import PROMPT_CLASSES, DataError, prompt_from_record, read_text
from ascl_jax.eval.benchmarks import BENCHMARKS, load_benchmark, read_rows
from ascl_jax.rollout.trajectory import Prompt


class PromptSourceError(DataError):
    """A source spec that names no benchmark and no file, or a file without the columns it needs."""


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one source spec: `name` labels it in the summary (benchmark name or file stem)."""

    name: str
    spec: str
    prompts: list[Prompt]


def _blank(value: Any) -> bool:
    # CSV cells are strings and parquet cells may be NaN: both mean "not given".
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and value != value)


def _read_lines(path: Path, set_name: str, cls: str) -> list[Prompt]:
    lines = read_text(path, "prompt", PromptSourceError).splitlines()
    out = [Prompt(f"{set_name}-line{n}", ({"role": "user", "content": line.strip()},),
                  {"class": cls, "source": set_name, "benchmark": set_name})
           for n, line in enumerate(lines, 1) if line.strip()]
    if not out:
        raise PromptSourceError(f"{path}: no prompts (expected one prompt a line)")
    return out


def read_prompt_file(path: str | Path, default_class: str | None) -> list[Prompt]:
    """Prompts from a file of the project's prompt format (any table format `read_rows` reads), or a `.txt`
    file of one prompt a line. A row without its own `class` gets `default_class`; with neither, the row
    is an error (an evaluation set must say what each prompt is)."""
    path = Path(path)
    set_name = path.stem
    if path.suffix.lower() == ".txt":
        if default_class is None:
            raise PromptSourceError(f"{path}: a .txt file has no class column; give evaluation prompts as a "
                                    "JSONL or CSV file with 'prompt' and 'class' columns")
        return _read_lines(path, set_name, default_class)
    rows = read_rows(path, "prompt")
    if not rows.rows:
        raise PromptSourceError(f"{path}: no prompts (the file is empty)")
    if "prompt" not in rows.columns and "messages" not in rows.columns:
        raise PromptSourceError(f"{rows.where}: needs a 'prompt' (or 'messages') column; found: "
                                f"{', '.join(rows.columns) or 'none'}")
    if default_class is None and "class" not in rows.columns:
        raise PromptSourceError(f"{rows.where}: an evaluation file needs a 'class' column "
                                f"({', '.join(PROMPT_CLASSES)}); found: {', '.join(rows.columns)}")
    out = []
    for n, row in rows.rows:
        where = rows.at(n)
        record = {k: v for k, v in row.items() if not _blank(v)}
        if isinstance(record.get("class"), str):
            record["class"] = record["class"].strip().lower()
        record.setdefault("class", default_class)
        if record["class"] is None:
            raise PromptSourceError(f"{where}: column 'class' is empty; an evaluation prompt needs its class")
        prompt = prompt_from_record(record, where, default_id=f"{rows.unit}{n}")
        meta = {"source": set_name, "benchmark": set_name, **prompt.meta}
        out.append(Prompt(f"{set_name}-{prompt.id}", prompt.messages, meta))
    if not out:
        raise PromptSourceError(f"{path}: no prompts")
    return out


def read_source(spec: str, default_class: str | None, data_dir: str | Path | None = None) -> PromptSet:
    """The prompts a spec names (see the module docstring); `default_class` labels rows of a plain file
    that have no class of their own."""
    spec = spec.strip()
    name = spec.partition("=")[0].strip()
    if name in BENCHMARKS:
        prompts = load_benchmark(spec, data_dir)
        return PromptSet(name, spec, [p if p.meta.get("benchmark") else
                                      Prompt(p.id, p.messages, {**p.meta, "benchmark": name}) for p in prompts])
    path = Path(spec)
    if path.exists():  # a folder too: the reader says it is one
        return PromptSet(path.stem, spec, read_prompt_file(path, default_class))
    if "=" in spec:
        raise PromptSourceError(f"{spec!r}: unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    raise PromptSourceError(f"{spec!r} is neither a known benchmark ({', '.join(BENCHMARKS)}) nor a file")


def split_class(prompts: list[Prompt], cls: str) -> tuple[list[Prompt], dict[str, int]]:
    """The prompts whose own class is `cls`, and how many of each other class were set aside.

    A benchmark may mix classes (XSTest: safe and unsafe rows); a flag such as `--benign xstest` takes
    only its rows of that class rather than relabelling the others."""
    kept, other = [], {}
    for p in prompts:
        own = p.meta.get("class") or cls
        if own == cls:
            kept.append(p if p.meta.get("class") else Prompt(p.id, p.messages, {**p.meta, "class": cls}))
        else:
            other[own] = other.get(own, 0) + 1
    return kept, other
