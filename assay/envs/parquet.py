"""Task files and `assay verify` inputs in Parquet, beside JSONL.

A file is read as Parquet when its name ends in `.parquet` (or `.pq`) or it starts and
ends with Parquet's magic bytes `PAR1`. Each row is one task, in either layout:

- veRL's (what `python -m assay.integrations.verl ENV --out FILE.parquet` writes): the task
  is `reward_model.ground_truth`, the task's fields as JSON text (for math also the gold
  answer alone), and `data_source` names the env;
- one column per task field (`question`, `answer`, ...), as a JSONL line would hold them.
  Parquet columns are typed: a field a row lacks reads back as null and is dropped, so
  tasks whose nested values differ in shape from row to row belong in veRL's layout.

For `assay verify` a row also has a `completion` column (text) and, in place of veRL's
columns, may hold the task as a `task` column (a struct, or JSON text). Rows are numbered
from 1, and a bad row is named as `file:row: field: message`, as a bad JSONL line is.
pyarrow reads the files: `pip install 'assay[parquet]'` (the dev extra has it).
"""

from __future__ import annotations

import os
from typing import Any

from assay.envs.jsonl import parse_line, text_problem
from assay.errors import AssayError

SUFFIXES = (".parquet", ".pq")
MAGIC = b"PAR1"
INSTALL_HINT = "pip install 'assay[parquet]'"


class ParquetError(AssayError, ValueError):
    """A Parquet file that cannot be read at all (or pyarrow missing); one line."""


def is_parquet(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is read as Parquet: by its suffix, or by Parquet's magic bytes at
    both its start and its end (a JSONL file never has both)."""
    path = os.fspath(path)
    if path == "-":
        return False
    if path.lower().endswith(SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != MAGIC:
                return False
            handle.seek(-4, os.SEEK_END)
            return handle.read(4) == MAGIC
    except OSError:  # unreadable, or shorter than 8 bytes: the JSONL reader says what it is
        return False


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every row of a Parquet file as a dict of plain Python values.

    Raises OSError when the file cannot be opened, `ParquetError` when it is not Parquet
    or pyarrow is missing.
    """
    path = os.fspath(path)
    with open(path, "rb"):
        pass  # a missing or unreadable file is an OSError, named as for JSONL
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ParquetError(f"reading {path} needs pyarrow, which is not installed: {INSTALL_HINT}") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow's ArrowInvalid, ArrowIOError, ...
        message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ParquetError(f"cannot read {path} as Parquet: {message}") from None
    return rows


def _plain(value: Any) -> Any:
    """A Parquet map column (a list of key-value pairs) stays a list; numpy values, which
    pyarrow may hand back, become Python ones."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    item = getattr(value, "tolist", None)
    return item() if callable(item) else value


def _fields(value: Any, what: str) -> tuple[Any, str | None]:
    """Task fields from a struct or from JSON text, or (None, `what: problem`)."""
    if isinstance(value, str):
        if not value.strip().startswith("{"):
            return None, f"{what}: expected the task's fields as a JSON object"
        parsed, problem = parse_line(value.strip())
        return (None, f"{what}: {problem}") if problem else (parsed, None)
    if isinstance(value, dict):
        fields = {k: _plain(v) for k, v in value.items() if v is not None}
        problem = text_problem(fields)
        return (None, f"{what}: {problem}") if problem else (fields, None)
    return None, f"{what}: expected the task's fields, got {type(value).__name__}"


def task_of_row(row: dict[str, Any], env_name: str) -> tuple[Any, str | None]:
    """(task fields, None) for one row of a task file, or (None, `field: problem`)."""
    reward_model = row.get("reward_model")
    if isinstance(reward_model, dict) and "ground_truth" in reward_model:  # veRL's layout
        source = row.get("data_source")
        if isinstance(source, str) and source and source != env_name:
            return None, f"data_source: a task of {source!r}, not of {env_name!r}"
        truth = reward_model["ground_truth"]
        if env_name == "math" and isinstance(truth, str) and not truth.strip().startswith("{"):
            return {"answer": truth}, None  # the gold answer alone, as compute_score reads it
        return _fields(truth, "reward_model.ground_truth")
    return _fields({k: v for k, v in row.items() if k != "completion"}, "(row)")


def pair_of_row(row: dict[str, Any], env_name: str) -> tuple[Any, str | None, str | None]:
    """(task fields, completion, None) for one row of an `assay verify` input, or
    (None, None, `field: problem`)."""
    completion = row.get("completion")
    if "task" in row:
        fields, problem = _fields(row["task"], "task")
    else:
        fields, problem = task_of_row(row, env_name)
    if problem is not None:
        return None, None, problem
    if not isinstance(completion, str):
        return None, None, "completion: expected a string"
    problem = text_problem(completion)
    return (None, None, f"completion: {problem}") if problem else (fields, completion, None)
