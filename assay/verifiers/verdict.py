"""The one result type every verifier returns."""

from __future__ import annotations

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
