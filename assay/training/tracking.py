"""Where metrics go: `metrics.jsonl` (always), TensorBoard and W&B (optional).

On resume the JSONL file is cut back to the checkpoint's step before anything is
appended, so no step is ever written twice.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from assay.errors import AssayError


class TrackerError(AssayError, RuntimeError):
    """An optional tracker (TensorBoard, W&B) that cannot be used, or a metrics file that
    is not a regular file; the message says why."""


def _read_text(path: Path) -> str:
    """The text of a metrics file, refused in one line unless it is a regular file (a link
    to /dev/zero would never end, a FIFO would block); a missing one is an `OSError`."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise TrackerError(f"{path} is not a regular file")
    return path.read_text(encoding="utf-8")


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
    ):
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
        if writer_class is not None:
            self.tb = writer_class(str(Path(out) / "tensorboard"))
        if wandb_module is not None:
            self.run = wandb_module.init(
                project=wandb_project, config=config, dir=str(out), resume="allow"
            )

    def truncate_after(self, step: int) -> None:
        """Drop lines of steps after `step` (they are re-run after a resume)."""
        if not self.path.exists():
            return
        keep = []
        for line in _read_text(self.path).splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
        self.path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")

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
