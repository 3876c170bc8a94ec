"""The `Task` and `Environment` types every environment builds on.

An environment makes tasks (procedurally from a seed, or from a task file),
renders a task's prompt, extracts the answer from a completion and verifies it.
A user environment subclasses `Environment` and fills in four methods; see
docs/define-an-environment.md and examples/.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from assay.envs.probing import Probe
from assay.envs.task import Task
from assay.options import OptionError, build_options, parse_assignments
from assay.verifiers import BoundedPool, Failure, Verdict

__all__ = [
    "VERIFICATION_MODES",
    "Environment",
    "OptionError",
    "SelfVerifying",
    "Task",
    "parse_assignments",
    "seeded_random",
]

#: How an environment's `verify_many` runs its checks:
#:   "workers":    forked worker processes, each check killed at `time_limit` (the safe
#:                 default for a verifier that might be slow, such as a symbolic one);
#:   "in_process": called directly, for verifiers bounded by construction (countdown's caps
#:                 length and depth and never evaluates foreign literals): no pool, no IPC;
#:   "sandbox":    the env runs its checks elsewhere (code: the sandbox's jails) and
#:                 overrides `verify_batch` to send a whole batch there at once.
VERIFICATION_MODES = ("workers", "in_process", "sandbox")


def seeded_random(seed: int) -> random.Random:
    """The random generator of `generate(n, seed)`: one stream per integer seed.

    `random.Random(-n)` is `random.Random(n)` (Python seeds from the absolute value), so
    a negative seed would silently repeat its positive twin's tasks. A negative seed is
    seeded from its text instead, which hashes (SHA-512) to an integer far above any seed
    in use; a seed >= 0 is unchanged, so it makes the same tasks as it always did.
    """
    if seed < 0:
        return random.Random(f"assay-seed:{seed}")
    return random.Random(seed)


@dataclass(frozen=True)
class VerifyBatch:
    """The figures of an env's latest `verify_many` call."""

    pairs: int  #: pairs asked for
    checked: int  #: distinct pairs actually checked (the rest shared a verdict)
    seconds: float  #: wall time of the checks


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
    #: How `verify_batch` runs the checks: one of `VERIFICATION_MODES`.
    verification: ClassVar[str] = "workers"
    #: How a completion states an answer, `{}` standing for it (countdown's
    #: `<answer>{}</answer>`): the audit builds its probes' completions with it. None: the
    #: audit finds it by trying the common forms on a task's own answer.
    answer_template: ClassVar[str | None] = None
    #: This env's own reward hacks, which `assay audit` tries besides the generic ones:
    #: `{name: probe}`, a probe being `(ctx, task) -> [(task, completion), ...]`
    #: (assay/envs/probing.py; countdown's are in countdown_probes.py). Subclasses inherit
    #: them; extend with `{**Parent.probes, "mine": probe}`. Simpler, for a plug-in: a
    #: method `audit_probes(task, reference) -> {name: [completion, ...]}`.
    probes: ClassVar[dict[str, Probe]] = {}
    #: env options the lab sets on every run of this env unless the run sets them itself
    #: (countdown: majority vote compares values, so `5+1*2` and `2*1+5` are one answer)
    lab_options: ClassVar[dict[str, str]] = {}
    #: the task field a bare string stands for where a task arrives as its gold answer
    #: alone (veRL's `ground_truth: "1/2"` for math: `{"answer": "1/2"}`); None: a task is
    #: always its fields
    answer_field: ClassVar[str | None] = None
    #: the figures of the latest `verify_many` call (None before the first)
    last_batch: VerifyBatch | None = None

    @dataclass
    class Options:
        pass

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.verification not in VERIFICATION_MODES:
            raise TypeError(
                f"{cls.__name__}.verification must be one of {VERIFICATION_MODES}, "
                f"got {cls.verification!r}"
            )

    def __init__(self, /, **options: Any) -> None:
        self.options = self.make_options(options)

    @classmethod
    def make_options(cls, values: dict[str, Any]) -> Any:
        """Build `Options` from keyword values, coercing strings (`--set`) to each field's type."""
        return build_options(cls.Options, values, owner=f"env {cls.name!r}")

    # -- making tasks ---------------------------------------------------------------

    @abstractmethod
    def generate(self, n: int, seed: int = 0) -> list[Task]:
        """Make `n` tasks procedurally; the same seed always gives the same tasks, and
        different seeds (negative ones included) different ones: draw them from
        `seeded_random(seed)`, not `random.Random(seed)`."""

    def load(self, path: str | os.PathLike[str]) -> list[Task]:
        """Load a task file (JSONL, or Parquet: assay/envs/parquet.py), validating every
        task against `task_schema`.

        Raises `TaskFileError` listing `file:line: field: message` for each bad line or
        row; the good ones are on the exception's `tasks` so nothing is lost.
        """
        from assay.envs.taskfile import load_tasks

        return load_tasks(self, path)

    def make_task(self, fields: dict[str, Any], *, id: str = "") -> Task:
        """Build a task from its fields, rendering the prompt when none is given."""
        task = Task.from_dict(fields, default_id=id)
        if not task.prompt:
            task.prompt = self.render_prompt(task)
        return task

    def task_problems(self, fields: dict[str, Any]) -> list[str]:
        """Problems of one schema-valid task that its schema cannot express, as
        `field: message` strings (empty when none). Cheap: no solver, no subprocess.

        Task files (`load`, `assay validate`) and `assay verify` inputs report them with
        the schema's; smt reads the task's script here. By default there are none.
        """
        return []

    def audit_tasks(self, tasks: Sequence[Task]) -> list[tuple[int, str]]:
        """Deeper checks of loaded tasks, run once per task file after `task_problems`:
        `(index into tasks, "field: message")` for each bad one. For what needs real work
        under the env's limits (smt proves a recorded `unsat`); by default none."""
        return []

    def check_available(self) -> None:
        """Raise an `AssayError` naming what is missing when this env cannot verify here
        (a solver or a toolchain that is not installed). By default nothing is missing.

        `verify_many` calls it first (so a worker never starts without what it needs, and
        z3 or a toolchain loaded here is inherited warm by forked workers); `assay verify`
        and `assay train` call it before any work, so the answer is one line and exit
        status 2."""
        return None

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

    def check_completion(self, task: Task, completion: str) -> Verdict:
        """Extract and check one completion, with no time limit of its own.

        `verify_many` calls it (in a worker, in process, or not at all for the sandbox
        envs); override it when the whole completion matters (math looks at every
        boxed answer to catch hedging). Exceptions become `error` verdicts.
        """
        try:
            answer = self.extract(completion)
            if answer is None:
                return Verdict.invalid("no answer found")
            return self.check(task, answer)
        except Exception as exc:
            return Verdict.error(f"verifier raised {type(exc).__name__}: {exc}"[:500])

    def verify(self, task: Task, completion: str) -> Verdict:
        """Verify one completion: `verify_many` with a batch of one (in the workers already
        started, if any: a pool of one more would be forked from this process as it is now,
        perhaps with a model in it)."""
        (verdict,) = self.verify_many([(task, completion)], workers=self._started_workers())
        return verdict

    def verify_many(
        self,
        pairs: Sequence[tuple[Task, str]],
        *,
        workers: int | None = None,
        on_result: Callable[[int, Verdict], None] | None = None,
    ) -> list[Verdict]:
        """Verify many (task, completion) pairs; verdicts in input order.

        The one front door: the trainer, the rewards, the lab, the audit, the adapters and
        `assay verify` all call it with whole batches. Each distinct pair is checked once
        and its verdict shared: a small model repeats itself a lot (a group of G samples
        often holds one text several times) and a sandboxed check costs a process, while
        a verdict is a function of the task and the completion. Tasks are compared by
        identity (the same `Task` object: a group's rows share one), never by id, which a
        task file need not keep unique. `last_batch` then holds the batch's figures.
        `on_result(index, verdict)` is called for every input index as its verdict is
        ready. The checks themselves are `verify_batch`'s, which an env overrides.
        """
        first: dict[tuple[int, str], int] = {}  # (id(task), text) -> index into `distinct`
        distinct: list[tuple[Task, str]] = []
        slots: list[int] = []  # input index -> its distinct pair
        for task, completion in pairs:
            key = (id(task), completion)
            if key not in first:
                first[key] = len(distinct)
                distinct.append((task, completion))
            slots.append(first[key])
        share = None
        if on_result is not None:
            sharers: dict[int, list[int]] = {}
            for index, slot in enumerate(slots):
                sharers.setdefault(slot, []).append(index)

            def share(slot: int, verdict: Verdict) -> None:
                for index in sharers[slot]:
                    on_result(index, verdict)

        started = time.perf_counter()
        verdicts = self.verify_batch(distinct, workers=workers, on_result=share)
        self.last_batch = VerifyBatch(len(pairs), len(distinct), time.perf_counter() - started)
        return [verdicts[slot] for slot in slots]

    def verify_batch(
        self,
        pairs: Sequence[tuple[Task, str]],
        *,
        workers: int | None = None,
        on_result: Callable[[int, Verdict], None] | None = None,
    ) -> list[Verdict]:
        """Check a batch of distinct pairs (`verify_many` removes the repeats first);
        verdicts in input order. How the checks run is the class's `verification` mode;
        in every mode each check is bounded (by `time_limit`, by construction, or by the
        sandbox), and a check that fails is an `error` or `timeout` verdict, never an
        exception. An env that prepares something first, or sends the batch elsewhere,
        overrides this and not `verify_many`.
        """
        self.check_available()
        if self.verification == "in_process":
            verdicts = []
            for index, (task, completion) in enumerate(pairs):
                verdicts.append(self.check_completion(task, completion))
                if on_result is not None:
                    on_result(index, verdicts[-1])
            return verdicts
        if self.verification == "sandbox":
            raise NotImplementedError(
                f"{type(self).__name__} verifies in a sandbox and must override verify_batch"
            )
        pool = self._pool(workers or os.cpu_count() or 1)

        def convert(index: int, value: Any) -> None:
            if on_result is not None:
                on_result(index, _as_verdict(value))

        raw = pool.map(self.check_completion, pairs, timeout=self.time_limit, on_result=convert)
        return [_as_verdict(value) for value in raw]

    def start_workers(self, workers: int | None = None) -> None:
        """Start the verification worker processes now, where the env checks in workers.

        They are forked from this process: started before a large model is loaded, they
        hold none of it. Started later, each keeps its own copy of every page the trainer
        then writes (weights, optimizer state): the bench that trains SmolLM2 with assay
        and TRL in one process ran a 24 GiB machine out of memory that way.
        """
        if self.verification == "workers":
            self._pool(workers or os.cpu_count() or 1).start()

    def _started_workers(self) -> int:
        """The size of the pool already started, for one call: 1 if none is (then one
        worker is started for it)."""
        started = self.__dict__.get("_pools")
        return next(iter(started)) if started else 1

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

    def difficulty(self, task: Task) -> str | None:
        """A label to break evaluation results down by (`assay eval`), or None: by default
        the task's `difficulty`, `level` or `kind` field, the first one it has."""
        for field_name in ("difficulty", "level", "kind"):
            value = task.get(field_name)
            if value is not None:
                return f"{field_name} {value}"
        return None

    def close(self) -> None:
        for pool in self.__dict__.pop("_pools", {}).values():
            pool.close()


