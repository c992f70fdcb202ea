"""Safety rules for ASCL: rule books, retrievers and the `consult_safety_rules` tool."""

from ascl_jax.rules.retrieval import BM25Retriever, CategoryRetriever, HybridRetriever, RuleRetriever, tokenize
from ascl_jax.rules.rulebook import ACTIONS, Rule, RuleBook
from ascl_jax.rules.rulebook_files import default_rulebook, load_rulebook, parse_rulebook
from ascl_jax.rules.tool import TOOL_NAME, TRUNCATION_MARKER, ConsultSafetyRulesTool, ToolResult

__all__ = [
    "ACTIONS",
    "BM25Retriever",
    "CategoryRetriever",
    "ConsultSafetyRulesTool",
    "HybridRetriever",
    "Rule",
    "RuleBook",
    "RuleRetriever",
    "TOOL_NAME",
    "TRUNCATION_MARKER",
    "ToolResult",
    "default_rulebook",
    "load_rulebook",
    "parse_rulebook",
    "tokenize",
]
