"""Rule book files: reading YAML or JSONL with every problem named by file and line, and the shipped book.

A rule book file is either

* YAML: a top-level list of rules, or a mapping with the key `rules` (a list) and optional `name` and
  `description` strings; or
* JSONL: one JSON object (one rule) per line; blank lines are skipped.

Each rule has the fields `id`, `category`, `title`, `text`, `action` (one of `refuse`,
`comply_with_care`, `comply`) and optionally `keywords` (a list of strings used by lexical retrieval).
Every problem in a file is reported as a `RuleBookError` whose message names the file, the line of the
offending entry or field, the field, and what to write instead.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ascl_jax.errors import RuleBookError
from ascl_jax.rules.rulebook import BOOK_KEYS, Rule, RuleBook, check_rule_fields, did_you_mean

_YAML_SUFFIXES = (".yaml", ".yml")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
# The books shipped in this package, by the name that `load_rulebook` (so `--rules` and `data.rules`)
# accepts in place of a path: the default book, and the policy book in the paper's 21 categories.
SHIPPED_RULEBOOKS: dict[str, str] = {"default": "default_rules.yaml", "policy": "policy_book.yaml"}


class _Entry:
    """One raw rule entry with where it came from."""

    __slots__ = ("index", "data", "line", "key_lines")

    def __init__(self, index: int, data: Any, line: int, key_lines: dict[Any, int] | None = None):
        self.index = index
        self.data = data
        self.line = line
        self.key_lines = key_lines or {}


def _fail(source: str, line: int, message: str) -> RuleBookError:
    return RuleBookError(f"{source}:{line}: {message}")


def _yaml_entries(text: str, source: str) -> tuple[list[_Entry], str | None, str | None]:
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            problem = exc.problem or str(exc)
            raise _fail(source, line, f"not valid YAML: {problem}; fix the YAML syntax on this line") from None
        except yaml.YAMLError as exc:
            raise _fail(source, 1, f"not valid YAML: {exc}; fix the YAML syntax") from None
    finally:
        loader.dispose()

    if root is None or data is None:
        raise _fail(source, 1, "the file is empty; write a list of rules (or a mapping with the key 'rules')")

    name = description = None
    if isinstance(root, yaml.MappingNode):
        key_lines = _mapping_key_lines(root, source, "the rule book")
        for key in data:
            if key not in BOOK_KEYS:
                raise _fail(
                    source,
                    key_lines.get(key, root.start_mark.line + 1),
                    f"unknown top-level key {key!r}{did_you_mean(key, BOOK_KEYS)}; "
                    f"a rule book mapping has the keys {', '.join(BOOK_KEYS)}",
                )
        if "rules" not in data:
            raise _fail(
                source,
                root.start_mark.line + 1,
                "the top-level mapping has no key 'rules'; put the list of rules under `rules:`",
            )
        for key in ("name", "description"):
            if key in data and not isinstance(data[key], str):
                raise _fail(
                    source, key_lines[key], f"top-level {key!r} must be a string, not {type(data[key]).__name__}"
                )
        name, description = data.get("name"), data.get("description")
        seq_node = next(v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "rules")
        items = data["rules"]
        if not isinstance(seq_node, yaml.SequenceNode) or not isinstance(items, list):
            raise _fail(source, seq_node.start_mark.line + 1, "'rules' must be a list of rules (YAML items `- id: ...`)")
    elif isinstance(root, yaml.SequenceNode) and isinstance(data, list):
        seq_node, items = root, data
    else:
        raise _fail(
            source,
            root.start_mark.line + 1,
            f"the file holds a {type(data).__name__}; write a list of rules (or a mapping with the key 'rules')",
        )

    entries = []
    for index, (node, item) in enumerate(zip(seq_node.value, items, strict=True)):
        line = node.start_mark.line + 1
        key_lines = _mapping_key_lines(node, source, f"rule {index + 1}") if isinstance(node, yaml.MappingNode) else {}
        entries.append(_Entry(index, item, line, key_lines))
    return entries, name, description


def _mapping_key_lines(node: yaml.MappingNode, source: str, what: str) -> dict[Any, int]:
    """Line of each key of a mapping node; a key given twice is an error."""
    lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node.value)
        line = key_node.start_mark.line + 1
        if key in lines:
            raise _fail(source, line, f"{what}: field {key!r} is given twice (first on line {lines[key]}); keep one")
        lines[key] = line
    return lines


def _jsonl_entries(text: str, source: str) -> list[_Entry]:
    entries = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue

        def pairs_hook(pairs: list[tuple[str, Any]], _lineno: int = lineno) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in pairs:
                if key in out:
                    raise _fail(source, _lineno, f"field {key!r} is given twice in this object; keep one")
                out[key] = value
            return out

        try:
            item = json.loads(raw, object_pairs_hook=pairs_hook)
        except json.JSONDecodeError as exc:
            raise _fail(
                source, lineno, f"not valid JSON ({exc.msg} at column {exc.colno}); write one JSON object per line"
            ) from None
        entries.append(_Entry(len(entries), item, lineno))
    if not entries:
        raise _fail(source, 1, "the file is empty; write one JSON object (one rule) per line")
    return entries


def _entries_to_rules(entries: list[_Entry], source: str) -> list[Rule]:
    rules: list[Rule] = []
    first_line: dict[str, int] = {}
    for entry in entries:
        data = entry.data
        label = f"rule {entry.index + 1}"
        if not isinstance(data, dict):
            raise _fail(
                source,
                entry.line,
                f"{label} is a {type(data).__name__}, not a mapping; write the rule as "
                "id/category/title/text/action fields",
            )
        if isinstance(data.get("id"), str) and data["id"].strip():
            label += f" (id {data['id'].strip()!r})"
        problem = check_rule_fields(data)
        if problem is not None:
            field_name, message = problem
            line = entry.key_lines.get(field_name, entry.line)
            raise _fail(source, line, f"{label}: {message}")
        rule = Rule(
            id=data["id"],
            category=data["category"],
            title=data["title"],
            text=data["text"],
            action=data["action"],
            keywords=tuple(data.get("keywords", ())),
        )
        if rule.id in first_line:
            raise _fail(
                source,
                entry.key_lines.get("id", entry.line),
                f"{label}: field 'id' repeats the id of the rule on line {first_line[rule.id]}; "
                "give every rule a unique id",
            )
        first_line[rule.id] = entry.line
        rules.append(rule)
    if not rules:
        raise _fail(source, 1, "the rule book has no rules; add at least one")
    return rules


def parse_rulebook(text: str, format: Literal["yaml", "jsonl"], source: str = "<string>") -> RuleBook:
    """Parse rule book text; `source` names it in error messages."""
    if format == "yaml":
        entries, name, description = _yaml_entries(text, source)
    elif format == "jsonl":
        entries, name, description = _jsonl_entries(text, source), None, None
    else:
        raise RuleBookError(f"unknown rule book format {format!r}; use 'yaml' or 'jsonl'")
    return RuleBook(_entries_to_rules(entries, source), name=name, description=description)


def load_rulebook(path: str | Path) -> RuleBook:
    """Load and validate a rule book from a `.yaml`/`.yml` or `.jsonl`/`.ndjson` file, or the shipped book
    of that name (`SHIPPED_RULEBOOKS`; such a name has no suffix, so it never shadows a rule book file)."""
    if str(path) in SHIPPED_RULEBOOKS:
        return shipped_rulebook(str(path))
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _YAML_SUFFIXES:
        fmt: Literal["yaml", "jsonl"] = "yaml"
    elif suffix in _JSONL_SUFFIXES:
        fmt = "jsonl"
    else:
        raise RuleBookError(
            f"{path}: unknown rule book format {path.suffix or '(no extension)'!r}; "
            "name the file .yaml/.yml (YAML) or .jsonl (one JSON rule per line), or give the name of a shipped "
            f"book ({', '.join(SHIPPED_RULEBOOKS)})"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleBookError(f"{path}: rule book file not found; pass an existing .yaml or .jsonl file") from None
    except IsADirectoryError:
        raise RuleBookError(f"{path}: is a folder; pass a .yaml or .jsonl rule book file") from None
    except UnicodeDecodeError as exc:
        raise RuleBookError(f"{path}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
    return parse_rulebook(text, fmt, str(path))


@functools.lru_cache(maxsize=len(SHIPPED_RULEBOOKS))
def shipped_rulebook(name: str) -> RuleBook:
    """A rule book shipped with the package, by its name in `SHIPPED_RULEBOOKS` (loaded once)."""
    if name not in SHIPPED_RULEBOOKS:
        raise RuleBookError(
            f"no shipped rule book {name!r}{did_you_mean(name, SHIPPED_RULEBOOKS)}; "
            f"the shipped books are {', '.join(SHIPPED_RULEBOOKS)}"
        )
    file = SHIPPED_RULEBOOKS[name]
    text = resources.files("ascl_jax.rules").joinpath(file).read_text(encoding="utf-8")
    return parse_rulebook(text, "yaml", f"ascl_jax/rules/{file}")


def default_rulebook() -> RuleBook:
    """The rule book shipped with the package as its default (`ascl_jax/rules/default_rules.yaml`)."""
    return shipped_rulebook("default")
