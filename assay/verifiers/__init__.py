"""Pure checkers: an answer goes in, a `Verdict` comes out. No model, no training.

Nothing here imports any other part of assay.
"""

from assay.verifiers.timelimit import BoundedPool, Failure, TimedOut, WorkerError, call_with_timeout
from assay.verifiers.verdict import STATUSES, Verdict

__all__ = [
    "STATUSES",
    "BoundedPool",
    "Failure",
    "TimedOut",
    "Verdict",
    "WorkerError",
    "call_with_timeout",
]
