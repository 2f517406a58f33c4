"""Typed trees of frozen dataclasses, as the config is: dotted-key updates checked against each
field's type, plain dicts and YAML both ways, and the docstring under each field.

A delta maps dotted keys (`rssm.stoch`) to values, or to functions of the config it is applied
to; values may be strings from the command line (`--set rssm.stoch=8`) and are coerced here.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from collections.abc import Mapping
from typing import Any, Literal

import yaml

from blast_core.errors import ConfigError

Delta = Mapping[str, Any]


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check `value` (a Python value or a string from the command line) against a field's type."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        (item, _) = typing.get_args(hint)
        if isinstance(value, str):
            value = [v for v in value.strip("[]()").replace(" ", "").split(",") if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(key, v, item) for v in value)
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not isinstance(number, int | float) or int(number) != number:
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(number)
    if hint is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if hint is str:
        return str(value)
    raise ConfigError(f"{key}: cannot set a value of type {hint}")


def _set(cfg: Any, path: list[str], value: Any, key: str) -> Any:
    name, rest = path[0], path[1:]
    hints = _field_types(type(cfg))
    if name not in hints:
        valid = ", ".join(f.name for f in dataclasses.fields(cfg))
        raise ConfigError(f"unknown config key {key!r} ({name!r} is not one of: {valid})")
    current = getattr(cfg, name)
    if dataclasses.is_dataclass(current):
        if not rest:
            raise ConfigError(f"{key!r} is a section; set one of its keys, e.g. {key}.<name>")
        return dataclasses.replace(cfg, **{name: _set(current, rest, value, key)})
    if rest:
        raise ConfigError(f"unknown config key {key!r} ({name!r} has no sub-keys)")
    return dataclasses.replace(cfg, **{name: _coerce(key, value, hints[name])})


def apply(cfg: Any, delta: Delta) -> Any:
    """Apply a delta; callable values are evaluated on the config the delta is applied to."""
    base = cfg
    for key, value in delta.items():
        if callable(value):
            value = value(base)
        cfg = _set(cfg, key.split("."), value, key)
    return cfg


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`["rssm.stoch=8", ...]` -> `{"rssm.stoch": "8"}`; values are type-checked by `apply`.
    A key given two values is an error, not the last one winning."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if out.get(key, value) != value:
            raise ConfigError(f"--set {key} is given twice ({out[key]}, then {value}); "
                              "it takes one value")
        out[key] = value
    return out




# --- serialisation -------------------------------------------------------------------------------


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict (tuples as lists), for YAML, JSON and the database."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def from_dict(data: Mapping[str, Any], cls: type) -> Any:
    """Inverse of `to_dict`, type-checked; unknown keys are errors."""
    hints = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(f"unknown config key {key!r} in {cls.__name__}")
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(value, hint)
        else:
            kwargs[key] = _coerce(key, value, hint)
    return cls(**kwargs)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def field_doc(cls: type, name: str) -> str:
    """The docstring written under a field (read from the source; used by `config show --docs`)."""
    return _field_docs(cls).get(name, "")


def _field_docs(cls: type) -> dict[str, str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = str(nxt.value.value)
    return docs

