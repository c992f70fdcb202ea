"""The rule tools a run can offer, by name: `rollout.tool` picks one, `make_tool` builds it over a book.

* `consult_safety_rules` (the default): category and/or query, rule blocks back (`ascl_jax.rules.tool`);
* `retrieve_policy`: the paper's tool, a query and `top_k`, a ranked list of clauses back
  (`ascl_jax.rules.policy_tool`; Wang et al., arXiv 2602.13562 v1, §3.1).

Each name is its class's `name`, written once in the class's module; `TOOL_NAMES` is read off this registry.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ascl_jax.errors import ConfigError
from ascl_jax.rules.policy_tool import RetrievePolicyTool
from ascl_jax.rules.rulebook import RuleBook, did_you_mean
from ascl_jax.rules.tool import BoundedRuleTool, ConsultSafetyRulesTool, ToolResult

__all__ = ["RULE_TOOLS", "RuleTool", "TOOL_NAMES", "make_tool"]


@runtime_checkable
class RuleTool(Protocol):
    """What the rollout needs of a tool: its `name`, its function `schema` for the chat template, and
    `call(arguments)`, which answers every call (bad arguments with an error result, never by raising)."""

    name: str

    @property
    def schema(self) -> dict[str, Any]: ...

    def call(self, arguments: Any) -> ToolResult: ...


RULE_TOOLS: dict[str, type[BoundedRuleTool]] = {
    cls.name: cls for cls in (ConsultSafetyRulesTool, RetrievePolicyTool)
}
TOOL_NAMES: tuple[str, ...] = tuple(RULE_TOOLS)


def make_tool(name: str, rulebook: RuleBook) -> RuleTool:
    """The tool called `name` over `rulebook`, with its default retriever and bounds."""
    cls = RULE_TOOLS.get(name)
    if cls is None:
        hint = did_you_mean(name, TOOL_NAMES)
        raise ConfigError(f"unknown rule tool {name!r}{hint}; use one of {', '.join(TOOL_NAMES)}")
    return cls(rulebook)
