"""Option values from text: `--set KEY=VALUE`, YAML and keyword arguments, one way.

Environments, the training config and the organism's prior all take options that
may arrive as strings (`--set max_value=9`) or as typed values (YAML, Python).
`coerce` turns one value into a field's type, and `build_options` fills a whole
options dataclass, naming the owner, the option and the expected type when a value
does not fit. This module imports nothing of assay but `assay.errors`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from assay.errors import BRIEF, AssayError, brief, cut

T = TypeVar("T")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("none", "null", "")


class OptionError(AssayError, ValueError):
    """An unknown option, or a value that does not fit its option's type or range."""


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """Parse `KEY=VALUE` strings (from `--set`) into a dict; a malformed one is an `OptionError`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--set expects KEY=VALUE, got {brief(item)}")
        out[key.strip().replace("-", "_")] = value
    return out


def coerce(value: Any, kind: Any, *, what: str) -> Any:
    """`value` converted to the type `kind` (a class or a type hint such as `int | None`).

    Strings are parsed (`"true"`, `"3"`, `"1,2,3"` for a list or tuple, `"none"` for an
    optional field); values of the right type pass through; anything else is an
    `OptionError` whose message starts with `what` (for example "option 'steps'").
    """
    kinds = typing.get_args(kind) if _is_union(kind) else (kind,)
    optional = type(None) in kinds
    kinds = tuple(k for k in kinds if k is not type(None))
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in _NONE):
        if optional or not kinds:
            return None
        raise OptionError(f"{what} cannot be empty")
    base = kinds[0] if kinds else type(value)
    origin = typing.get_origin(base) or base
    try:
        if origin is Any or not isinstance(origin, type):
            return value
        if origin is bool:
            return _to_bool(value)
        if origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if origin is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if origin is str:
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ValueError
            return str(value)
        if origin in (list, tuple):
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)):
                raise ValueError
            return origin(_list_item(v) for v in items)
        if origin is dict:
            if not isinstance(value, Mapping):
                raise OptionError(f"{what} expects a mapping, got {brief(value)}")
            return dict(value)
        return value if isinstance(value, origin) else origin(value)
    except (TypeError, ValueError, OverflowError) as exc:  # float(10**400) overflows
        if isinstance(exc, OptionError):
            raise
        name = "true/false" if origin is bool else getattr(origin, "__name__", str(origin))
        raise OptionError(f"{what} expects {name}, got {brief(value)}") from None


def field_types(cls: type) -> dict[str, Any]:
    """The type of each field of dataclass `cls`: its hint where it resolves, else its default's type."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a user's dataclass whose hints name what its module cannot resolve
        hints = {}
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        out[f.name] = hints.get(f.name, type(default) if default is not None else Any)
    return out


def option_table(cls: type) -> list[tuple[str, str, str]]:
    """(name, type, default) of each field of options dataclass `cls`, as text for a table
    (`assay envs ENV`). A field's `metadata["hint"]` names its type where the annotation
    is looser (`Any` for a value converted in `__post_init__`)."""
    kinds = field_types(cls)
    rows = []
    for f in dataclasses.fields(cls):
        hint = f.metadata.get("hint", kinds[f.name])
        if isinstance(hint, type) and not typing.get_args(hint):
            kind = hint.__name__
        else:  # `list[reasoning_gym.logic.aiw.TaskType]` -> `list[TaskType]`
            kind = re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", str(hint).replace("typing.", ""))
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append((f.name, kind, _shown(default)))
    return rows


def _shown(value: Any) -> str:
    def plain(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.value
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    value = plain(value)
    if isinstance(value, str):
        return value if value.strip() == value and value else json.dumps(value)
    try:
        return json.dumps(value, default=str)
    except ValueError:
        return repr(value)


def build_options(cls: type[T], values: Mapping[str, Any], *, owner: str, base: T | None = None) -> T:
    """An instance of dataclass `cls` (or `base` with some fields replaced) from `values`.

    Unknown keys, values of the wrong type and values the dataclass's own checks refuse
    (its `__post_init__` raising `ValueError`) are `OptionError`s naming `owner`
    (for example "env 'countdown'").
    """
    types_ = field_types(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in types_:
            names = ", ".join(sorted(types_)) or "none"
            raise OptionError(f"unknown option {brief(key)} for {owner} (options: {names})")
        kwargs[key] = coerce(value, types_[key], what=f"{owner}: option {key!r}")
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{owner}: {cut(str(exc), 2 * BRIEF)}") from None


def _is_union(kind: Any) -> bool:
    return isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(value)


def _list_item(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.lstrip("-").isdigit() else text
    return value
