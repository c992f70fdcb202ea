"""Safety rules and rule books: the data model, loading from YAML or JSONL with validation, writing back.

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

import difflib
import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Mapping, get_args

import yaml

from ascl_jax.errors import RuleBookError

__all__ = [
    "ACTIONS",
    "RULE_FIELDS",
    "Rule",
    "RuleBook",
    "default_rulebook",
    "load_rulebook",
    "parse_rulebook",
    "DEFAULT_RULEBOOK_PATH",
]

Action = Literal["refuse", "comply_with_care", "comply"]
ACTIONS: tuple[str, ...] = get_args(Action)
RULE_FIELDS: tuple[str, ...] = ("id", "category", "title", "text", "action", "keywords")
_REQUIRED: tuple[str, ...] = ("id", "category", "title", "text", "action")
_BOOK_KEYS: tuple[str, ...] = ("name", "description", "rules")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_YAML_SUFFIXES = (".yaml", ".yml")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")

_FIELD_HELP = {
    "id": "a unique identifier such as 'cyber-01' (letters, digits, '_', '-', '.')",
    "category": "a category name such as 'cyber_misuse' (letters, digits, '_', '-', '.')",
    "title": "a one-line title",
    "text": "the rule text the model will read",
    "action": "one of " + ", ".join(ACTIONS),
    "keywords": "a list of strings, e.g. [phishing, malware], or leave the field out",
}

DEFAULT_RULEBOOK_PATH = "ascl_jax/rules/default_rules.yaml"


def _did_you_mean(value: object, choices: Iterable[str]) -> str:
    if not isinstance(value, str):
        return ""
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def _check_rule_fields(data: Mapping[Any, Any]) -> tuple[str, str] | None:
    """The first problem with one rule's fields, as (field, message that says the fix), or None."""
    for key in data:
        if key not in RULE_FIELDS:
            return (
                str(key),
                f"unknown field {key!r}{_did_you_mean(key, RULE_FIELDS)}; "
                f"a rule has the fields {', '.join(RULE_FIELDS)}",
            )
    for name in _REQUIRED:
        if name not in data:
            return name, f"missing field {name!r}; add `{name}:` with {_FIELD_HELP[name]}"
    for name in _REQUIRED:
        value = data[name]
        if not isinstance(value, str):
            return (
                name,
                f"field {name!r} must be a string, not {type(value).__name__} {value!r}; "
                f"write {_FIELD_HELP[name]} (quote it in YAML)",
            )
        if not value.strip():
            return name, f"field {name!r} is empty; write {_FIELD_HELP[name]}"
    for name in ("id", "category"):
        value = data[name].strip()
        if not _NAME_RE.match(value):
            return name, f"field {name!r} is {value!r}; write {_FIELD_HELP[name]}, with no spaces"
    if "\n" in data["title"].strip():
        return "title", "field 'title' spans several lines; keep the title on one line and move the rest to 'text'"
    action = data["action"].strip()
    if action not in ACTIONS:
        return (
            "action",
            f"field 'action' is {action!r}{_did_you_mean(action, ACTIONS)}; use one of {', '.join(ACTIONS)}",
        )
    if "keywords" in data:
        keywords = data["keywords"]
        if not isinstance(keywords, (list, tuple)):
            return (
                "keywords",
                f"field 'keywords' must be a list of strings, not {type(keywords).__name__} {keywords!r}; "
                f"write {_FIELD_HELP['keywords']}",
            )
        for i, word in enumerate(keywords):
            if not isinstance(word, str) or not word.strip():
                return (
                    "keywords",
                    f"field 'keywords' item {i + 1} is {word!r}; every keyword must be a non-empty string",
                )
    return None


@dataclass(frozen=True)
class Rule:
    """One safety rule. `action` is the hint for the situation the rule describes.

    Strings are stripped and `keywords` becomes a tuple; invalid values raise `RuleBookError`.
    """

    id: str
    category: str
    title: str
    text: str
    action: Action
    keywords: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        keywords = self.keywords
        if isinstance(keywords, list):
            keywords = tuple(keywords)
        values = {
            "id": self.id,
            "category": self.category,
            "title": self.title,
            "text": self.text,
            "action": self.action,
            "keywords": keywords,
        }
        problem = _check_rule_fields(values)
        if problem is not None:
            raise RuleBookError(f"rule {self.id!r}: {problem[1]}")
        for name in _REQUIRED:
            object.__setattr__(self, name, values[name].strip())
        object.__setattr__(self, "keywords", tuple(word.strip() for word in keywords))

    def to_dict(self) -> dict[str, Any]:
        """The rule as a plain mapping in field order (`keywords` left out when empty)."""
        out: dict[str, Any] = {
            "id": self.id,
            "category": self.category,
            "title": self.title,
            "text": self.text,
            "action": self.action,
        }
        if self.keywords:
            out["keywords"] = list(self.keywords)
        return out


