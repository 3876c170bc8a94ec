"""Where metrics go: `metrics.jsonl` (always), TensorBoard and W&B (optional).

On resume the JSONL file is cut back to the checkpoint's step before anything is
appended, so no step is ever written twice; TensorBoard events of the steps that run
again are superseded by the resumed run's (`purge_step`).
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from assay.errors import AssayError
from assay.files import replace_file


class TrackerError(AssayError, RuntimeError):
    """An optional tracker (TensorBoard, W&B) that cannot be used, or a metrics file that
    is not a regular file; the message says why."""


def _read_bytes(path: Path) -> bytes:
    """The bytes of a metrics file, refused in one line unless it is a regular file (a link
    to /dev/zero would never end, a FIFO would block); a missing one is an `OSError`."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise TrackerError(f"{path} is not a regular file")
    return path.read_bytes()


def _read_text(path: Path) -> str:
    return _read_bytes(path).decode("utf-8")


def _row(line: bytes) -> tuple[dict[str, Any] | None, str | None, bool]:
    """(row, None, _) for a metrics line, or (None, why not, whether a kill could have
    cut it: only a line that is not even complete JSON can be a write stopped midway)."""
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "not a complete JSON line", True
    if not isinstance(value, dict):
        return None, "not a JSON object (one step's metrics)", False
    step = value.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        return None, f"its step {step!r} is not a step number", False
    return value, None, False


def kept_through(path: Path, step: int) -> tuple[list[dict[str, Any]], str]:
    """The rows of steps 1..`step` of metrics file `path`, and their text: what a resume
    from a checkpoint at `step` keeps. Nothing is written.

    A run appends one line per step, in order, and checkpoints after writing the step's
    line, so the file must hold steps 1, 2, ..., `step`, each once. Reading stops at the
    first later step (it runs again). The one damage a kill can leave is a last line cut
    short, and it is dropped only when the steps before it already reach `step` (so it was
    a later one). Anything else would lose a step or keep a wrong one: a `TrackerError`
    naming the file and line, the file left as it was.
    """

    def refuse(where: str, problem: str) -> TrackerError:
        return TrackerError(f"cannot resume from step {step}: {where}: {problem} "
                            "(the file is left as it was)")

    if step < 1:  # nothing is kept: nothing needs reading
        return [], ""
    if not path.exists():
        raise refuse(str(path), f"missing, so steps 1-{step} would be lost")
    rows: list[dict[str, Any]] = []
    kept: list[str] = []
    lines = _read_bytes(path).split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        row, problem, killed = _row(line)
        if problem is not None:
            if killed and i == last and len(rows) == step:  # a later step cut by a kill
                break
            raise refuse(f"{path}:{i + 1}", problem)
        if row["step"] > step:
            break  # this step and the ones after it run again
        if row["step"] != len(rows) + 1:
            raise refuse(f"{path}:{i + 1}", f"step {row['step']} where step {len(rows) + 1} belongs")
        rows.append(row)
        kept.append(line.decode("utf-8") + "\n")
    if len(rows) < step:
        raise refuse(str(path), f"it ends at step {len(rows)}, before the checkpoint's step")
    return rows, "".join(kept)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null says "not available" plainly
    return value


class MetricsLog:
    """Appends one JSON object per step to `metrics.jsonl` and mirrors it to the trackers."""

    def __init__(
        self,
        out: str | Path,
        *,
        tensorboard: bool = False,
        wandb: bool = False,
        wandb_project: str = "assay",
        config: dict[str, Any] | None = None,
        resumed_at: int | None = None,
    ):
        """`resumed_at`: the step a resumed run continues from; TensorBoard then hides the
        events an earlier attempt wrote for the steps after it, which run again."""
        self.path = Path(out) / "metrics.jsonl"
        self.tb = self.run = None
        # Import the optional trackers first: a missing one fails before anything is written.
        writer_class = wandb_module = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter as writer_class
            except ImportError:
                raise TrackerError("tensorboard logging needs: pip install tensorboard") from None
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError:
                raise TrackerError("wandb logging needs: pip install wandb") from None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open_tb = None  # the TensorBoard writer, opened with the first step's metrics
        if writer_class is not None:
            # purge_step: the writer starts with a restart marker at that step, and TensorBoard
            # drops the events of earlier files from that step on, so no step shows twice.
            # Opened at the first step, after config.yaml: a folder with events holds a run.
            purge = None if resumed_at is None else resumed_at + 1
            self._open_tb = lambda: writer_class(str(Path(out) / "tensorboard"), purge_step=purge)
        if wandb_module is not None:
            self.run = wandb_module.init(
                project=wandb_project, config=config, dir=str(out), resume="allow"
            )

    def truncate_after(self, step: int) -> None:
        """Drop lines of steps after `step` (they are re-run after a resume); a file that
        does not hold steps 1..`step` whole is a `TrackerError` (`kept_through`)."""
        if step >= 1 or self.path.exists():
            self.replace(kept_through(self.path, step)[1])

    def replace(self, text: str) -> None:
        """Make `text` the file, through a temporary file renamed into place: a kill
        leaves the old file whole, never half of it."""
        replace_file(self.path, text.encode("utf-8"))

    def write(self, metrics: dict[str, Any]) -> None:
        row = {k: _clean(v) for k, v in metrics.items()}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        step = metrics["step"]
        numbers = {
            k: v
            for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"
        }
        if self.tb is None and self._open_tb is not None:
            self.tb = self._open_tb()
        if self.tb is not None:
            for key, value in numbers.items():
                self.tb.add_scalar(key, value, step)
        if self.run is not None:
            self.run.log(numbers, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.run is not None:
            self.run.finish()


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """Every row of `out/metrics.jsonl`."""
    path = Path(out) / "metrics.jsonl"
    return [json.loads(line) for line in _read_text(path).splitlines() if line]
