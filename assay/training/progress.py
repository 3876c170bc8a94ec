"""The rich progress bar of `assay train`, with the key figures of the latest step."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from assay.heartbeat import heartbeat


class StepProgress:
    """A progress bar over steps showing reward, ground truth, validation and entropy."""

    def __init__(self, total: int, *, start: int = 0, enabled: bool = True):
        self.console = Console(stderr=True)
        self.progress = Progress(
            "[bold]train",
            BarColumn(),
            MofNCompleteColumn(),
            "{task.fields[figures]}",
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.enabled = enabled
        self.task = self.progress.add_task("train", total=total, completed=start, figures="")
        self.val = ""

    def __enter__(self) -> StepProgress:
        self.progress.__enter__()
        self.beat = heartbeat(self.progress, "train").__enter__()  # lines when no terminal
        return self

    def __exit__(self, *exc: Any) -> None:
        self.beat.__exit__(*exc)
        self.progress.__exit__(*exc)

    def advance(self, m: dict[str, Any]) -> None:
        if m.get("val_accuracy") is not None:
            self.val = f" val {m['val_accuracy']:.2f}/{m['val_greedy_accuracy']:.2f}"
        figures = (
            f"reward {m['reward']:.3f} r-acc {m['reward_accuracy']:.2f} "
            f"gt {m['gt_accuracy']:.2f}{self.val} H {m['entropy']:.2f} "
            f"len {m['completion_length']:.1f} {m['step_time']:.2f}s/step"
            f" (verify {m.get('verify_time', 0.0):.2f}s)"
        )
        self.progress.update(self.task, completed=m["step"], figures=figures)

    def note(self, text: str) -> None:
        if self.enabled:
            self.progress.console.print(text)