class RuleBook:
    """An immutable, ordered collection of rules with unique ids.

    `categories` lists the categories in order of first appearance. Iterating yields the rules in book
    order; `len()` is the number of rules.
    """

    __slots__ = ("_rules", "_by_id", "_by_category", "_name", "_description")

    def __init__(self, rules: Iterable[Rule], *, name: str | None = None, description: str | None = None):
        rules = tuple(rules)
        by_id: dict[str, Rule] = {}
        by_category: dict[str, list[Rule]] = {}
        for rule in rules:
            if not isinstance(rule, Rule):
                raise RuleBookError(f"a RuleBook holds Rule objects, not {type(rule).__name__}; build them with Rule(...)")
            if rule.id in by_id:
                raise RuleBookError(f"rule id {rule.id!r} appears twice; give every rule a unique id")
            by_id[rule.id] = rule
            by_category.setdefault(rule.category, []).append(rule)
        self._rules = rules
        self._by_id = by_id
        self._by_category = {cat: tuple(items) for cat, items in by_category.items()}
        self._name = name
        self._description = description

    # -- read access -------------------------------------------------------------------------------
    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self._by_category)

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def description(self) -> str | None:
        return self._description

    def get(self, rule_id: str) -> Rule:
        """The rule with this id; `RuleBookError` (naming close ids) when there is none."""
        try:
            return self._by_id[rule_id]
        except (KeyError, TypeError):
            raise RuleBookError(
                f"no rule with id {rule_id!r}{_did_you_mean(rule_id, self._by_id)}; "
                f"`ascl rules list` shows the {len(self)} ids of this rule book"
            ) from None

    def by_category(self, category: str) -> tuple[Rule, ...]:
        """The rules of one category in book order; empty for an unknown category."""
        return self._by_category.get(category, ())

    def subset(self, ids: Iterable[str]) -> RuleBook:
        """A new book with only these rules, in book order; an unknown id raises `RuleBookError`."""
        wanted = set()
        for rule_id in ids:
            self.get(rule_id)
            wanted.add(rule_id)
        return RuleBook(
            (rule for rule in self._rules if rule.id in wanted), name=self._name, description=self._description
        )

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __contains__(self, rule_id: object) -> bool:
        return isinstance(rule_id, str) and rule_id in self._by_id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RuleBook):
            return NotImplemented
        return (self._rules, self._name, self._description) == (other._rules, other._name, other._description)

    def __hash__(self) -> int:
        return hash((self._rules, self._name, self._description))

    def __repr__(self) -> str:
        return f"RuleBook(name={self._name!r}, rules={len(self)}, categories={len(self._by_category)})"

    # -- writing -------------------------------------------------------------------------------------
    def to_yaml(self, path: str | Path | None = None) -> str:
        """The book as YAML (a mapping with `rules`, plus `name`/`description` when set); also written
        to `path` when given. Multi-line texts use YAML block style."""
        doc: dict[str, Any] = {}
        if self._name is not None:
            doc["name"] = self._name
        if self._description is not None:
            doc["description"] = self._description
        doc["rules"] = [rule.to_dict() for rule in self._rules]
        text = yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_jsonl(self, path: str | Path | None = None) -> str:
        """The book as JSONL, one rule per line (`name` and `description` are not kept); also written
        to `path` when given."""
        text = "".join(json.dumps(rule.to_dict(), ensure_ascii=False) + "\n" for rule in self._rules)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


class _BlockDumper(yaml.SafeDumper):
    """Safe dumper that writes multi-line strings in literal block style."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


# -- loading ------------------------------------------------------------------------------------------
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
            if key not in _BOOK_KEYS:
                raise _fail(
                    source,
                    key_lines.get(key, root.start_mark.line + 1),
                    f"unknown top-level key {key!r}{_did_you_mean(key, _BOOK_KEYS)}; "
                    f"a rule book mapping has the keys {', '.join(_BOOK_KEYS)}",
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
        problem = _check_rule_fields(data)
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
    """Load and validate a rule book from a `.yaml`/`.yml` or `.jsonl`/`.ndjson` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _YAML_SUFFIXES:
        fmt: Literal["yaml", "jsonl"] = "yaml"
    elif suffix in _JSONL_SUFFIXES:
        fmt = "jsonl"
    else:
        raise RuleBookError(
            f"{path}: unknown rule book format {path.suffix or '(no extension)'!r}; "
            "name the file .yaml/.yml (YAML) or .jsonl (one JSON rule per line)"
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


@functools.lru_cache(maxsize=1)
def default_rulebook() -> RuleBook:
    """The rule book shipped with the package (`ascl_jax/rules/default_rules.yaml`)."""
    text = resources.files("ascl_jax.rules").joinpath("default_rules.yaml").read_text(encoding="utf-8")
    return parse_rulebook(text, "yaml", DEFAULT_RULEBOOK_PATH)
