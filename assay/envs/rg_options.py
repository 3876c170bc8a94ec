"""The options of an `rg:<dataset>` env, derived from the dataset's config dataclass.

Every field of a reasoning-gym config (but `seed` and `size`, which `generate(n, seed)`
sets) becomes an env option, `--set KEY=VALUE` or `env.KEY=VALUE` in training. Values
arrive as text or as YAML/Python values and are converted to the field's own type:

- `int`, `float`, `bool`, `str` and their optional forms as every assay option is;
- lists and tuples (`list[str]`, `tuple[str, ...]`, `list[float]`, a bare `tuple`) from
  `a,b,c` or a JSON array (`[[0.1, 0.5], [0.5, 0.9]]` for `list[tuple[float, float]]`);
- an enum or a `Literal` from one of its values (`--set transformation=uppercase`);
- `datetime.date` / `datetime.time` from ISO text (`2024-01-31`, `09:30`);
- a nested dataclass (arc's `board_format_opts`) from a JSON object;
- composite's `datasets` from `name,name:weight,...` or a JSON array of
  `{"name", "weight", "config"}` objects.

Then the dataset's own `validate()` runs, so a value it refuses is one line naming the
env. `options_schema` describes the options as JSON Schema (`assay envs rg:<dataset>`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import enum
import json
import math
import types
import typing
from collections.abc import Sequence
from typing import Any

from assay.options import OptionError, coerce

#: Fields of every reasoning-gym config that `generate(n, seed)` sets itself.
MANAGED = ("seed", "size")
#: How an answer is read from a completion: the last `<answer>...</answer>` ("tag") or the
#: whole completion outside any `<think>` block ("whole").
ANSWER_FORMATS = ("tag", "whole")
#: assay's own options of every rg env, beside the dataset's.
OWN_FIELDS: dict[str, tuple[Any, Any, Any, str]] = {  # name: (type, described as, default, doc)
    "time_limit": (float, float, 5.0, "seconds per verification before it is a `timeout`"),
    "answer_format": (str, typing.Literal["tag", "whole"], "tag",
                      "`tag`: the last <answer>...</answer>; `whole`: the whole reply"),
    "guards": (bool, bool, True,
               "refuse hacks a scorer accepts (a copied question, ...: docs/trust.md); "
               "false: reasoning-gym's scorer alone"),
}
_SCALARS = (int, float, bool, str)


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def _simple(hint: Any) -> bool:
    """Whether assay's own `coerce` converts values of `hint` (a scalar, or an optional one)."""
    if _is_union(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(args) == 1 and args[0] in _SCALARS
    return hint in _SCALARS


def _sequence_origin(hint: Any) -> type | None:
    origin = typing.get_origin(hint) or hint
    if origin in (list, tuple):
        return origin
    if isinstance(origin, type) and issubclass(origin, Sequence) and origin is not str:
        return list
    return None


def _item_hint(hint: Any, default: Any) -> Any:
    """The type of a sequence's items: from the hint, else from the default's items."""
    args = [a for a in typing.get_args(hint) if a is not Ellipsis]
    if len(args) == 1:
        return args[0]
    if default and isinstance(default, (list, tuple)):
        return type(default[0])
    return Any


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def convert(value: Any, hint: Any, *, what: str, default: Any = None) -> Any:
    """`value` (text, or a YAML/Python value) as a value of the config type `hint`."""
    if value is None:
        return None
    if _is_union(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if isinstance(value, str) and value.strip().lower() in ("none", "null", ""):
            return None
        return convert(value, args[0], what=what, default=default) if len(args) == 1 else value
    if hint is Any:
        return _number(value.strip()) if isinstance(value, str) else value
    if _simple(hint):
        return coerce(value, hint, what=what)
    if typing.get_origin(hint) is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise OptionError(f"{what} must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(value, hint, what)
    if hint in (datetime.date, datetime.time):
        if isinstance(value, hint):
            return value
        try:
            return hint.fromisoformat(str(value).strip())
        except ValueError:
            raise OptionError(f"{what} expects an ISO {hint.__name__}, got {value!r}") from None
    if dataclasses.is_dataclass(hint):
        return _dataclass(value, hint, what)
    origin = _sequence_origin(hint)
    if origin is not None:
        items = _items(value, what)
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) > 1:
            if len(items) != len(args):
                raise OptionError(f"{what} expects {len(args)} values, got {len(items)}")
            return tuple(convert(v, a, what=what) for v, a in zip(items, args, strict=True))
        item = _item_hint(hint, default)
        return origin(convert(v, item, what=what) for v in items)
    return value


def _items(value: Any, what: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise OptionError(f"{what}: invalid JSON array: {exc.msg}") from None
            if isinstance(parsed, list):
                return parsed
        return [] if not text else [part.strip() for part in text.split(",")]
    raise OptionError(f"{what} expects a list, got {value!r}")


def _enum(value: Any, cls: type[enum.Enum], what: str) -> enum.Enum:
    if isinstance(value, cls):
        return value
    for member in cls:
        if str(value).strip().lower() in (str(member.value).lower(), member.name.lower()):
            return member
    allowed = ", ".join(str(m.value) for m in cls)
    raise OptionError(f"{what} must be one of {allowed}, got {value!r}")


def _dataclass(value: Any, cls: type, what: str) -> Any:
    if isinstance(value, cls):
        return value
    if cls.__name__ == "DatasetSpec" and isinstance(value, str) and not value.startswith("{"):
        name, _, weight = value.partition(":")  # composite: `name` or `name:weight`
        return cls(name=name.strip(), weight=float(coerce(weight or "1", float, what=what)), config={})
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise OptionError(f"{what}: invalid JSON object: {exc.msg}") from None
    if not isinstance(value, dict):
        raise OptionError(f"{what} expects a JSON object of {cls.__name__}'s fields")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise OptionError(f"{what}: unknown field(s) {', '.join(unknown)} (fields: {', '.join(sorted(names))})")
    kwargs = {k: convert(v, hints.get(k, Any), what=f"{what}.{k}") for k, v in value.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise OptionError(f"{what}: {exc}") from None


# -- the options dataclass -------------------------------------------------------------


def config_fields(config_cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, type hint) of each config field an option sets (all but `MANAGED`)."""
    hints = typing.get_type_hints(config_cls)
    return [(f, hints.get(f.name, Any)) for f in dataclasses.fields(config_cls) if f.name not in MANAGED]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def make_options_class(dataset: str, config_cls: type) -> type:
    """The `Options` dataclass of env `rg:<dataset>`: the config's fields and assay's own.

    Fields whose type assay's `coerce` handles keep it; the others are typed `Any` and
    converted in `__post_init__`, which then builds the config and runs its `validate()`.
    """
    specs: list[tuple[str, Any, dataclasses.Field]] = []
    complex_hints: dict[str, tuple[Any, Any]] = {}
    for f, hint in config_fields(config_cls):
        default = _default(f)
        kind = hint if _simple(hint) else Any
        if not _simple(hint):
            complex_hints[f.name] = (hint, default)
        meta = {"hint": hint}
        if isinstance(default, (list, dict, set)) or dataclasses.is_dataclass(default):
            made = dataclasses.field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta)
        else:
            made = dataclasses.field(default=default, metadata=meta)
        specs.append((f.name, kind, made))
    taken = {name for name, _, _ in specs}
    own = [name for name in OWN_FIELDS if name not in taken]  # a dataset's field of that name wins
    for name in own:
        kind, shown, default, doc = OWN_FIELDS[name]
        specs.append((name, kind, dataclasses.field(default=default, metadata={"hint": shown, "doc": doc})))

    def __post_init__(self: Any) -> None:
        for name, (hint, default) in complex_hints.items():
            value = getattr(self, name)
            if value is not default:
                setattr(self, name, convert(value, hint, what=f"option {name!r}", default=default))
        if "time_limit" in own and not (math.isfinite(self.time_limit) and 0 < self.time_limit <= 3600):
            raise ValueError(f"time_limit must be a number of seconds in (0, 3600], got {self.time_limit!r}")
        if "answer_format" in own and self.answer_format not in ANSWER_FORMATS:
            raise ValueError(
                f"answer_format must be one of {', '.join(ANSWER_FORMATS)}, got {self.answer_format!r}"
            )
        make_config(config_cls, self, seed=0, size=1)  # the dataset's own checks

    cls = dataclasses.make_dataclass(
        f"RG_{dataset}_Options", specs, namespace={"__post_init__": __post_init__}
    )
    cls.__doc__ = f"Options of env 'rg:{dataset}': the fields of reasoning-gym's {config_cls.__name__}."
    return cls


def make_config(config_cls: type, options: Any, *, seed: int, size: int) -> Any:
    """The dataset's config from `options`, validated; a refusal is a `ValueError`."""
    names = [f.name for f, _ in config_fields(config_cls)]
    values = {name: copy.deepcopy(getattr(options, name)) for name in names}
    try:
        config = config_cls(**values, seed=seed, size=size)
        if callable(getattr(config, "validate", None)):
            config.validate()
    except OptionError:
        raise
    except Exception as exc:  # reasoning-gym checks with assert
        text = str(exc) or type(exc).__name__
        raise ValueError(f"reasoning-gym refused the options: {text}") from None
    return config


# -- describing the options ------------------------------------------------------------


def json_schema(hint: Any) -> dict[str, Any]:
    """A JSON Schema of values of the config type `hint`."""
    if hint is Any:
        return {}
    if _is_union(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return {"anyOf": [json_schema(a) for a in args] + [{"type": "null"}]}
    if typing.get_origin(hint) is typing.Literal:
        return {"enum": list(typing.get_args(hint))}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [m.value for m in hint]}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    if hint in (datetime.date, datetime.time):
        return {"type": "string", "format": hint.__name__}
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        props = {f.name: json_schema(hints.get(f.name, Any)) for f in dataclasses.fields(hint)}
        return {"type": "object", "properties": props}
    if _sequence_origin(hint) is not None:
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return {"type": "array", "items": json_schema(args[0])} if len(args) == 1 else {"type": "array"}
    return {}


def plain(value: Any) -> Any:
    """A default as JSON data (enums by value, tuples as lists, dates as ISO text)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def options_schema(options_cls: type) -> dict[str, Any]:
    """The JSON Schema of an rg env's options: each option's type and default."""
    props: dict[str, Any] = {}
    for f in dataclasses.fields(options_cls):
        schema = json_schema(f.metadata.get("hint", Any))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        schema["default"] = plain(default)
        if "doc" in f.metadata:
            schema["description"] = f.metadata["doc"]
        props[f.name] = schema
    return {"type": "object", "properties": props, "additionalProperties": False}

