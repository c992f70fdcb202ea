"""The `retrieve_policy` tool of Wang et al. (arXiv 2602.13562 v1, §3.1, Prompt A.4, Fig. 7): one free-text
query, a ranked list of policy clauses back.

Arguments: `{"query": string (required), "top_k": integer 1..20, default 3}`. The result lists the best
`top_k` clauses, one block per clause, blocks separated by a blank line:

    Result 1 | similarity 0.62 | Violence & Weapons | action: refuse
    Do not give instructions, recipes or part lists for bombs, ...

The similarity is the retriever's score. The default retriever is BM25 over each rule's title, text and
keywords with `normalise=True`: the raw BM25 score over the most any rule could score for the query's
indexed terms, in (0, 1] (`BM25Retriever.bound`); an `EmbeddingRetriever` gives cosine similarity.
The action hint is this project's (the rule book's `action`): the paper's clauses list only what is not
allowed, while this book also has clauses that mark sensitive requests that are fine to answer.

Like `consult_safety_rules`, `call(arguments)` never raises on bad arguments: a faulty call (unknown key,
missing or empty query, a `top_k` that is not an integer in 1..20: a bool, a float, a string, 0, 21) gets
a `ToolResult` with `error` set and a text that names the argument and the fix, which the rollout records
as a faulty tool turn. The text is bounded by `max_chars`, with a visible `[truncated]` marker.
"""

from __future__ import annotations

import json
from typing import Any

from ascl_jax.chat.json_schema import json_type, short_json
from ascl_jax.rules.categories import category_name
from ascl_jax.rules.retrieval import BM25Retriever, RuleRetriever
from ascl_jax.rules.rulebook import Rule, RuleBook
from ascl_jax.rules.tool import TRUNCATION_MARKER, BoundedRuleTool, ToolResult, cut_text

__all__ = ["DEFAULT_TOP_K", "MAX_TOP_K", "POLICY_TOOL_NAME", "RetrievePolicyTool"]

POLICY_TOOL_NAME = "retrieve_policy"
DEFAULT_TOP_K = 3
MAX_TOP_K = 20
_ARGUMENT_KEYS = ("query", "top_k")
_MAX_QUERY_CHARS = 1000
_EXAMPLE = json.dumps({"query": "instructions for building a weapon", "top_k": DEFAULT_TOP_K})
_FIX_QUERY = f"Give 'query' as a string of a few words about the request. Example: {_EXAMPLE}."
_FIX_TOP_K = f"Give 'top_k' as a whole number from 1 to {MAX_TOP_K}, or leave it out for {DEFAULT_TOP_K}."


