"""Stored rollouts: every completion of a run, one JSON object per line, in
`DIR/rollouts.jsonl.gz`, so that rewards can be recomputed later without the model
(`assay rescore`).

Each line holds the step, the prompt's index in the step's batch (`prompt`) and the
completion's in its group (`index`), the task (`task_id` and, in `task`, its fields, which
the verifier and `answer_key` need), the completion's text, the extracted answer, the
verdict (`status`, `score`), the reward trained on, whether the completion was left out of
the loss (`masked`: its verifier broke), whether it ended with the end token
(`finished`), and the per-completion aggregates of the policy's statistics: `n_tokens`,
`sum_logprob`, `mean_entropy`, `mean_self_certainty`. Those four are enough to recompute
every built-in intrinsic reward (docs/rewards.md).

Each step is appended as its own gzip member and the file is closed after it, so a run
killed mid-step loses at most that step; a resumed run drops the lines of the steps it
will run again, so no completion is stored twice. Any other damage (a corrupt member, a
line that is not a JSON object, a file that is not a regular file) is a
`RolloutStoreError` naming the file, the member or line and the last step read before it:
readers never go on with part of the file, and a resume never rewrites steps it could not
read.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import stat
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from assay.envs.jsonl import parse_line
from assay.errors import AssayError
from assay.files import replace_file
from assay.rewards import RolloutGroup

FILENAME = "rollouts.jsonl.gz"
#: bytes read at a time
CHUNK = 1 << 20
#: the most one member (one step's rows) may expand to: more is damage, or a gzip bomb
MAX_MEMBER_BYTES = 256 << 20
#: how every member the store writes begins (gzip's magic, deflate, no flags)
_MAGIC = b"\x1f\x8b\x08\x00"


def completion_rows(
    step: int,
    groups: Sequence[RolloutGroup],
    rewards: Sequence[Sequence[float]],
    masked: Sequence[bool],
) -> list[dict[str, Any]]:
    """One row per completion of the step, group after group (`masked` is per completion)."""
    rows = []
    flat = iter(masked)
    for p, (group, values) in enumerate(zip(groups, rewards, strict=True)):
        task = group.task.to_dict()
        for j, (c, answer, verdict, reward) in enumerate(
            zip(group.completions, group.answers, group.verdicts, values, strict=True)
        ):
            n = len(c)
            rows.append({
                "step": step,
                "prompt": p,
                "index": j,
                "task_id": group.task.id,
                "task": task,
                "completion": c.text,
                "answer": answer,
                "status": verdict.status,
                "score": verdict.score,
                "reward": float(reward),
                "masked": bool(next(flat)),
                "finished": c.finished,
                "n_tokens": n,
                "sum_logprob": float(np.sum(c.logprobs, dtype=np.float64)) if n else 0.0,
                "mean_entropy": float(np.mean(c.entropies, dtype=np.float64)) if n else 0.0,
                "mean_self_certainty": float(np.mean(c.self_certainty, dtype=np.float64)) if n else 0.0,
            })
    return rows


class RolloutStoreError(AssayError, ValueError):
    """A rollouts file that cannot be read whole: one line naming the file, the gzip member
    (its number and byte offset) or the line, and the last step read before it."""


class RolloutStore:
    """Appends each step's rows to `out/rollouts.jsonl.gz` (nothing when not `enabled`)."""

    def __init__(self, out: Path, enabled: bool = True) -> None:
        self.path = Path(out) / FILENAME
        self.enabled = enabled

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        if not self.enabled or not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(_finite(row)) + "\n" for row in rows).encode("utf-8")
        with self.path.open("ab") as handle:  # one gzip member per step
            handle.write(gzip.compress(data, compresslevel=6))

    def truncate_after(self, step: int) -> None:
        """Drop the rows of steps after `step` (a resumed run runs them again)."""
        if self.path.exists():
            self.replace(self.kept_through(step))

    def kept_through(self, step: int) -> bytes:
        """The file's bytes holding the rows of steps up to `step`: what a resume from a
        checkpoint at `step` keeps. Nothing is written.

        Steps are stored in order, so reading stops at the first member holding a later
        step: a corrupt member past it is dropped with the steps that run again. A last
        member cut short by a kill is dropped only when it holds a later step (its first
        line, or the steps before it, say so). Any other damage raises `RolloutStoreError`,
        since rewriting the file would lose the completed steps stored in or after it.
        """
        kept = bytearray()
        if step < 1 or not self.path.exists():  # steps start at 1: step 0 keeps nothing
            return bytes(kept)
        last = None  # the last step read
        try:
            for member in _members(self.path):
                cut = member.cut
                if cut is not None:  # the last member, cut short
                    if cut.step is not None:
                        later = cut.step > step
                    else:  # one member per step, in order: it holds a step after `last`
                        later = last is not None and last >= step
                    if not later:
                        raise RolloutStoreError(
                            f"{self.path}: gzip member {cut.number} (byte {cut.offset}) is cut "
                            f"short, and it may hold step {step} or one before it"
                        )
                    break
                if all(_step_of(row) <= step for _, row in member.rows):
                    kept += member.raw  # the member as it was written
                    last = max((_step_of(row) for _, row in member.rows), default=last)
                    continue
                keep = [row for _, row in member.rows if _step_of(row) <= step]
                if keep:
                    data = "".join(json.dumps(row) + "\n" for row in keep).encode("utf-8")
                    kept += gzip.compress(data, compresslevel=6)
                break
        except RolloutStoreError as exc:
            raise RolloutStoreError(
                f"cannot resume: {exc}; the file is left as it was (move it away to resume "
                "without the stored rollouts)"
            ) from None
        return bytes(kept)

    def replace(self, data: bytes) -> None:
        """Make `data` the file: all or nothing, a kill leaves the old file."""
        replace_file(self.path, data)


