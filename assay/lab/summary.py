"""From run folders (`metrics.jsonl` + `config.yaml`, as `assay train` writes them) to the
summary fields of `summary.json`: one dict per run, then the mean over seeds per reward.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from assay.lab import collapse, failure

#: the per-run fields, in the order of summary.json and the report's table
FIELDS = (
    "initial_val_accuracy",
    "peak_val_accuracy",
    "peak_step",
    "final_val_accuracy",
    "initial_greedy_accuracy",
    "final_greedy_accuracy",
    "collapse_step",
    "failure_mode",
    "final_kl",
    "final_entropy",
    "final_completion_length",
    "tokens",
    "wall_time",
)
#: "final_*" per-step figures are the mean over the last FINAL_WINDOW steps
FINAL_WINDOW = 5


@dataclass
class Run:
    """One run folder: where it is, its resolved config and its metrics rows."""

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    label: str = ""
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def reward(self) -> str:
        return str(self.config.get("reward", "?"))

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def finished(self) -> bool:
        """Whether the run reached its configured steps and wrote its summary."""
        steps = int(self.config.get("steps", 0))
        done = self.rows[-1]["step"] if self.rows else 0
        return (self.path / "summary.json").exists() and done >= steps


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of `path/metrics.jsonl`; a line cut short by a kill is skipped."""
    rows = []
    for line in (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def load_run(path: Path) -> Run:
    config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
    return Run(path, config, read_rows(path) if (path / "metrics.jsonl").exists() else [])


def find_runs(root: str | Path, depth: int = 4) -> list[Run]:
    """Every run folder (metrics.jsonl and config.yaml) under `root`, `root` included."""
    root = Path(root)
    found: list[Run] = []

    def visit(folder: Path, level: int) -> None:
        if (folder / "metrics.jsonl").is_file() and (folder / "config.yaml").is_file():
            found.append(load_run(folder))
            return  # a run's own subfolders (checkpoints) hold no runs
        if level >= depth:
            return
        for child in sorted(p for p in folder.iterdir() if p.is_dir()):
            visit(child, level + 1)

    visit(root, 0)
    return found


def _final(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values[-FINAL_WINDOW:])) if values else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary fields of one run, plus each collapse criterion's firing."""
    evals = [r for r in rows if r.get("val_accuracy") is not None]
    greedy = [r for r in evals if r.get("val_greedy_accuracy") is not None]
    peak = max(evals, key=lambda r: r["val_accuracy"]) if evals else None  # first max wins
    fired = collapse.criteria(rows)
    first = min((f for f in fired.values() if f is not None), key=lambda f: f.step, default=None)
    return {
        "initial_val_accuracy": evals[0]["val_accuracy"] if evals else None,
        "peak_val_accuracy": peak["val_accuracy"] if peak else None,
        "peak_step": peak["step"] if peak else None,
        "final_val_accuracy": evals[-1]["val_accuracy"] if evals else None,
        "initial_greedy_accuracy": greedy[0]["val_greedy_accuracy"] if greedy else None,
        "final_greedy_accuracy": greedy[-1]["val_greedy_accuracy"] if greedy else None,
        "collapse_step": first.step if first else None,
        "failure_mode": failure.classify(rows),
        "final_kl": _final(rows, "kl"),
        "final_entropy": _final(rows, "entropy"),
        "final_completion_length": _final(rows, "completion_length"),
        "tokens": int(sum(r.get("tokens") or 0 for r in rows)),
        "wall_time": round(float(sum(r.get("step_time") or 0.0 for r in rows)), 2),
        "steps": rows[-1]["step"] if rows else 0,
        "collapse_criterion": next((k for k, f in fired.items() if f is first), None)
        if first
        else None,
        "collapse": {k: (f.to_dict() if f else None) for k, f in fired.items()},
    }


def mean_over_seeds(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The top level of a reward's entry: numbers averaged over the seeds that have them.

    Steps are rounded to integers. `collapse_step` (and each criterion's step) is the mean
    over the seeds where it fired, None when it fired in none; `collapsed_seeds` says in how many it fired. `failure_mode`
    is the most common mode over seeds (ties: the first seed's).
    """
    seeds = list(per_seed.values())
    out: dict[str, Any] = {}
    for key in (*FIELDS, "steps"):
        if key == "failure_mode":
            modes = Counter(s["failure_mode"] for s in seeds)
            best = max(modes.values())
            out[key] = next(s["failure_mode"] for s in seeds if modes[s["failure_mode"]] == best)
            continue
        values = [s[key] for s in seeds if s.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    for key in ("tokens", "steps", "peak_step", "collapse_step"):  # steps stay integers
        if out[key] is not None:
            out[key] = int(round(out[key]))
    out["collapsed_seeds"] = sum(s["collapse_step"] is not None for s in seeds)
    out["collapse_steps"] = {}
    for name in collapse.CRITERIA:
        steps = [s["collapse"][name]["step"] for s in seeds if s["collapse"].get(name)]
        out["collapse_steps"][name] = int(round(float(np.mean(steps)))) if steps else None
    out["seeds"] = per_seed
    return out


def reward_kind(spec: str) -> str:
    """"external", "intrinsic", "mixed" (a weighted sum of both) or "custom"."""
    from assay.rewards import RewardError, get_reward

    try:
        return get_reward(spec).kind
    except RewardError:  # a reward registered in another process: not known here
        return "custom"


def group_runs(runs: list[Run], order: list[str] | None = None) -> dict[str, list[Run]]:
    """Runs by reward (in `order`, then externals, then the rest by name). A second run
    with the same reward and seed (another model, say) is its own entry, named by folder."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        label = run.reward
        if any(r.seed == run.seed for r in groups.get(label, [])):
            label = f"{run.reward} [{run.path.name}]"
        run.label = label
        groups.setdefault(label, []).append(run)
    rank = {name: i for i, name in enumerate(order or [])}
    keys = sorted(
        groups,
        key=lambda k: (rank.get(k, len(rank)), reward_kind(groups[k][0].reward) != "external", k),
    )
    return {k: sorted(groups[k], key=lambda r: r.seed) for k in keys}


def build_summary(
    groups: dict[str, list[Run]], settings: dict[str, Any]
) -> dict[str, Any]:
    """The whole `summary.json`: settings and, per reward, the mean and each seed."""
    runs = {}
    for label, members in groups.items():
        per_seed = {}
        for run in members:
            run.summary = summarize(run.rows)
            per_seed[str(run.seed)] = run.summary
        entry = mean_over_seeds(per_seed)
        runs[label] = {"kind": reward_kind(members[0].reward), **entry}
    return {"settings": settings, "runs": runs}
