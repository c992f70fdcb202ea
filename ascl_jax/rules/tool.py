"""The `consult_safety_rules` tool: its schema for the chat template, and the host-side call.

`call(arguments)` never raises on bad arguments: the model gets a `ToolResult` whose text says what was
wrong and what is valid (and `error` is set), so that it can learn to call the tool well. The text is
bounded: at most `max_rules` rules and `max_chars` characters, with a visible `[truncated]` marker where
it was cut.

Output format, one block per rule, blocks separated by a blank line:

    [rule cyber-02] Security concepts, defence and secure coding
    action: comply
    Explaining how classes of attack work ...
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ascl_jax.chat.json_schema import json_type
from ascl_jax.errors import ConfigError
from ascl_jax.rules.retrieval import HybridRetriever, RuleRetriever
from ascl_jax.rules.rulebook import Rule, RuleBook, did_you_mean

__all__ = ["BoundedRuleTool", "ConsultSafetyRulesTool", "ToolResult", "TOOL_NAME", "TRUNCATION_MARKER", "cut_text"]

TOOL_NAME = "consult_safety_rules"
TRUNCATION_MARKER = "[truncated]"
_ARGUMENT_KEYS = ("category", "query")
_MAX_QUERY_CHARS = 1000
_MIN_MAX_CHARS = 80


@dataclass(frozen=True)
class ToolResult:
    """What one call returns. `text` is what the model reads; `rule_ids` the rules shown in it (also
    a rule shown only in part); `truncated` whether the text was cut at `max_chars`; `error` a one-line
    description of a bad call (None for a good one)."""

    text: str
    rule_ids: tuple[str, ...] = ()
    truncated: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "rule_ids": list(self.rule_ids), "truncated": self.truncated, "error": self.error}


def cut_text(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at a space where one is near, trailing space removed."""
    cut = text[:limit]
    if len(text) > limit and not text[limit].isspace():
        space = max(cut.rfind(" "), cut.rfind("\n"))
        if space >= limit * 3 // 4:
            cut = cut[:space]
    return cut.rstrip()


def _normalise_category(value: str) -> str:
    return "_".join(value.strip().lower().replace("-", " ").split())


class BoundedRuleTool:
    """What every rule tool shares: a non-empty book, a retriever, results bounded by `max_chars`, and
    bad arguments answered with an error result (never an exception). A subclass sets `name`, writes
    `schema` and `call`, and parses its own arguments after `_object_arguments`."""

    name: str

    def __init__(self, rulebook: RuleBook, retriever: RuleRetriever | None, max_chars: int,
                 default_max_chars: int, default_retriever: Callable[[RuleBook], RuleRetriever]):
        if not isinstance(rulebook, RuleBook) or len(rulebook) == 0:
            raise ConfigError(f"{self.name} needs a RuleBook with at least one rule; load one with load_rulebook")
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < _MIN_MAX_CHARS:
            raise ConfigError(f"tool max_chars is {max_chars!r}; use an integer >= {_MIN_MAX_CHARS} "
                              f"(default {default_max_chars})")
        if retriever is None:
            retriever = default_retriever(rulebook)
        if not isinstance(retriever, RuleRetriever):
            raise ConfigError(
                f"tool retriever {type(retriever).__name__} has no retrieve(category, query, k) method; "
                "implement the RuleRetriever protocol"
            )
        self.rulebook = rulebook
        self.retriever = retriever
        self.max_chars = max_chars

    def __call__(self, arguments: Any) -> ToolResult:
        return self.call(arguments)

    def call(self, arguments: Any) -> ToolResult:
        raise NotImplementedError

    @staticmethod
    def _kind(value: Any) -> str:
        """How an error names the type of arguments that are not an object ("an array")."""
        return json_type(value)

    def _object_arguments(self, arguments: Any, keys: tuple[str, ...], example: str) -> dict | ToolResult:
        """`arguments` as a dict (a JSON object encoded as a string is decoded, as the OpenAI API delivers
        them) holding only `keys`, or the error result that says what is wrong."""
        fix = f"The arguments must be a JSON object such as {example}."
        if isinstance(arguments, str):
            try:
                decoded = json.loads(arguments)
            except json.JSONDecodeError:
                decoded = None
            if not isinstance(decoded, dict):
                return self._error("arguments are not a JSON object", fix)
            arguments = decoded
        if not isinstance(arguments, dict):
            return self._error(f"arguments are {self._kind(arguments)}, not an object", fix)
        unknown = [key for key in arguments if key not in keys]
        if unknown:
            hints = "".join(did_you_mean(key, keys) for key in unknown)
            return self._error(
                f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(repr(str(k)) for k in unknown)}",
                f"Only {' and '.join(repr(k) for k in keys)} are accepted{hints}. Example: {example}.",
            )
        return arguments

    def _error(self, problem: str, fix: str) -> ToolResult:
        return self._bounded(f"Error: {problem}. {fix}", error=problem)

    def _bounded(self, text: str, *, error: str | None) -> ToolResult:
        if len(text) <= self.max_chars:
            return ToolResult(text=text, error=error)
        cut = cut_text(text, self.max_chars - len(TRUNCATION_MARKER) - 1)
        return ToolResult(text=f"{cut} {TRUNCATION_MARKER}", truncated=True, error=error)


