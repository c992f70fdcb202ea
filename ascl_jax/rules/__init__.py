"""Safety rules for ASCL: rule books, retrievers and the rule tools (`consult_safety_rules`, `retrieve_policy`)."""

from ascl_jax.rules.categories import POLICY_CATEGORIES
from ascl_jax.rules.policy_tool import POLICY_TOOL_NAME, RetrievePolicyTool
from ascl_jax.rules.retrieval import BM25Retriever, CategoryRetriever, HybridRetriever, RuleRetriever, tokenize
from ascl_jax.rules.rulebook import ACTIONS, Rule, RuleBook
from ascl_jax.rules.rulebook_files import (
    SHIPPED_RULEBOOKS,
    default_rulebook,
    load_rulebook,
    parse_rulebook,
    shipped_rulebook,
)
from ascl_jax.rules.tool import TOOL_NAME, TRUNCATION_MARKER, ConsultSafetyRulesTool, ToolResult
from ascl_jax.rules.tools import RULE_TOOLS, TOOL_NAMES, RuleTool, make_tool

__all__ = [
    "ACTIONS",
    "BM25Retriever",
    "CategoryRetriever",
    "ConsultSafetyRulesTool",
    "HybridRetriever",
    "POLICY_CATEGORIES",
    "POLICY_TOOL_NAME",
    "RULE_TOOLS",
    "RetrievePolicyTool",
    "Rule",
    "RuleBook",
    "RuleRetriever",
    "RuleTool",
    "SHIPPED_RULEBOOKS",
    "TOOL_NAME",
    "TOOL_NAMES",
    "TRUNCATION_MARKER",
    "ToolResult",
    "default_rulebook",
    "load_rulebook",
    "make_tool",
    "parse_rulebook",
    "shipped_rulebook",
    "tokenize",
]
