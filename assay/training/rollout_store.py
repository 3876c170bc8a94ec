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
will run again, so no completion is stored twice.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assay.rewards import RolloutGroup

FILENAME = "rollouts.jsonl.gz"


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
        if not self.path.exists():
            return
        keep = [row for row in read_rollouts(self.path) if row.get("step", 0) <= step]
        tmp = self.path.with_suffix(".tmp")
        data = "".join(json.dumps(row) + "\n" for row in keep).encode("utf-8")
        tmp.write_bytes(gzip.compress(data, compresslevel=6) if keep else b"")
        os.replace(tmp, self.path)  # all or nothing: a kill here leaves the old file


def read_rollouts(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every stored row of a rollouts file; a member cut short by a kill is skipped."""
    return list(iter_rollouts(path))


def iter_rollouts(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    raw = Path(path).read_bytes()
    while raw:
        # One member at a time: a truncated last member (a run killed mid-write) ends the
        # file rather than losing the steps before it.
        decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = decomp.decompress(raw)
        except zlib.error:
            return
        if not decomp.eof:
            return
        raw = decomp.unused_data
        for line in data.decode("utf-8").splitlines():
            if line.strip():
                yield json.loads(line)


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity: a non-finite aggregate is stored as null."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()
    }
