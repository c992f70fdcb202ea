"""The table of call syntaxes: every entry writes a call it reads back and strips, every family names an
entry, and a name the table does not have is refused by each public function."""

from typing import get_args

import pytest

from ascl_jax.chat import call_syntax as cs
from ascl_jax.chat.families import FAMILY_SPECS, CallSyntax
from ascl_jax.chat.call_types import ToolCall, ToolCallError
from ascl_jax.errors import ConfigError

TOOLS = [{"type": "function", "function": {
    "name": "consult_safety_rules", "description": "The safety rules of a category.",
    "parameters": {"type": "object", "properties": {"category": {"type": "string"}, "limit": {"type": "integer"}},
                   "required": ["category"]}}}]
PARAMS = {"consult_safety_rules": TOOLS[0]["function"]["parameters"]}
ARGS = {"category": "crime — vol", "limit": 3}
SYNTAXES = sorted(cs.CALL_SYNTAXES)


def test_table_has_exactly_the_declared_names():
    assert tuple(cs.CALL_SYNTAXES) == get_args(CallSyntax)
    assert {spec.call_syntax for spec in FAMILY_SPECS.values()} <= set(cs.CALL_SYNTAXES)


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("tools", [None, TOOLS], ids=["any_tool", "known_tools"])
def test_render_then_parse_gives_the_call_back(syntax, tools):
    text = cs.call_text(syntax, "consult_safety_rules", ARGS)
    calls = cs.parse_calls(syntax, text, tools)
    assert len(calls) == 1 and isinstance(calls[0], ToolCall), calls
    assert (calls[0].name, calls[0].arguments) == ("consult_safety_rules", ARGS)


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_strip_removes_the_call(syntax):
    text = cs.call_text(syntax, "consult_safety_rules", ARGS)
    assert cs.strip_calls(syntax, text).strip() == ""
    assert cs.strip_calls(syntax, "No call here.") == "No call here."


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_a_bad_call_gets_a_reminder_in_its_own_syntax(syntax):
    text = cs.call_text(syntax, "consult_safety_rules", {"category": "crime"}).replace('"crime"}', '"crime"')
    calls = cs.parse_calls(syntax, text, TOOLS)
    assert len(calls) == 1 and isinstance(calls[0], ToolCallError), calls
    reminder = cs.how_to_call(syntax, PARAMS, "consult_safety_rules")
    assert calls[0].message.endswith(reminder)
    assert "consult_safety_rules" in reminder and "(required: category)" in reminder


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_tools_system_text_lists_the_tools_and_the_syntax(syntax):
    text = cs.tools_system_text(syntax, TOOLS)
    assert '"name": "consult_safety_rules"' in text
    example = cs.call_text(syntax, "<tool name>", {"<argument>": "<value>"}).replace('"<tool name>"', "<tool name>")
    assert example in text


@pytest.mark.parametrize("call", [
    lambda s: cs.parse_calls(s, "text", TOOLS),
    lambda s: cs.call_text(s, "consult_safety_rules", ARGS),
    lambda s: cs.strip_calls(s, "text"),
    lambda s: cs.how_to_call(s, PARAMS),
    lambda s: cs.tools_system_text(s, TOOLS),
    cs.call_syntax_spec,
], ids=["parse_calls", "call_text", "strip_calls", "how_to_call", "tools_system_text", "call_syntax_spec"])
def test_unknown_syntax_is_refused_with_the_known_names(call):
    with pytest.raises(ConfigError) as err:
        call("mistral")
    message = str(err.value)
    assert "'mistral'" in message
    assert all(name in message for name in get_args(CallSyntax))
