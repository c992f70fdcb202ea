"""The subset of JSON Schema that tool schemas use, checked with errors written for the model to read."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and math.isfinite(v) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def validate_arguments(value: Any, schema: Mapping, path: str = "") -> list[str]:
    """Problems of `value` against a JSON schema, as short sentences naming the argument (empty if valid).

    The subset tool schemas use: `type` (a name or a list), `enum`, `const`, `properties`, `required`,
    `additionalProperties` (false or a schema), `items`, `minItems`/`maxItems`, `minLength`/`maxLength`,
    `minimum`/`maximum`, `anyOf`/`oneOf` (valid if any branch is). Other keywords are ignored.
    """
    where = f'argument "{path}"' if path else "the arguments"
    problems: list[str] = []
    if not isinstance(schema, Mapping):
        return problems
    if "anyOf" in schema or "oneOf" in schema:
        branches = list(schema.get("anyOf", [])) + list(schema.get("oneOf", []))
        if branches and not any(not validate_arguments(value, b, path) for b in branches):
            problems.append(f"{where} matches none of the allowed forms")
            return problems
    expected = schema.get("type")
    if expected is not None:
        names = [expected] if isinstance(expected, str) else list(expected)
        known = [n for n in names if n in _TYPES]
        if known and not any(_TYPES[n](value) for n in known):
            problems.append(f"{where} must be {' or '.join(_article(n) for n in known)}, got {json_type(value)}")
            return problems
    if "const" in schema and value != schema["const"]:
        problems.append(f"{where} must be {short_json(schema['const'])}, got {short_json(value)}")
    if "enum" in schema and value not in list(schema["enum"]):
        allowed = ", ".join(short_json(v) for v in schema["enum"])
        problems.append(f"{where} must be one of {allowed}; got {short_json(value)}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{where} must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{where} must have at most {schema['maxLength']} characters")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where} must be >= {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where} must be <= {schema['maximum']}, got {value}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(f"{where} must have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{where} must have at most {schema['maxItems']} items")
        items = schema.get("items")
        if isinstance(items, Mapping):
            for k, item in enumerate(value):
                problems += validate_arguments(item, items, f"{path}[{k}]" if path else f"[{k}]")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key in schema.get("required") or []:
            if key not in value:
                problems.append(f'missing required argument "{_join(path, key)}"')
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                problems += validate_arguments(item, props[key], _join(path, key))
            elif extra is False:
                allowed = ", ".join(f'"{k}"' for k in props) or "none"
                problems.append(f'unexpected argument "{_join(path, key)}" (allowed: {allowed})')
            elif isinstance(extra, Mapping):
                problems += validate_arguments(item, extra, _join(path, key))
    return problems


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def _article(type_name: str) -> str:
    return {"integer": "an integer", "object": "an object", "array": "an array", "null": "null"}.get(
        type_name, f"a {type_name}"
    )


# bool before int: a bool is an int in Python, but not in JSON.
_TYPE_NAMES = ((type(None), "null"), (bool, "a boolean"), (int, "an integer"), (float, "a number"),
               (str, "a string"), (list, "an array"), (dict, "an object"))


def json_type(value: Any) -> str:
    """The JSON type of `value` with its article, as error messages name it ("an integer", "null")."""
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


def short_json(value: Any, limit: int = 60) -> str:
    """`value` as JSON, cut to `limit` characters, for error messages."""
    try:
        s = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        s = repr(value)
    return s if len(s) <= limit else s[: limit - 3] + "..."
