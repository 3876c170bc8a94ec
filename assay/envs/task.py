"""`Task`: one problem, as every environment, task file and reward sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_RESERVED = ("id", "prompt")


@dataclass
class Task:
    """One problem: an id, the prompt text and the environment-specific fields.

    On disk and on the command line a task is one flat JSON object:
    `{"id": ..., "prompt": ..., **fields}`. Ground truth, where an environment has
    any, is just another field (math's `answer`); countdown needs none.
    """

    id: str
    prompt: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, **self.fields}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, default_id: str = "") -> Task:
        fields = {k: v for k, v in data.items() if k not in _RESERVED}
        return cls(id=str(data.get("id", default_id)), prompt=str(data.get("prompt", "")), fields=fields)
