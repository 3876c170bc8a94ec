"""Reading task files (JSONL, or Parquet: parquet.py), validating every task against the
environment's schema."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from assay.envs.jsonl import parse_line, read_lines
from assay.envs.parquet import is_parquet, read_rows, task_of_row
from assay.envs.task import Task
from assay.errors import BRIEF, AssayError, brief, cut

if TYPE_CHECKING:
    import jsonschema

    from assay.envs.base import Environment


class TaskFileError(AssayError, ValueError):
    """Some lines of a task file are bad. `problems` holds one `file:line: field: message`
    string per problem (a line may have several); `lines` counts the bad lines; `tasks`
    holds the tasks from the good lines."""

    def __init__(self, path: str, problems: list[str], tasks: list[Task],
                 lines: int | None = None) -> None:
        self.path, self.problems, self.tasks = path, problems, tasks
        self.lines = len(problems) if lines is None else lines
        shown = "\n".join(problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{self.summary()}:\n{shown}{more}")

    def summary(self) -> str:
        """`3 bad line(s) in FILE (5 problems)`: lines and problems, each counted as such."""
        extra = f" ({len(self.problems)} problems)" if len(self.problems) != self.lines else ""
        return f"{self.lines} bad line(s) in {self.path}{extra}"


def _field_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required":  # the missing field is named in the message only
        missing = error.message.split("'")
        if len(missing) >= 2:
            parts.append(missing[1])
    return ".".join(parts) or "(task)"


def _message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message with the bad value cut (it quotes all of it: a 100,000-character
    script "is too long")."""
    shown = repr(error.instance)
    message = error.message
    if len(shown) > BRIEF and shown in message:
        message = message.replace(shown, brief(error.instance))
    return cut(message, 2 * BRIEF)


def _forbidden(schema: dict[str, Any], error: jsonschema.ValidationError, fields: Any) -> str | None:
    """A field a `false` schema forbids, named, as `field: not allowed in a task with
    `other``; jsonschema's own words ("False schema does not allow '2'") name neither the
    field nor the rule. None for any other error."""
    if error.schema is not False or not isinstance(fields, dict):
        return None
    where: Any = schema
    for key in error.absolute_schema_path:  # the `properties` holding the false schema
        where = where[key] if isinstance(where, (dict, list)) else None
    names = [k for k, v in where.items() if v is False and k in fields] if isinstance(where, dict) else []
    if not names:
        return None
    reason = "not allowed in this task"
    condition = schema.get("if", {}).get("required")
    if list(error.absolute_schema_path)[:1] == ["then"] and condition:
        reason = "not allowed in a task with " + " and ".join(f"`{c}`" for c in condition)
    return "; ".join(f"{name}: {reason}" for name in names)


def validate_fields(env: Environment, fields: Any) -> list[str]:
    """Every schema problem of one task, as `field: message` strings (empty when valid)."""
    import jsonschema  # here: 0.1 s that every `assay` command would pay at start

    validator = jsonschema.Draft202012Validator(env.task_schema)
    errors = sorted(validator.iter_errors(fields), key=lambda e: list(e.absolute_path))
    found = [_forbidden(env.task_schema, e, fields) or f"{_field_path(e)}: {_message(e)}"
             for e in errors]
    if not found and isinstance(fields, dict):
        found = [str(p).replace("\n", " ")[:1000] for p in env.task_problems(fields)]
    return found


def task_records(env: Environment, path: str) -> Iterator[tuple[int, Any, str | None]]:
    """(line or row number, task fields, None) or (number, None, `field: problem`) for
    each task of a file: JSONL (blank lines and `#` comments skipped) or Parquet (one task
    a row, numbered from 1). Raises OSError, or `ParquetError`, when the file cannot be read."""
    if is_parquet(path):
        for rowno, row in enumerate(read_rows(path), start=1):
            yield rowno, *task_of_row(row, env.name)
        return
    for lineno, line in read_lines(path):
        if line is None:
            yield lineno, None, "(line): not UTF-8 text"
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields, problem = parse_line(line.strip())
        yield lineno, fields, None if problem is None else f"(line): {problem}"


def load_tasks(env: Environment, path: str | os.PathLike[str]) -> list[Task]:
    """Load and validate a task file: JSONL (blank lines and `#` comments are skipped) or
    Parquet (`task_records`).

    Raises `TaskFileError` if any line or row is bad, after reading the whole file; the
    good tasks are on the error's `tasks`.
    """
    path = os.fspath(path)
    tasks: list[Task] = []
    linenos: list[int] = []  # of each good task
    problems: list[tuple[int, str]] = []
    for lineno, fields, problem in task_records(env, path):
        if problem is not None:
            problems.append((lineno, f"{path}:{lineno}: {problem}"))
            continue
        found = validate_fields(env, fields)
        if found:
            problems.extend((lineno, f"{path}:{lineno}: {p}") for p in found)
            continue
        tasks.append(env.make_task(fields, id=f"{os.path.basename(path)}:{lineno}"))
        linenos.append(lineno)
    audited = env.audit_tasks(tasks) if tasks else []
    if audited:
        bad = {index for index, _ in audited}
        problems.extend((linenos[i], f"{path}:{linenos[i]}: {p}") for i, p in audited)
        tasks = [task for i, task in enumerate(tasks) if i not in bad]
    if problems:
        problems.sort(key=lambda item: item[0])  # stable: a line's problems keep their order
        raise TaskFileError(path, [text for _, text in problems], tasks,
                            lines=len({lineno for lineno, _ in problems}))
    return tasks


class TaskFileUnusable(AssayError, ValueError):
    """A task file a command cannot take: unreadable, with bad lines, or holding no task;
    one line naming the file (and its first bad line)."""


def read_task_file(env: Environment, path: str) -> list[Task]:
    """The tasks of `path` for a command that needs all of them (train, eval, audit, the
    veRL exporter): any problem is one `TaskFileUnusable` line, the first bad line named
    and `assay validate` offered for the rest."""
    try:
        tasks = env.load(path)
    except OSError as exc:
        raise TaskFileUnusable(f"cannot read task file {path}: {exc.strerror or exc}") from None
    except TaskFileError as exc:  # the count and the first problem
        raise TaskFileUnusable(f"{exc.summary()}; first: {exc.problems[0][:300]}"
                               f" (see: assay validate {env.name} {path})") from None
    if not tasks:
        raise TaskFileUnusable(f"task file {path} holds no tasks")
    return tasks


def stale_prompts(env: Environment, tasks: list[Task]) -> int:
    """How many of `tasks` carry the prompt `env` writes with its default options where
    its options now write another: a file made by `assay sample` or the veRL exporter
    with the defaults, read by a run that asks for another prompt style (the organism's
    compact one). Such prompts are kept as they are, as every task's own prompt is;
    this only counts them, so that the run can say so. A prompt of the task's own, or
    one the options would write the same, is not counted."""
    try:
        plain = type(env)()  # the defaults (an env that needs options has no such file)
    except Exception:  # noqa: BLE001 - rg:composite needs its datasets, for one
        return 0
    try:
        stale = 0
        for task in tasks:
            try:
                now, default = env.render_prompt(task), plain.render_prompt(task)
            except Exception:  # noqa: BLE001 - a prompt it cannot write: the task's own
                continue
            stale += task.prompt == default != now
        return stale
    finally:
        plain.close()
