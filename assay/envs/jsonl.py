"""Reading JSONL one line at a time, so that one bad line is one problem and never the file's.

Task files (`assay validate`, `train_file`) and `assay verify` inputs are read here. Lines
are split on `\\n` only (a `\\r` before it is dropped): `str.splitlines` would also split
inside a JSON string at U+2028, U+0085 or \\x1c, and give one line two verdicts. Each
line is decoded on its own, so a line that is not UTF-8 is named while the rest are
read; a UTF-8 byte-order mark before the first line is skipped.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

BOM = b"\xef\xbb\xbf"
#: Deepest nesting of arrays and objects a line may have. Tasks are shallow; deeper data
#: would only reach the recursive code downstream (schema checks, pickling to workers).
MAX_DEPTH = 64


def read_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str | None]]:
    """(line number from 1, text) for each line of a file (`-`: stdin); text is None for a
    line that is not UTF-8. Raises OSError when the file cannot be read."""
    if os.fspath(path) == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(path, "rb") as handle:
            data = handle.read()
    if data.startswith(BOM):
        data = data[len(BOM) :]
    pieces = data.split(b"\n")
    if pieces[-1] == b"":  # the newline that ends the last line starts no new one
        pieces.pop()
    for lineno, raw in enumerate(pieces, start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError:
            yield lineno, None


def parse_line(text: str) -> tuple[Any, str | None]:
    """(value, None) for a line of JSON, or (None, why it is not usable JSON)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return None, "invalid JSON: nested too deeply"
    except ValueError as exc:  # an integer of more digits than Python converts
        return None, f"invalid JSON: {str(exc).split(';')[0][:100]}"
    problem = text_problem(value)
    return (None, problem) if problem else (value, None)


def text_problem(value: Any) -> str | None:
    """Why `value` (JSON data: dicts, lists, strings, numbers) cannot be used as text, or None.

    Refused: nesting deeper than `MAX_DEPTH`, and strings holding a lone surrogate
    (`\\ud800`, which JSON's escapes can spell but UTF-8 cannot encode: it would fail
    later, when the text is sent to a sandbox or written out). Walks without recursion.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return "invalid text: a lone surrogate (not Unicode; UTF-8 cannot encode it)"
        elif isinstance(item, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                return f"invalid JSON: nested too deeply (more than {MAX_DEPTH} levels)"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
