# SPDX-License-Identifier: MIT
"""Typed, frozen configuration from YAML, with errors that name the file, the key path and a fix.

Config objects are frozen dataclasses whose fields carry their own help text and bounds (see
`param`). `build` turns a plain mapping into such an object, checking every key and type; nothing is
evaluated, no expression strings exist (house style 5).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from ppi_cli.errors import ConfigError

__all__ = ["param", "build", "to_dict", "config_hash", "changed_settings", "read_yaml", "dump_yaml", "field_help"]

C = TypeVar("C")
_MISSING = dataclasses.MISSING


def param(default: Any = _MISSING, help: str = "", *, min: float | None = None, max: float | None = None,
          default_factory: Any = _MISSING) -> Any:
    """A config field with documentation and optional inclusive bounds.

    Example:
        >>> lr: float = param(0.01, "Initial learning rate.", min=0)
    """
    meta = {"help": help, "min": min, "max": max}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_help(cls: type, name: str) -> str:
    """The help text of field `name` of config class `cls`."""
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping safely (no Python tags), with one-line errors naming the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file", hint="check the path, or run `ppi recipe list` for bundled names")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}", hint="fix the YAML syntax at that position") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, found {type(data).__name__}")
    return data


def dump_yaml(obj: Any) -> str:
    """Render a config object (or plain mapping) as YAML, keys in definition order."""
    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def to_dict(obj: Any) -> Any:
    """Plain (JSON/YAML-ready) data from a config object: tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def config_hash(obj: Any) -> str:
    """A short, stable hash of a config object or mapping (keys sorted), used to key caches."""
    text = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_settings(recorded: Mapping[str, Any], config: Any) -> list[str]:
    """The dotted keys in which `config` differs from a `recorded` `to_dict` of a config of its class.

    A key the record lacks is a field added to the toolkit since it was written: it counts only when
    `config` moves it off the field's default, so a study or a run started before an upgrade resumes
    after it. A recorded key the class no longer has counts as a change.

    Example:
        >>> changed_settings(yaml.safe_load(open("runs/x/recipe.yaml")), recipe)  # [] when it may resume
    """
    now, before = _flat(to_dict(config)), _flat(recorded)
    changed = []
    for key in sorted(set(now) | set(before)):
        if key in before:
            if key not in now or before[key] != now[key]:
                changed.append(key)
        elif now[key] != _field_default(config, key):
            changed.append(key)
    return changed


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.update(_flat(value, path) if isinstance(value, Mapping) and value else {path: value})
    return out


def _field_default(config: Any, dotted: str) -> Any:
    """The default of the field at `dotted` in `config`'s class, as `to_dict` writes it (`_MISSING` if none)."""
    *parents, name = dotted.split(".")
    for part in parents:
        config = getattr(config, part, None)
    if not dataclasses.is_dataclass(config):
        return _MISSING
    field = next((f for f in dataclasses.fields(config) if f.name == name), None)
    if field is None:
        return _MISSING
    if field.default is not _MISSING:
        return to_dict(field.default)
    return to_dict(field.default_factory()) if field.default_factory is not _MISSING else _MISSING


def build(cls: type[C], data: Mapping[str, Any], *, source: str | Mapping[str, str], prefix: str = "") -> C:
    """Build config class `cls` from `data`, checking keys, types and bounds.

    Args:
        cls: A frozen dataclass whose fields were declared with `param`.
        data: The mapping read from YAML (possibly merged from several files).
        source: The file the values came from, or a mapping from dotted key to file (after merges).
        prefix: Dotted path of `data` inside the whole file, for messages.

    Raises:
        ConfigError: One line naming the file, the key path and the nearest valid key.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_src(source, prefix)}: {prefix or 'top level'}: expected a mapping, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # C is a dataclass type
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            path = _join(prefix, str(key))
            raise ConfigError(f"{_src(source, path)}: {path}: unknown key{_suggest(str(key), fields, prefix)}")
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is _MISSING and f.default_factory is _MISSING:
                path = _join(prefix, name)
                raise ConfigError(f"{_src(source, prefix)}: {path}: required key is missing",
                                  hint=f"add '{name}:' ({f.metadata.get('help', '')})")
            continue
        path = _join(prefix, name)
        value = _convert(hints[name], data[name], source, path)
        _check_bounds(f, value, source, path)
        values[name] = value
    return cls(**values)


def _convert(tp: Any, value: Any, source: str | Mapping[str, str], path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    where = f"{_src(source, path)}: {path}"
    if dataclasses.is_dataclass(tp):
        return build(typing.cast(type, tp), value, source=source, prefix=path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, source, path)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_describe(tp)}, got {_got(value)}")
    if origin is Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}{hint}")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {_got(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {_got(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {_got(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {_got(value)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_got(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(_convert(a, v, source, f"{path}[{i}]") for i, (a, v) in pairs)
        item = args[0] if args else Any
        return tuple(_convert(item, v, source, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_kind(value)}")
        key_t, val_t = args or (str, Any)
        return {_convert(key_t, k, source, path): _convert(val_t, v, source, f"{path}.{k}") for k, v in value.items()}
    raise TypeError(f"config type {tp!r} at {path} is not supported by the loader")  # a bug in our schema


def _check_bounds(f: dataclasses.Field, value: Any, source: str | Mapping[str, str], path: str) -> None:
    low, high = f.metadata.get("min"), f.metadata.get("max")
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if (low is not None and v < low) or (high is not None and v > high):
            lo = "-inf" if low is None else low
            hi = "inf" if high is None else high
            raise ConfigError(f"{_src(source, path)}: {path}: {v!r} is out of range [{lo}, {hi}]")


def _suggest(key: str, fields: Mapping[str, Any], prefix: str) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{_join(prefix, close[0])}'?"
    return f"; valid keys here: {', '.join(fields)}"


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _src(source: str | Mapping[str, str], path: str) -> str:
    if isinstance(source, str):
        return source
    # Walk up the dotted path until a key whose origin is known (merged recipes record provenance).
    parts = path.split(".") if path else []
    while parts:
        key = ".".join(parts)
        if key in source:
            return source[key]
        parts.pop()
    return source.get("", "<config>")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _got(value: Any) -> str:
    """What a message says it got: the value's YAML kind and the value (`null` alone for null)."""
    return "null" if value is None else f"{_kind(value)} {value!r}"


def _kind(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
            type(None): "null"}.get(type(value), type(value).__name__)
