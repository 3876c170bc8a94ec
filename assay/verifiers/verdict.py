"""The one result type every verifier returns."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

#: Every status a verdict may carry. A failure is never a silent 0: the status says why.
STATUSES = ("correct", "incorrect", "invalid", "timeout", "error")


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one answer.

    score:  the reward the answer earns, usually 1.0 for correct and 0.0 otherwise
            (partial credit, e.g. the fraction of tests passed, is allowed).
    status: one of `STATUSES`:
            correct   - the answer is right;
            incorrect - an answer was found and checked, and it is wrong;
            invalid   - no answer was found, or it uses disallowed syntax (never evaluated);
            timeout   - checking ran past its hard time limit;
            error     - the verifier itself broke (the detail says how).
    detail: a short human-readable reason.
    """

    score: float
    status: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Verdict status must be one of {STATUSES}, got {self.status!r}")
        # A reward is a number a trainer can use and JSON can hold: NaN would poison the
        # advantages and is not JSON; a score above 1 would let a wrong answer outscore a
        # right one. A verifier that makes one is broken, and says so here.
        score = self.score
        if isinstance(score, bool) or not isinstance(score, numbers.Real):
            raise ValueError(f"Verdict score must be a number, got {score!r}")
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise ValueError(f"Verdict score must be finite and in [0, 1], got {score!r}")
        object.__setattr__(self, "score", float(score))

    @property
    def correct(self) -> bool:
        return self.status == "correct"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def right(cls, detail: str = "", score: float = 1.0) -> Verdict:
        return cls(score, "correct", detail)

    @classmethod
    def wrong(cls, detail: str = "", score: float = 0.0) -> Verdict:
        return cls(score, "incorrect", detail)

    @classmethod
    def invalid(cls, detail: str) -> Verdict:
        return cls(0.0, "invalid", detail)

    @classmethod
    def timeout(cls, detail: str) -> Verdict:
        return cls(0.0, "timeout", detail)

    @classmethod
    def error(cls, detail: str) -> Verdict:
        return cls(0.0, "error", detail)