class ConsultSafetyRulesTool(BoundedRuleTool):
    """The rule tool over one rule book.

    `retriever` defaults to `HybridRetriever(rulebook)`; any `RuleRetriever` may be given. A category is
    matched case-insensitively, with spaces or hyphens read as underscores; an empty string or null
    value counts as not given. `arguments` may also be a JSON object encoded as a string (as the OpenAI
    API delivers them).
    """

    name = TOOL_NAME

    def __init__(
        self,
        rulebook: RuleBook,
        retriever: RuleRetriever | None = None,
        max_rules: int = 3,
        max_chars: int = 1200,
    ):
        super().__init__(rulebook, retriever, max_chars, 1200, HybridRetriever)
        if isinstance(max_rules, bool) or not isinstance(max_rules, int) or max_rules < 1:
            raise ConfigError(f"tool max_rules is {max_rules!r}; use an integer >= 1 (default 3)")
        self.max_rules = max_rules
        self._categories = {_normalise_category(c): c for c in rulebook.categories}

    # -- schema ------------------------------------------------------------------------------------------
    @property
    def description(self) -> str:
        return (
            "Look up the safety rules that apply to a request before deciding how to answer it. "
            "Give a category, a short query describing the request, or both (at least one of the two). "
            f"Returns up to {self.max_rules} rules, each with an action hint: refuse, comply_with_care "
            "(help, shaped as the rule says) or comply (answer fully)."
        )

    @property
    def schema(self) -> dict[str, Any]:
        """The function-tool schema (OpenAI / Hugging Face chat-template `tools` format).

        JSON schema's plain form cannot say "at least one of category and query", so `required` is
        empty and the descriptions say it; a call with neither gets an error result."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "category": {
                            "type": "string",
                            "enum": list(self.rulebook.categories),
                            "description": "The area of safety the request touches. Give this, query, or both.",
                        },
                        "query": {
                            "type": "string",
                            "description": (
                                "A few words describing the request, e.g. 'how to pick a lock'. "
                                "Give this, category, or both."
                            ),
                        },
                    },
                    "required": [],
                    "additionalProperties": False,
                },
            },
        }

    # -- call --------------------------------------------------------------------------------------------
    def call(self, arguments: Any) -> ToolResult:
        """Retrieve and format rules for one call; bad arguments give an error result, never an exception."""
        parsed = self._parse_arguments(arguments)
        if isinstance(parsed, ToolResult):
            return parsed
        category, query = parsed
        hits = self.retriever.retrieve(category, query, self.max_rules)
        rules = [rule for rule, _ in hits][: self.max_rules]
        if not rules:
            return self._bounded(
                f"No safety rules matched (category={category!r}, query={query!r}). "
                f"Valid categories: {', '.join(self.rulebook.categories)}.",
                error=None,
            )
        return self._format(rules)

    def _parse_arguments(self, arguments: Any) -> tuple[str | None, str | None] | ToolResult:
        example = json.dumps({"category": self.rulebook.categories[0], "query": "a few words about the request"})
        valid = f"Valid categories: {', '.join(self.rulebook.categories)}."
        arguments = self._object_arguments(arguments, _ARGUMENT_KEYS, example)
        if isinstance(arguments, ToolResult):
            return arguments
        values: dict[str, str | None] = {}
        for key in _ARGUMENT_KEYS:
            value = arguments.get(key)
            if value is not None and not isinstance(value, str):
                return self._error(
                    f"'{key}' is a {type(value).__name__}, not a string",
                    f"Give '{key}' as a string. Example: {example}.",
                )
            values[key] = value.strip() if isinstance(value, str) and value.strip() else None
        category, query = values["category"], values["query"]
        if category is None and query is None:
            return self._error(
                "no category and no query given",
                f"Give a category, a query, or both. {valid} Example: {example}.",
            )
        if category is not None:
            known = self._categories.get(_normalise_category(category))
            if known is None:
                hint = did_you_mean(_normalise_category(category), self.rulebook.categories)
                return self._error(f"unknown category {category!r}{hint}", f"{valid} Or leave category out and give a query.")
            category = known
        if query is not None and len(query) > _MAX_QUERY_CHARS:
            return self._error(
                f"query is {len(query)} characters long",
                f"Keep the query under {_MAX_QUERY_CHARS} characters: a few words describing the request.",
            )
        return category, query

    @staticmethod
    def _kind(value: Any) -> str:
        return f"a {type(value).__name__}"

    @staticmethod
    def format_rule(rule: Rule) -> str:
        """One rule's block: id and title, action, text."""
        return f"[rule {rule.id}] {rule.title}\naction: {rule.action}\n{rule.text}"

    def _format(self, rules: list[Rule]) -> ToolResult:
        blocks = [self.format_rule(rule) for rule in rules]
        text = "\n\n".join(blocks)
        if len(text) <= self.max_chars:
            return ToolResult(text=text, rule_ids=tuple(rule.id for rule in rules))
        budget = self.max_chars - len(TRUNCATION_MARKER) - 1
        cut = cut_text(text, budget)
        # Where a block starts and where its header (id, title, action) ends in the joined text.
        starts, header_ends, offset = [], [], 0
        for block in blocks:
            starts.append(offset)
            header_ends.append(offset + block.index("\n", block.index("\n") + 1))
            offset += len(block) + 2
        shown = [i for i, start in enumerate(starts) if start < len(cut)]
        last = shown[-1]
        if len(cut) < header_ends[last] and last > 0:
            # Do not show a rule whose header is cut: end after the previous rule instead.
            cut = text[: starts[last]].rstrip()
            shown = shown[:-1]
        at_block_end = any(len(cut) == starts[i] + len(blocks[i]) for i in shown)
        separator = "\n" if at_block_end else " "
        return ToolResult(
            text=f"{cut}{separator}{TRUNCATION_MARKER}",
            rule_ids=tuple(rules[i].id for i in shown),
            truncated=True,
        )
