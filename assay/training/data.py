"""The training task stream: a fixed task list visited in a seeded shuffled order.

The position (epoch, index) is part of every checkpoint, so a resumed run draws exactly
the prompts it would have drawn without the interruption.
"""

from __future__ import annotations

import random

from assay.envs.base import Task


class TaskStream:
    """Batches of tasks, epoch after epoch, each epoch in its own seeded order."""

    def __init__(self, tasks: list[Task], seed: int):
        if not tasks:
            raise ValueError("no training tasks")
        self.tasks, self.seed = tasks, seed
        self.epoch, self.index = 0, 0
        self._order = self._shuffle(0)

    def _shuffle(self, epoch: int) -> list[int]:
        order = list(range(len(self.tasks)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def next(self, n: int) -> list[Task]:
        """The next `n` tasks (crossing into a new epoch when one runs out)."""
        batch = []
        while len(batch) < n:
            if self.index == len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._shuffle(self.epoch)
            batch.append(self.tasks[self._order[self.index]])
            self.index += 1
        return batch

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.index = state["epoch"], state["index"]
        self._order = self._shuffle(self.epoch)
