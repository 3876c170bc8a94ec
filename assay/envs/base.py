"""The `Task` and `Environment` types every environment builds on.

An environment makes tasks (procedurally from a seed, or from a task file),
renders a task's prompt, extracts the answer from a completion and verifies it.
A user environment subclasses `Environment` and fills in four methods; see
docs/define-an-environment.md and examples/.
"""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from assay.verifiers import BoundedPool, Failure, Verdict

_RESERVED = ("id", "prompt")


@dataclass
class Task:
    """One problem: an id, the prompt text and the environment-specific fields.

    On disk and on the command line a task is one flat JSON object:
    `{"id": ..., "prompt": ..., **fields}`. Ground truth, where an environment has
    any, is just another field (math's `answer`); countdown needs none.
    """

    id: str
    prompt: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, **self.fields}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, default_id: str = "") -> Task:
        fields = {k: v for k, v in data.items() if k not in _RESERVED}
        return cls(id=str(data.get("id", default_id)), prompt=str(data.get("prompt", "")), fields=fields)


class OptionError(ValueError):
    """An unknown or badly typed environment option (from `--set KEY=VALUE`)."""


class Environment(ABC):
    """Base class of every environment.

    Subclasses set `name`, `description` and `task_schema` (a JSON Schema of the task
    fields) and implement `generate`, `render_prompt`, `extract` and `check`.
    Options are a dataclass named `Options` on the subclass; `--set KEY=VALUE` on the
    command line and keyword arguments to the constructor fill it.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    task_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    #: Verifications slower than this (seconds) are killed and reported as `timeout`.
    time_limit: ClassVar[float] = 5.0

    @dataclass
    class Options:
        pass

    def __init__(self, **options: Any) -> None:
        self.options = self.make_options(options)

    @classmethod
    def make_options(cls, values: dict[str, Any]) -> Any:
        """Build `Options` from keyword values, coercing strings (`--set`) to each field's type."""
        known = {f.name: f for f in dataclasses.fields(cls.Options)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                names = ", ".join(sorted(known)) or "none"
                raise OptionError(f"unknown option {key!r} for env {cls.name!r} (options: {names})")
            kwargs[key] = _coerce(cls.name, key, value, known[key].default)
        try:
            return cls.Options(**kwargs)
        except (TypeError, ValueError) as exc:
            raise OptionError(f"env {cls.name!r}: {exc}") from None

    # -- making tasks ---------------------------------------------------------------

    @abstractmethod
    def generate(self, n: int, seed: int = 0) -> list[Task]:
        """Make `n` tasks procedurally; the same seed always gives the same tasks."""

    def load(self, path: str | os.PathLike[str]) -> list[Task]:
        """Load a JSONL task file, validating every line against `task_schema`.

        Raises `TaskFileError` listing `file:line: field: message` for each bad line;
        the good lines are on the exception's `tasks` so nothing is lost.
        """
        from assay.envs.taskfile import load_tasks

        return load_tasks(self, path)

    def make_task(self, fields: dict[str, Any], *, id: str = "") -> Task:
        """Build a task from its fields, rendering the prompt when none is given."""
        task = Task.from_dict(fields, default_id=id)
        if not task.prompt:
            task.prompt = self.render_prompt(task)
        return task

    @abstractmethod
    def render_prompt(self, task: Task) -> str:
        """The text shown to the model for this task."""

    # -- verifying ------------------------------------------------------------------

    @abstractmethod
    def extract(self, completion: str) -> str | None:
        """The answer in a completion, or None when there is none."""

    @abstractmethod
    def check(self, task: Task, answer: str) -> Verdict:
        """Verify an extracted answer. May be slow: callers bound it with `time_limit`."""

    def score(self, task: Task, completion: str) -> Verdict:
        """Extract and check, without a time limit. Exceptions become `error` verdicts."""
        try:
            answer = self.extract(completion)
            if answer is None:
                return Verdict.invalid("no answer found")
            return self.check(task, answer)
        except Exception as exc:
            return Verdict.error(f"verifier raised {type(exc).__name__}: {exc}"[:500])

    def verify(self, task: Task, completion: str) -> Verdict:
        """Verify one completion under the hard `time_limit` (works from any thread)."""
        (verdict,) = self.verify_many([(task, completion)], workers=1)
        return verdict

    def verify_many(
        self,
        pairs: Sequence[tuple[Task, str]],
        *,
        workers: int | None = None,
        on_result: Callable[[int, Verdict], None] | None = None,
    ) -> list[Verdict]:
        """Verify many (task, completion) pairs in parallel worker processes, in input order.

        Each verification is bounded by `time_limit`; one that passes it is `timeout`.
        """
        pool = self._pool(workers or os.cpu_count() or 1)

        def convert(index: int, value: Any) -> None:
            if on_result is not None:
                on_result(index, _as_verdict(value))

        raw = pool.map(self.score, pairs, timeout=self.time_limit, on_result=convert)
        return [_as_verdict(value) for value in raw]

    def _pool(self, workers: int) -> BoundedPool:
        pools = self.__dict__.setdefault("_pools", {})
        if workers not in pools:
            pools[workers] = BoundedPool(workers=workers, timeout=self.time_limit)
        return pools[workers]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_pools", None)  # worker processes do not travel
        return state

    # -- comparing answers (majority vote, semantic entropy) ------------------------

    def answer_key(self, task: Task, answer: str) -> Hashable:
        """A key under which equivalent answers compare equal; by default the stripped text."""
        return answer.strip()

    def close(self) -> None:
        for pool in self.__dict__.pop("_pools", {}).values():
            pool.close()


def _as_verdict(value: Any) -> Verdict:
    if isinstance(value, Verdict):
        return value
    if isinstance(value, Failure):
        return Verdict.timeout(value.detail) if value.kind == "timeout" else Verdict.error(value.detail)
    return Verdict.error(f"verifier returned {type(value).__name__}, not a Verdict")


def _coerce(env: str, key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, tuple)):
            return type(default)(int(v) if v.strip().lstrip("-").isdigit() else v.strip() for v in value.split(","))
    except ValueError:
        raise OptionError(
            f"env {env!r}: option {key!r} expects {type(default).__name__}, got {value!r}"
        ) from None
    return value


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """Parse `KEY=VALUE` strings (from `--set`) into a dict; a malformed one is an `OptionError`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = value
    return out
