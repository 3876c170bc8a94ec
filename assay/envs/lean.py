"""Lean: a Lean 4 theorem statement; the answer is its proof, checked by a local Lean REPL.

A task is `{"statement": "theorem add_comm' (a b : Nat) : a + b = b + a"}` plus an
optional `header` (`import Mathlib`) and `prompt`. The answer is the last ```lean block
(or `<answer>` tag): the proof alone or the whole theorem with the statement unchanged.
`assay.verifiers.lean` decides: no error, no `sorry`, no axiom beyond the standard ones.

The REPL (leanprover-community/repl, or anything that speaks its JSON protocol) is found
in this order: `ASSAY_LEAN_PATH` (the REPL executable, or a Lean project folder, in which
`lake exe repl` runs), `repl` on PATH, `lake` on PATH (`lake exe repl` in the current
folder). Without one, verifying is one line: `Lean toolchain not found: set
ASSAY_LEAN_PATH or put lean on PATH` (exit status 2 from the command line). Each worker
process keeps one REPL warm; a check past `time_limit` kills it, and the REPL runs under
an address-space limit of `memory_mb` and dies with its worker.
"""

from __future__ import annotations

import math
import os
import random
import shutil
from dataclasses import dataclass
from typing import Any

from assay.envs.base import Environment, Task
from assay.errors import AssayError
from assay.verifiers import Verdict
from assay.verifiers.lean import STANDARD_AXIOMS, check_lean, extract_proof
from assay.verifiers.lean_repl import LeanRepl
from assay.verifiers.reasoning import outside_reasoning

TOOLCHAIN_MISSING = "Lean toolchain not found: set ASSAY_LEAN_PATH or put lean on PATH"
PROMPT = (
    "Prove the following Lean 4 theorem.\n\n{header}{statement} := by\n  sorry\n\n"
    "Replace `sorry` with a complete proof. Give the final answer as one ```lean code block "
    "holding the whole theorem (the statement unchanged) or just its proof. `sorry`, `admit` "
    "and new axioms are not accepted."
)
#: Statements in core Lean (no Mathlib) that `assay sample lean` draws from.
BUILTIN_STATEMENTS = (
    "theorem add_zero' (n : Nat) : n + 0 = n",
    "theorem zero_add' (n : Nat) : 0 + n = n",
    "theorem add_comm' (a b : Nat) : a + b = b + a",
    "theorem add_assoc' (a b c : Nat) : a + b + c = a + (b + c)",
    "theorem mul_comm' (a b : Nat) : a * b = b * a",
    "theorem two_mul' (n : Nat) : 2 * n = n + n",
    "theorem and_swap' (p q : Prop) (h : p ∧ q) : q ∧ p",
    "theorem or_swap' (p q : Prop) (h : p ∨ q) : q ∨ p",
    "theorem length_append' (xs ys : List Nat) : (xs ++ ys).length = xs.length + ys.length",
    "theorem succ_ne_zero' (n : Nat) : n + 1 ≠ 0",
)


class LeanUnavailable(AssayError, RuntimeError):
    """No Lean toolchain (REPL) is configured or on PATH."""


def find_repl() -> tuple[list[str], str | None] | None:
    """(argv, working folder) that starts a Lean REPL here, or None when there is none."""
    configured = os.environ.get("ASSAY_LEAN_PATH", "").strip()
    if configured:
        if os.path.isdir(configured):
            lake = shutil.which("lake") or os.path.join(configured, ".lake", "bin", "lake")
            return [lake, "exe", "repl"], configured
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return [configured], None
        return None
    repl = shutil.which("repl")
    if repl:
        return [repl], None
    lake = shutil.which("lake")
    if lake:
        return [lake, "exe", "repl"], None
    return None


@dataclass
class LeanOptions:
    """Knobs of the Lean verifier (`--set KEY=VALUE`)."""

    time_limit: float = 60.0  #: seconds per check, the task's header included the first time
    memory_mb: int = 8192  #: address-space limit of the REPL process (0 = none)
    header: str = ""  #: run before every task without a `header` field (e.g. `import Mathlib`)
    allowed_axioms: tuple[str, ...] = STANDARD_AXIOMS  #: axioms a proof may depend on

    def __post_init__(self) -> None:
        self.allowed_axioms = tuple(self.allowed_axioms)
        if not (math.isfinite(self.time_limit) and 0 < self.time_limit <= 3600):
            raise ValueError(f"time_limit must be a number of seconds in (0, 3600], got {self.time_limit!r}")
        if not 0 <= self.memory_mb <= 1 << 20:
            raise ValueError(f"memory_mb must be in [0, {1 << 20}], got {self.memory_mb}")


class LeanEnv(Environment):
    """Lean 4 theorems; the answer is a proof, checked by a local Lean REPL."""

    name = "lean"
    description = "Lean 4 theorem statements; the answer is a proof, checked by a local Lean REPL"
    Options = LeanOptions
    verification = "workers"
    task_schema = {
        "type": "object",
        "required": ["statement"],
        "properties": {
            "id": {"type": ["string", "integer"]},
            "prompt": {"type": "string"},
            "statement": {"type": "string", "pattern": r"^\s*(theorem|lemma|example)\b",
                          "maxLength": 20000},
            "header": {"type": "string", "maxLength": 20000},
            "solution": {"type": "string"},
        },
    }

    def __init__(self, /, **options: Any) -> None:
        super().__init__(**options)
        self.time_limit = self.options.time_limit
        self._repls: dict[tuple[int, tuple[str, ...]], LeanRepl] = {}

    def generate(self, n: int, seed: int = 0) -> list[Task]:
        """`n` statements from a small built-in list of core-Lean theorems, shuffled by seed."""
        order = list(BUILTIN_STATEMENTS)
        random.Random(seed).shuffle(order)
        return [
            self.make_task({"statement": order[i % len(order)]}, id=f"lean-{seed}-{i}")
            for i in range(n)
        ]

    def render_prompt(self, task: Task) -> str:
        header = str(task.get("header", self.options.header) or "")
        return PROMPT.format(header=header.strip() + "\n\n" if header.strip() else "",
                             statement=str(task["statement"]).strip())

    def check_available(self) -> None:
        if find_repl() is None:
            raise LeanUnavailable(TOOLCHAIN_MISSING)

    def extract(self, completion: str) -> str | None:
        # a proof inside <think> is a draft, not the answer (`assay audit`'s reasoning_only)
        return extract_proof(outside_reasoning(completion))

    def check(self, task: Task, answer: str) -> Verdict:
        found = find_repl()
        if found is None:
            return Verdict.error(TOOLCHAIN_MISSING)
        argv, cwd = found
        # One REPL per process (workers are forked: a REPL is never shared across them).
        key = (os.getpid(), tuple(argv))
        repl = self._repls.get(key)
        if repl is None:
            repl = self._repls[key] = LeanRepl(argv, cwd=cwd, memory_mb=self.options.memory_mb)
        header = str(task.get("header", self.options.header) or "")
        # A little under the worker's hard limit, so that a slow proof is a clean
        # `timeout` (and a killed REPL) rather than a killed worker.
        return check_lean(
            repl, str(task["statement"]), answer, header=header,
            time_limit=self.time_limit * 0.9, allowed_axioms=self.options.allowed_axioms,
        )


    def close(self) -> None:
        for repl in self._repls.values():
            repl.close()
        self._repls.clear()
        super().close()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_repls"] = {}  # REPL processes do not travel
        return state
