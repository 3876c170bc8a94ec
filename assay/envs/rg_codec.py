"""A reasoning-gym entry as JSON task fields, and back, without losing a type.

reasoning-gym's scorers read an entry's `metadata`, which holds tuples (arc's boards are
tuples of tuples, compared with `==` against a parsed answer), dicts with integer keys
(graph_color's colourings) and now and then a set. Plain JSON would turn them into lists
and string keys, and the entry read back from a task file would score differently from
the one generated. So the few values JSON cannot hold are tagged:

    (1, 2)        -> {"__tuple__": [1, 2]}
    {0: "red"}    -> {"__items__": [[0, "red"]]}
    {1, 2}        -> {"__set__": [1, 2]}          (frozenset: "__frozenset__")
    float("nan")  -> {"__float__": "nan"}
    Fraction(3, 4) -> {"__fraction__": "3/4"}    (gsm_symbolic's variables)

and everything else is plain JSON. A dict whose keys look like a tag is stored as
`__items__` too, so decoding is exact. numpy scalars become the Python numbers they equal.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

TAGS = ("__tuple__", "__items__", "__set__", "__frozenset__", "__float__", "__fraction__")


class CodecError(ValueError):
    """A value that cannot be stored in a task file, or a malformed tag; names the path."""


def encode(value: Any, path: str = "") -> Any:
    """`value` as JSON data (see the module docstring); `CodecError` names what cannot be."""
    if value is None or type(value) in (bool, str):
        return value
    if isinstance(value, str):  # numpy's str_, a str-valued enum: the text itself
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"__float__": repr(float(value))}
    if isinstance(value, Fraction):
        return {"__fraction__": f"{value.numerator}/{value.denominator}"}
    if isinstance(value, list):
        return [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, (set, frozenset)):
        tag = "__set__" if isinstance(value, set) else "__frozenset__"
        items = sorted(value, key=lambda v: (type(v).__name__, repr(v)))  # the same text every run
        return {tag: [encode(v, f"{path}[]") for v in items]}
    if isinstance(value, dict):
        if all(type(k) is str and k not in TAGS for k in value):
            return {k: encode(v, f"{path}.{k}" if path else k) for k, v in value.items()}
        return {"__items__": [[encode(k, path), encode(v, f"{path}[{k!r}]")] for k, v in value.items()]}
    item = getattr(value, "item", None)  # a numpy scalar
    if callable(item) and getattr(value, "shape", None) == ():
        return encode(item(), path)
    raise CodecError(f"{path or '(entry)'}: a {type(value).__name__} cannot be stored in a task file")


def decode(value: Any, path: str = "") -> Any:
    """The value `encode` was given; `CodecError` names a malformed tag."""
    if isinstance(value, list):
        return [decode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, body), = value.items()
        if tag in TAGS:
            return _untag(tag, body, path)
    return {k: decode(v, f"{path}.{k}" if path else k) for k, v in value.items()}


def _untag(tag: str, body: Any, path: str) -> Any:
    where = path or "(value)"
    if tag == "__float__":
        if body not in ("nan", "inf", "-inf"):
            raise CodecError(f"{where}: __float__ must be nan, inf or -inf, got {body!r}")
        return float(body)
    if tag == "__fraction__":
        try:
            return Fraction(body)
        except (TypeError, ValueError, ZeroDivisionError):
            raise CodecError(f"{where}: __fraction__ must be text p/q, got {body!r}") from None
    if not isinstance(body, list):
        raise CodecError(f"{where}: {tag} must hold a list")
    items = [decode(v, f"{path}[{i}]") for i, v in enumerate(body)]
    if tag == "__tuple__":
        return tuple(items)
    if tag == "__items__":
        if not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in items):
            raise CodecError(f"{where}: __items__ must hold [key, value] pairs")
        try:
            return {k: v for k, v in items}
        except TypeError:
            raise CodecError(f"{where}: __items__ holds a key that cannot be a dict key") from None
    try:
        return set(items) if tag == "__set__" else frozenset(items)
    except TypeError:
        raise CodecError(f"{where}: {tag} holds an item that cannot be in a set") from None
