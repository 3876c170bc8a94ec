"""The live display of `assay compare`: one line per run with its step, reward and
validation accuracy, read from each run's `metrics.jsonl` (so it works the same whether
runs train in this process or in worker processes)."""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from assay.heartbeat import Heartbeat, clock


class Board:
    """A rich renderable over the runs of a comparison; re-reads their metrics when drawn."""

    def __init__(self, jobs: list[Any]):
        self.jobs = jobs
        self.status: dict[str, str] = {job.key: "queued" for job in jobs}
        self.started = time.perf_counter()
        self._cache: dict[Path, tuple[int, dict[str, Any]]] = {}

    def latest(self, out: Path) -> dict[str, Any]:
        """Figures of the run's latest step and latest validation, cached by file size."""
        path = out / "metrics.jsonl"
        try:
            size = path.stat().st_size
        except OSError:
            return {}
        cached = self._cache.get(path)
        if cached and cached[0] == size:
            return cached[1]
        figures: dict[str, Any] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            figures.update(step=row.get("step"), reward=row.get("reward"))
            if row.get("val_accuracy") is not None:
                figures.update(val=row["val_accuracy"], greedy=row.get("val_greedy_accuracy"))
        self._cache[path] = (size, figures)
        return figures

    def __rich__(self) -> Table:
        elapsed = time.perf_counter() - self.started
        table = Table(title=f"assay compare  {elapsed:.0f}s", title_justify="left")
        for name in ("reward", "seed", "status", "step", "reward value", "val (greedy)"):
            table.add_column(name, justify="left" if name in ("reward", "status") else "right")
        for job in self.jobs:
            figures = self.latest(job.out)
            val = figures.get("val")
            status = self.status[job.key]
            if status == "started":
                status = "running" if figures else "queued"
            table.add_row(
                job.reward,
                str(job.seed),
                status,
                f"{figures.get('step') or 0}/{job.config.steps}",
                "" if figures.get("reward") is None else f"{figures['reward']:.3f}",
                "" if val is None else f"{val:.2f} ({figures.get('greedy') or 0:.2f})",
            )
        return table


    def describe(self) -> str:
        """One line for a log: runs done, the runs under way and how far, time left."""
        done = [job for job in self.jobs if self.status[job.key].startswith("done")]
        steps = {job.key: self.latest(job.out).get("step") or 0 for job in self.jobs}
        running = [f"{job.reward} seed {job.seed} step {steps[job.key]}/{job.config.steps}"
                   for job in self.jobs
                   if self.status[job.key] in ("running", "started") and steps[job.key]]
        kept = {job.key for job in self.jobs if self.status[job.key] == "done (kept)"}
        todo = [job for job in self.jobs if job.key not in kept]
        total = sum(job.config.steps for job in todo)
        made = sum(min(steps[job.key], job.config.steps) if not self.status[job.key]
                   .startswith("done") else job.config.steps for job in todo)
        elapsed = time.perf_counter() - self.started
        left = f", about {clock(elapsed * (total - made) / made)} left" if made else ""
        return (f"compare: {len(done)}/{len(self.jobs)} runs done"
                + (f"; running {', '.join(running)}" if running else "")
                + f"; {clock(elapsed)} in{left}")


def live(board: Board, enabled: bool) -> AbstractContextManager:
    """A rich Live on stderr when `enabled` and stderr is a terminal; when it is not, a
    line every 30 s (`assay.heartbeat`); else nothing."""
    console = Console(stderr=True)
    if not enabled:
        return nullcontext()
    if not console.is_terminal:
        return Heartbeat(board.describe)
    return Live(board, console=console, refresh_per_second=2, transient=False)