def _as_verdict(value: Any) -> Verdict:
    if isinstance(value, Verdict):
        return value
    if isinstance(value, Failure):
        return Verdict.timeout(value.detail) if value.kind == "timeout" else Verdict.error(value.detail)
    return Verdict.error(f"verifier returned {type(value).__name__}, not a Verdict")


@runtime_checkable
class SelfVerifying(Protocol):
    """An environment whose answers the policy itself can be asked to verify.

    The `self_verify` reward needs it: verification is a separate task (is this answer
    right?), often easier than generation. Countdown implements it; an env without it
    cannot be trained with `self_verify`, and a run says so before it starts.
    """

    def verification_prompt(self, task: Task, answer: str) -> str:
        """A prompt asking whether `answer` solves `task`."""
        ...

    def parse_verification(self, reply: str) -> bool | None:
        """The judgement in a reply to that prompt: True, False, or None if there is none."""
        ...


@runtime_checkable
class WrongLabelled(Protocol):
    """An environment that can restate a task with a fixed wrong label.

    The `incorrect_label` control needs it: it rewards completions that are right for the
    wrong label (as "Spurious Rewards", 2025, did with incorrect answers), so a user can see
    how much of a reward's gain even a wrong signal gives. The wrong label is a function of
    the task alone: the same task always gets the same wrong label.
    """

    def wrong_label(self, task: Task) -> Task:
        """`task` with its label replaced by a fixed wrong one (a new Task; `task` unchanged)."""
        ...


def label_offset(task: Task) -> int:
    """A fixed nonzero offset in {-3, -2, -1, 1, 2, 3} drawn from the task's fields (not its
    id, which a task file need not keep unique): the distance of a wrong label from the
    right one."""
    digest = hashlib.sha256(
        json.dumps(task.fields, sort_keys=True, default=str).encode("utf-8")
    ).digest()
    return (1 + digest[0] % 3) * (1 if digest[1] % 2 else -1)
