"""Safety rules and rule books: the data model, its validation, and writing a book back as YAML or JSONL.

Reading rule book files (YAML or JSONL, with line-numbered errors) is `ascl_jax.rules.rulebook_files`.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Mapping, get_args

import yaml

from ascl_jax.errors import RuleBookError

__all__ = [
    "ACTIONS",
    "RULE_FIELDS",
    "Rule",
    "RuleBook",
]

Action = Literal["refuse", "comply_with_care", "comply"]
ACTIONS: tuple[str, ...] = get_args(Action)
RULE_FIELDS: tuple[str, ...] = ("id", "category", "title", "text", "action", "keywords")
_REQUIRED: tuple[str, ...] = ("id", "category", "title", "text", "action")
BOOK_KEYS: tuple[str, ...] = ("name", "description", "rules")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

_FIELD_HELP = {
    "id": "a unique identifier such as 'cyber-01' (letters, digits, '_', '-', '.')",
    "category": "a category name such as 'cyber_misuse' (letters, digits, '_', '-', '.')",
    "title": "a one-line title",
    "text": "the rule text the model will read",
    "action": "one of " + ", ".join(ACTIONS),
    "keywords": "a list of strings, e.g. [phishing, malware], or leave the field out",
}


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """A hint such as " (did you mean 'cyber'?)" naming the closest of `choices`, or "" when none is close."""
    if not isinstance(value, str):
        return ""
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def check_rule_fields(data: Mapping[Any, Any]) -> tuple[str, str] | None:
    """The first problem with one rule's fields, as (field, message that says the fix), or None."""
    for key in data:
        if key not in RULE_FIELDS:
            return (
                str(key),
                f"unknown field {key!r}{did_you_mean(key, RULE_FIELDS)}; "
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
            f"field 'action' is {action!r}{did_you_mean(action, ACTIONS)}; use one of {', '.join(ACTIONS)}",
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
        problem = check_rule_fields(values)
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
                f"no rule with id {rule_id!r}{did_you_mean(rule_id, self._by_id)}; "
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
