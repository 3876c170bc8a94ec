"""`AssayError`: the base of every error assay raises on purpose.

Each one carries a message of one line that names what was wrong and where (the
file and line, the option, the env, the reward), so that the command line can show
it as it is. Subclasses keep a familiar built-in base as well (`ValueError`,
`KeyError`, `RuntimeError`) so that callers who catch those keep working.

This module imports nothing of assay: every layer may use it.
"""

from __future__ import annotations


class AssayError(Exception):
    """Something assay was asked to do cannot be done; the message says what and where."""


#: the most characters of a bad value an error message shows
BRIEF = 200


def cut(text: str, limit: int = BRIEF) -> str:
    """`text` cut to `limit` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def brief(value: object, limit: int = BRIEF) -> str:
    """`repr(value)` cut to `limit` characters: an error message names a bad value without
    printing all of it (a 100,000-character script, a list YAML expanded)."""
    if isinstance(value, str) and len(value) > 2 * limit:
        value = value[: 2 * limit]  # no repr of all of a long string
    return cut(repr(value), limit)


def first_line(exc: BaseException) -> str:
    """An exception's message as one line, its first (a library's own messages run to
    many): its type's name when it has none."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
