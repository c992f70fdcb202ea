"""Prompt data: a documented JSONL format, validated line by line, and the grain pipeline that draws
each step's prompts.

One JSON object per line:

    {"id": "p1", "prompt": "How do I ...?", "class": "harmful"}
    {"id": "p2", "messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}],
     "class": "utility", "reference": "42"}

`prompt` (a user message, with an optional `system`) or `messages` is required; `id` defaults to the line
number. Every other key (`class`: harmful / benign / sensitive / utility, `reference`, `expected_action`,
`category`, ...) travels with the prompt as metadata for rewards and metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ascl_jax.errors import UserError
from ascl_jax.rollout.trajectory import Prompt

if TYPE_CHECKING:
    import grain

PROMPT_CLASSES = ("harmful", "benign", "sensitive", "utility")


class DataError(UserError):
    """A malformed data file (names the file, the line and the field)."""


def prompt_from_record(record: dict, where: str, default_id: str) -> Prompt:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        msgs = record["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ("system", "user", "assistant"):
                raise DataError(f"{where}: messages[{i}] must be {{\"role\": system|user|assistant, \"content\": str}}")
        messages = tuple(dict(m) for m in msgs)
    elif "prompt" in record:
        if not isinstance(record["prompt"], str) or not record["prompt"].strip():
            raise DataError(f"{where}: 'prompt' must be a non-empty string")
        system = record.get("system")
        if system is not None and not isinstance(system, str):
            raise DataError(f"{where}: 'system' must be a string")
        messages = (({"role": "system", "content": system},) if system else ()) + (
            {"role": "user", "content": record["prompt"]},
        )
    else:
        raise DataError(f"{where}: needs 'prompt' (a string) or 'messages' (a list)")
    cls = record.get("class")
    if cls is not None and cls not in PROMPT_CLASSES:
        raise DataError(f"{where}: 'class' must be one of {', '.join(PROMPT_CLASSES)}, got {cls!r}")
    pid = record.get("id", default_id)
    if not isinstance(pid, (str, int)):
        raise DataError(f"{where}: 'id' must be a string")
    meta = {k: v for k, v in record.items() if k not in ("id", "prompt", "system", "messages")}
    return Prompt(id=str(pid), messages=messages, meta=meta)


def check_file(path: Path, what: str, error: type[UserError] = DataError) -> None:
    """`path` is a file that exists: a folder or a missing path raises `error` naming it (each reader's own
    error type, so a caller that catches one format's errors still catches these)."""
    if path.is_dir():
        raise error(f"{path}: is a folder; give a {what} file")
    if not path.exists():
        raise error(f"{path}: no such {what} file")


def read_text(path: str | Path, what: str, error: type[UserError] = DataError) -> str:
    """The text of a UTF-8 file; a missing file, a folder, or bytes that are not UTF-8 raise `error` naming
    the file (and the line and byte offset of the first bad byte)."""
    path = Path(path)
    check_file(path, what, error)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} file ({exc.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}:{line}: byte {exc.start} (0x{raw[exc.start]:02x}) is not UTF-8; save the file as "
                    "UTF-8") from None


def read_text_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 text file (`read_text`'s checks)."""
    return read_text(path, what).splitlines()


def check_output_folder(path: str | Path, flag: str) -> None:
    """An output folder that can be created: not an existing file, nor inside one. Checked before any work,
    so a typo fails at once rather than when the results are written."""
    _check_no_file_in(Path(path), Path(path), flag, "give a folder")


def check_output_file(path: str | Path, flag: str) -> None:
    """An output file that can be written: not an existing folder, nor inside a file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name")
    _check_no_file_in(path.parent, path, flag, "give a path in a folder")


def _check_no_file_in(folder: Path, given: Path, flag: str, fix: str) -> None:
    for p in (folder, *folder.parents):
        if p.exists() and not p.is_dir():
            where = "is a file" if p == given else f"{p} is a file, not a folder"
            raise UserError(f"{flag} {given}: {where}; {fix}")


def read_jsonl(path: str | Path, what: str) -> Iterator[tuple[int, str, Any]]:
    """(line number, "file:line", parsed object) for each non-blank line of a JSONL file of `what`."""
    path = Path(path)
    lines = read_text_lines(path, what)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            yield n, where, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg})") from None


def load_prompts(path: str | Path, check: Callable[[Prompt, str], None] | None = None) -> list[Prompt]:
    """Prompts from a JSONL file; a bad line raises DataError naming the file and line number. `check(prompt,
    where)`: a caller's own requirements on each prompt (e.g. a class the judge needs), run before the
    id check."""
    prompts, seen = [], set()
    for n, where, record in read_jsonl(path, "prompt"):
        p = prompt_from_record(record, where, default_id=f"line{n}")
        if check is not None:
            check(p, where)
        if p.id in seen:
            raise DataError(f"{where}: duplicate id {p.id!r}")
        seen.add(p.id)
        prompts.append(p)
    if not prompts:
        raise DataError(f"{path}: no prompts")
    return prompts


def prompt_batches(num_prompts: int, batch_size: int, seed: int) -> grain.MapDataset:
    """Indices of each step's prompts: shuffled every epoch, repeated forever, `batch_size` a step.

    Random access (`ds[step]`) makes resuming exact: a run restarted at step k draws the same batches
    as one that never stopped, with no iterator state to save."""
    import grain  # here: the file readers above are used by commands that never draw batches

    if batch_size > num_prompts:
        raise UserError(f"a step needs {batch_size} prompts but the data has only {num_prompts}")
    return (
        grain.MapDataset.range(num_prompts)
        .shuffle(seed=seed)
        .repeat(None)
        .batch(batch_size, drop_remainder=True)
    )


def batch_prompts(prompts: Sequence[Prompt], batches: grain.MapDataset, step: int) -> list[Prompt]:
    return [prompts[int(i)] for i in np.asarray(batches[step])]
