"""Progress lines for logs: when stderr is not a terminal (CI, `nohup`, a notebook, a pipe)
a rich progress bar draws nothing until it ends, so a 10-minute prior build looked like a
hang. A `Heartbeat` prints one line at least every `ASSAY_PROGRESS_EVERY` seconds (30)
instead: what is being done, how far it is, and an estimate of the rest.

    with Progress(...) as bar, heartbeat(bar, "building organism prior 'default'"):
        ...

On a terminal it prints nothing (the bar is there); `--quiet` (a disabled bar) turns it
off too. Where it prints, the rich bar prints nothing at all (it would draw itself once at
the end, squeezed to 80 columns: "t… reward 0.123 ... (ver…"); the heartbeat's own last
line, when the block ends, says where it got to.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def every() -> float:
    """Seconds between lines (`ASSAY_PROGRESS_EVERY`, default 30)."""
    try:
        return max(0.05, float(os.environ.get("ASSAY_PROGRESS_EVERY", "30")))
    except ValueError:
        return 30.0


class Heartbeat:
    """Print `describe()` to stderr every `every()` seconds while the block runs."""

    def __init__(self, describe: Callable[[], str], *, enabled: bool = True):
        self.describe = describe
        self.enabled = enabled
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.enabled:
            self._thread = threading.Thread(target=self._beat, name="assay-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._line()  # where it got to: the end, or where it was stopped

    def _beat(self) -> None:
        while not self._stop.wait(every()):
            self._line()

    def _line(self) -> None:
        try:
            line = self.describe()
        except Exception as exc:  # noqa: BLE001 - a progress line must never stop the work
            line = f"(progress unavailable: {type(exc).__name__})"
        print(f"[{clock(time.monotonic() - self.started)}] {line}", file=sys.stderr, flush=True)


def heartbeat(progress: Any, label: str) -> Heartbeat:
    """A `Heartbeat` over a rich `Progress`: on when its bar is on but cannot draw."""
    drawn = progress.console.is_terminal and not progress.console.is_dumb_terminal
    enabled = not progress.disable and not drawn
    if enabled and progress.live.is_started:  # the lines replace the bar: it draws nothing
        progress.live.transient = True  # (its one drawing, when it stops, is left out)
        progress.live.stop()
        progress.disable = True  # its stop() then prints nothing either; its tasks still count
    return Heartbeat(lambda: describe_tasks(progress, label), enabled=enabled)


def describe_tasks(progress: Any, label: str) -> str:
    """`label: 5/13 (38%) <fields>; 2 min 10 s in, about 3 min 30 s left` per task."""
    parts = []
    for task in progress.tasks:
        done = f"{task.completed:.0f}/{task.total:.0f}" if task.total else f"{task.completed:.0f}"
        if task.total:
            done += f" ({100 * task.completed / task.total:.0f}%)"
        fields = " ".join(
            v if isinstance(v, str) else f"{k} {v:.3g}"
            for k, v in task.fields.items()
            if (isinstance(v, str) and v) or (isinstance(v, float) and v == v)  # no NaN
        )
        left = task.time_remaining
        when = f"{clock(task.elapsed or 0)} in" + (f", about {clock(left)} left" if left else "")
        parts.append(f"{label}: {done}{' ' + fields if fields else ''}; {when}")
    return " | ".join(parts)


def clock(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
