"""Typed nested dataclass configs from YAML files and dotted command-line overrides.

`load_config(TrainConfig, "run.yaml", ["rl.group_size=8"])` builds the frozen dataclass tree, checking
every value against its field's type; an unknown key fails with the nearest valid name. `describe`
lists every option with its type and default (for `--help`), `to_dict` gives the resolved config back
as plain data (written into each run folder)."""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ascl_jax.errors import ConfigError


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_config(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str, base: Any = None) -> Any:
    """`value` (from YAML or a command line) as type `tp`, or a ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} is not {_type_name(tp)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if _is_config(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} options, got {value!r}")
        return build(tp, value, key, base if isinstance(base, tp) else None)
    return value


def build(cls, data: dict[str, Any], prefix: str = "", base: Any = None) -> Any:
    """Instantiate dataclass `cls` from nested plain data; fields not given keep their value in `base`
    (default: `cls()`), so a group given in part keeps the rest of its parent's defaults."""
    base = cls() if base is None else base
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"unknown option {full!r}{_suggest(key, names, prefix)}")
        kwargs[key] = _coerce(value, hints[key], full, getattr(base, key))
    try:
        return dataclasses.replace(base, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{prefix + ': ' if prefix else ''}{exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from None


def _suggest(key: str, names: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {(prefix + '.' if prefix else '') + close[0]!r}?"
    return f"; valid options here: {', '.join(names)}"


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str], cls) -> dict[str, Any]:
    """`key.sub=value` strings applied to nested plain data (validated against `cls`'s field names)."""
    data = _deep_copy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        node, node_cls, path = data, cls, ""
        for i, part in enumerate(parts):
            names = [f.name for f in dataclasses.fields(node_cls) if f.init and not f.name.startswith("_")]
            if part not in names:
                raise ConfigError(f"unknown option {'.'.join(parts[: i + 1])!r}{_suggest(part, names, path)}")
            path = f"{path}.{part}" if path else part
            tp = _hints(node_cls)[part]
            if i == len(parts) - 1:
                node[part] = _parse_scalar(raw)
            elif typing.get_origin(tp) in (dict, typing.Mapping, collections.abc.Mapping) and i == len(parts) - 2:
                # a mapping option (e.g. rewards.weights.safety=2): edit one entry of its current value
                if part not in node:
                    node[part] = dict(getattr(node_cls(), part))
                node[part][parts[-1]] = _parse_scalar(raw)
                break
            else:
                sub = _unwrap_optional(tp)
                if not _is_config(sub):
                    raise ConfigError(f"{path} is a value, not a group: write {path}=VALUE")
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{path} is a group of options, not a value")
                node_cls = sub
    return data


def _unwrap_optional(tp):
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _deep_copy(data):
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of options")
    return data


def load_config(cls, path: str | Path | None = None, overrides: list[str] = ()) -> Any:
    """`cls` from defaults, then the YAML file at `path`, then the dotted `overrides`."""
    data = read_yaml(path) if path is not None else {}
    source = f"{path}: " if path is not None else ""
    try:
        return build(cls, apply_overrides(data, list(overrides), cls))
    except ConfigError as exc:
        raise ConfigError(f"{source}{exc}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested data (tuples as lists) that `load_config` reads back to an equal config."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init and not f.name.startswith("_")}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    return plain(config)


def describe(cls, prefix: str = "", defaults: Any = None) -> list[tuple[str, str, Any]]:
    """(dotted key, type, default) for every option of `cls`, nested groups flattened."""
    rows = []
    hints = _hints(cls)
    defaults = cls() if defaults is None else defaults
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if _is_config(tp):
            rows.extend(describe(tp, key + ".", getattr(defaults, f.name)))
        else:
            rows.append((key, _type_name(tp), to_dict(getattr(defaults, f.name))))
    return rows
