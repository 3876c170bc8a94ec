"""Checkpoints: everything needed to continue a run exactly where it stopped.

`out/checkpoints/step-000050/` holds the model and tokenizer in Hugging Face format
(safetensors) and `trainer_state.pt`: optimizer, scheduler, RNG states, step and data
position. A checkpoint is written to a temporary folder and renamed into place, so a
run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from assay.errors import AssayError, cut, first_line
from assay.files import replace_file

STATE_FILE = "trainer_state.pt"
#: a checkpoint folder's name; anything else in checkpoints/ (a user's `step-000005-backup`,
#: `step-old`) is not one: never read as a step, never pruned
_NAME = re.compile(r"step-(\d+)")
#: what `save` puts in `trainer_state.pt`, every key of which a resume reads
_STATE_KEYS = ("optimizer", "scheduler", "data", "step", "rng")


class CheckpointError(AssayError, ValueError):
    """A checkpoint that cannot be read back; the message names its file."""


def checkpoint_dir(out: str | Path, step: int) -> Path:
    return Path(out) / "checkpoints" / f"step-{step:06d}"


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    out: str | Path,
    step: int,
    model,
    tokenizer,
    state: dict[str, Any],
    keep: int = 2,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint `step` (model, tokenizer, trainer state); keep the newest `keep`.

    `metadata` is the trained model's `assay.json` (its env, env options, training
    defaults): a checkpoint used as `--model` must bring them along, or a run from it
    would silently fall back to the env's defaults.
    """
    final = checkpoint_dir(out, step)
    write_model(
        final, model, tokenizer, metadata,
        extra=lambda tmp: torch.save({**state, "step": step, "rng": rng_state()}, tmp / STATE_FILE),
    )
    for old in list_checkpoints(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_model(
    folder: Path,
    model,
    tokenizer,
    metadata: dict[str, Any] | None = None,
    *,
    extra: Callable[[Path], None] | None = None,
) -> None:
    """A Hugging Face model folder (safetensors, tokenizer, `assay.json` when `metadata`,
    whatever `extra(tmp)` adds), written beside and renamed into place: a kill leaves
    the previous folder whole, never half a new one."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if metadata:
        write_json(tmp / "assay.json", metadata)
    if extra is not None:
        extra(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file renamed into place: a kill leaves the old file whole."""
    replace_file(path, (json.dumps(data, indent=2, default=str) + "\n").encode("utf-8"))


def list_checkpoints(out: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(out) / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        (int(match.group(1)), p)
        for p in root.iterdir()
        if (match := _NAME.fullmatch(p.name)) and (p / STATE_FILE).exists()
    ]
    return [p for _, p in sorted(found)]


def latest(out: str | Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1] if found else None


def load_state(path: Path) -> dict[str, Any]:
    """The trainer state of checkpoint `path`; a file cut short, corrupt or not written by
    `save` is a `CheckpointError` naming it."""
    file = path / STATE_FILE
    try:
        state = torch.load(file, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch.load fails in many ways (zip, pickle, EOF)
        why = first_line(exc)
        raise CheckpointError(f"{file}: cannot be read ({cut(why)}); it is damaged") from None
    missing = [key for key in _STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{file}: not a trainer state (no {', '.join(missing)})")
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{file}: its step {step!r} is not a step number")
    return state