def read_rollouts(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every stored row of a rollouts file; a last member cut short by a kill is skipped,
    any other damage raises `RolloutStoreError`."""
    return list(iter_rollouts(path))


def iter_rollouts(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    for _, row in numbered_rollouts(path):
        yield row


def numbered_rollouts(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number from 1, row) for each stored row, lines counted over the whole file."""
    for member in _members(Path(path)):
        yield from member.rows


@dataclass
class _Cut:
    """A last member cut short (a run killed mid-write)."""

    number: int  #: the member's number, from 1
    offset: int  #: its first byte
    step: int | None  #: the step of its first line, when enough of it survives to say


@dataclass
class _Member:
    raw: bytes  #: the member's compressed bytes, as written
    rows: list[tuple[int, dict[str, Any]]]  #: (line number, row)
    cut: _Cut | None = None  #: set on a last member cut short, which has no rows


#: how a stored line begins (`completion_rows` puts the step first), up to the step's end
_STEP_PREFIX = re.compile(rb'\{"step": (\d+)[,}]')


def _members(path: Path) -> Iterator[_Member]:
    """The file's gzip members, read in chunks of `CHUNK` bytes, each decompressed to at
    most `MAX_MEMBER_BYTES` and parsed. A member cut short at the end of the file (a run
    killed mid-write) ends the file, as a last `_Member` with no rows and `cut` set; any
    other damage is a `RolloutStoreError`."""
    number, offset, lineno, last_step = 0, 0, 0, None

    def error(reason: str) -> RolloutStoreError:
        good = f"last good step {last_step}" if last_step is not None else "no step before it"
        return RolloutStoreError(f"{path}: gzip member {number} (byte {offset}) is corrupt: "
                                 f"{reason}; {good}")

    with _open_regular(path) as handle:
        pending = b""
        while True:
            number += 1
            raw, data = bytearray(), bytearray()
            decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while not decomp.eof:
                if not pending:
                    pending = handle.read(CHUNK)
                    if not pending:
                        break
                try:
                    data += decomp.decompress(pending, MAX_MEMBER_BYTES + 1 - len(data))
                except zlib.error as exc:  # "Error -3 while decompressing data: <why>"
                    raise error(str(exc).rpartition(": ")[2]) from None
                if len(data) > MAX_MEMBER_BYTES:
                    raise error(f"it expands past {MAX_MEMBER_BYTES >> 20} MiB")
                rest = decomp.unused_data if decomp.eof else decomp.unconsumed_tail
                raw += pending[: len(pending) - len(rest)]
                pending = rest
            if not decomp.eof:
                if raw.find(_MAGIC, 1) >= 0:  # it runs into the next member: not a kill
                    raise error("it does not end where the next member starts")
                if raw:  # a last member cut by a kill: a resume must know which step it held
                    found = _STEP_PREFIX.match(bytes(data))
                    step = int(found.group(1)) if found else None
                    yield _Member(bytes(raw), [], _Cut(number, offset, step))
                return  # the end of the file
            rows = []
            pieces = bytes(data).split(b"\n")
            if pieces[-1] == b"":
                pieces.pop()
            for piece in pieces:
                lineno += 1
                row = _row(piece)
                if isinstance(row, str):
                    raise RolloutStoreError(f"{path}:{lineno} (gzip member {number}): {row}")
                rows.append((lineno, row))
                last_step = row.get("step", last_step)
            yield _Member(bytes(raw), rows)
            offset += len(raw)


def _row(line: bytes) -> dict[str, Any] | str:
    """The row of one stored line, or why it is none."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    value, problem = parse_line(text)
    if problem is not None:
        return problem
    if not isinstance(value, dict):
        return "expected a JSON object (one completion)"
    return value


def _step_of(row: dict[str, Any]) -> float:
    step = row.get("step", 0)
    return step if isinstance(step, (int, float)) and not isinstance(step, bool) else 0


@contextmanager
def _open_regular(path: Path) -> Iterator[BinaryIO]:
    """`path` opened for reading, refused in one line unless it is a regular file (a link
    to /dev/zero would never end, a FIFO would block the open)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise RolloutStoreError(f"{path} is not a regular file")
        handle = open(path, "rb")
    except OSError as exc:
        raise RolloutStoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        yield handle


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity: a non-finite aggregate is stored as null."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()
    }