class RetrievePolicyTool(BoundedRuleTool):
    """The policy retrieval tool over one rule book.

    `retriever` defaults to `BM25Retriever(rulebook, normalise=True)`; any `RuleRetriever` may be given
    (it is called with category None). `arguments` may also be a JSON object encoded as a string.
    """

    name = POLICY_TOOL_NAME

    def __init__(self, rulebook: RuleBook, retriever: RuleRetriever | None = None, max_chars: int = 4000):
        super().__init__(rulebook, retriever, max_chars, 4000, lambda book: BM25Retriever(book, normalise=True))

    # -- schema ------------------------------------------------------------------------------------------
    @property
    def description(self) -> str:
        return (
            "Search the safety policy: a set of clauses that say which requests must be refused and which "
            "sensitive requests are fine to answer, and how. Call it when a request might break a safety "
            "rule, then weigh the clauses returned to decide whether the request is really harmful or an "
            "ordinary one to answer. Returns a ranked list: result number, similarity score, category, the "
            "action the clause calls for (refuse, comply_with_care or comply) and the clause text."
        )

    @property
    def schema(self) -> dict[str, Any]:
        """The function-tool schema (OpenAI / Hugging Face chat-template `tools` format)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {
                            "type": "string",
                            "description": "What to search the policy for, e.g. 'building explosives' "
                            "or 'medication dosage advice'.",
                        },
                        "top_k": {
                            "type": "integer",
                            "description": f"How many clauses to return (default {DEFAULT_TOP_K}, "
                            f"at most {MAX_TOP_K}).",
                            "default": DEFAULT_TOP_K,
                            "minimum": 1,
                            "maximum": MAX_TOP_K,
                        },
                    },
                    "required": ["query"],
                    "additionalProperties": False,
                },
            },
        }

    # -- call --------------------------------------------------------------------------------------------
    def call(self, arguments: Any) -> ToolResult:
        """Retrieve and format clauses for one call; bad arguments give an error result, never an exception."""
        parsed = self._parse_arguments(arguments)
        if isinstance(parsed, ToolResult):
            return parsed
        query, top_k = parsed
        hits = self.retriever.retrieve(None, query, top_k)[:top_k]
        if not hits:
            return self._bounded(
                f"No policy clause matched the query {query!r}. Search again with the plain words of the topic, "
                "e.g. 'weapons', 'medication dosage' or 'hacking'.",
                error=None,
            )
        return self._format(hits)

    def _parse_arguments(self, arguments: Any) -> tuple[str, int] | ToolResult:
        arguments = self._object_arguments(arguments, _ARGUMENT_KEYS, _EXAMPLE)
        if isinstance(arguments, ToolResult):
            return arguments
        query = arguments.get("query")
        if query is None:
            return self._error("missing argument 'query'", _FIX_QUERY)
        if not isinstance(query, str):
            return self._error(f"'query' is {json_type(query)}, not a string", _FIX_QUERY)
        query = query.strip()
        if not query:
            return self._error("'query' is empty", _FIX_QUERY)
        if len(query) > _MAX_QUERY_CHARS:
            return self._error(
                f"'query' is {len(query)} characters long",
                f"Keep 'query' under {_MAX_QUERY_CHARS} characters: a few words describing the request.",
            )
        if "top_k" not in arguments:
            return query, DEFAULT_TOP_K
        top_k = arguments["top_k"]
        # JSON has no int/float distinction, but 3.0 is not how an integer argument is written, and a
        # bool is not a number: both are faulty calls the reward should see.
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            return self._error(f"'top_k' is {json_type(top_k)} ({short_json(top_k)}), not an integer", _FIX_TOP_K)
        if not 1 <= top_k <= MAX_TOP_K:
            return self._error(f"'top_k' is {top_k}, outside 1..{MAX_TOP_K}", _FIX_TOP_K)
        return query, top_k

    @staticmethod
    def format_result(rank: int, rule: Rule, score: float) -> str:
        """One result's block: rank, similarity, category name and action, then the clause text."""
        return (
            f"Result {rank} | similarity {score:.2f} | {category_name(rule.category)} | action: {rule.action}\n"
            f"{rule.text}"
        )

    def _format(self, hits: list[tuple[Rule, float]]) -> ToolResult:
        """Whole results while they fit in `max_chars`; the first is cut (at a space, after its header
        where possible) rather than none shown; a cut list ends with the marker."""
        blocks = [self.format_result(rank, rule, score) for rank, (rule, score) in enumerate(hits, start=1)]
        budget = self.max_chars - len(TRUNCATION_MARKER) - 1
        text = "\n\n".join(blocks)
        if len(text) <= self.max_chars:
            return ToolResult(text=text, rule_ids=tuple(rule.id for rule, _ in hits))
        shown = 1
        while shown < len(blocks) and len("\n\n".join(blocks[: shown + 1])) <= budget:
            shown += 1
        kept = "\n\n".join(blocks[:shown])
        if len(kept) > budget:  # not even the first result fits whole
            return ToolResult(
                text=f"{cut_text(kept, budget)} {TRUNCATION_MARKER}", rule_ids=(hits[0][0].id,), truncated=True
            )
        return ToolResult(
            text=f"{kept}\n{TRUNCATION_MARKER}", rule_ids=tuple(rule.id for rule, _ in hits[:shown]), truncated=True
        )
