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
