"""From run folders (`metrics.jsonl` + `config.yaml`, as `assay train` writes them) to the
summary fields of `summary.json`: one dict per run, then the mean over seeds per reward.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assay.envs.jsonl import MAX_DEPTH, parse_line, read_lines
from assay.errors import AssayError
from assay.lab import collapse, entropy_law, failure

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
        return int(self.config.get("seed", 0))  # read_config checked it

    @property
    def planned(self) -> int | None:
        """The steps the run was set to run (its config's `steps`), when it says."""
        steps = self.config.get("steps")
        return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None

    @property
    def finished(self) -> bool:
        """Whether the run reached its configured steps and wrote its summary."""
        steps = int(self.config.get("steps", 0))
        done = self.rows[-1]["step"] if self.rows else 0
        return (self.path / "summary.json").exists() and done >= steps


def job_key(reward: str, seed: int) -> str:
    """How `lab.json` names a comparison's run (its `kept` and `failed` entries)."""
    return f"{reward}#{seed}"


class ReportError(AssayError, ValueError):
    """A run folder the lab cannot read, or nothing to report: one line naming the file,
    the line and the field."""


#: the per-step metrics the lab reads, by range: fractions in [0, 1], amounts >= 0, kl any sign
FRACTIONS = ("val_accuracy", "val_greedy_accuracy", "reward_accuracy", "reward_precision",
             "repetition_rate")
AMOUNTS = ("entropy", "completion_length", "tokens", "step_time")
SIGNED = ("kl",)
#: the largest step or metric magnitude read: a float holds every integer up to it exactly,
#: and sums and means over any number of rows stay finite (summary.json has no Infinity)
LIMIT = 2**53
#: values a config.yaml or lab.json may hold in all (YAML aliases can make a small file huge)
MAX_VALUES = 100_000


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    return f"{value!r:.40}"


def check_row(row: Any, where: str) -> dict[str, Any]:
    """One metrics row, or a `ReportError` naming its line and the field that is wrong."""
    if not isinstance(row, dict):
        raise ReportError(f"{where}: expected a JSON object (one step's metrics), got {_show(row)}")
    if "step" not in row:
        raise ReportError(f"{where}: step: missing")
    step = row["step"]
    if not (_is_number(step) and isinstance(step, int) and 0 <= step <= LIMIT):
        raise ReportError(f"{where}: step: expected a whole number from 0 to 2**53, got {_show(step)}")
    for keys, low, words in ((FRACTIONS, 0, "a number in [0, 1]"),
                             (AMOUNTS, 0, "a number from 0 to 2**53"),
                             (SIGNED, -LIMIT, "a number from -2**53 to 2**53")):
        for key in keys:
            value = row.get(key)
            high = 1 if keys is FRACTIONS else LIMIT
            # NaN fails both comparisons; inf and huge integers the second
            if value is not None and not (_is_number(value) and low <= value <= high):
                raise ReportError(f"{where}: {key}: expected {words} or null, got {_show(value)}")
    _check_per_task(row, where)
    return row


#: per-task validation figures (the trainer writes them beside each validation's means)
PER_TASK = ("val_task_accuracy", "val_task_greedy")


def _check_per_task(row: dict[str, Any], where: str) -> None:
    for key in PER_TASK:
        value = row.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            raise ReportError(f"{where}: {key}: expected a list of numbers in [0, 1], got {_show(value)}")
        bad = next((i for i, v in enumerate(value) if not (_is_number(v) and 0 <= v <= 1)), None)
        if bad is not None:
            raise ReportError(
                f"{where}: {key}[{bad}]: expected a number in [0, 1], got {_show(value[bad])}"
            )


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of `path/metrics.jsonl`, each checked; a last line cut short by a kill is
    skipped, any other line the lab cannot read is a `ReportError` naming it."""
    file = path / "metrics.jsonl"
    try:
        lines = list(read_lines(file))
    except OSError as exc:
        raise ReportError(f"cannot read {file}: {exc.strerror or exc}") from None
    rows = []
    for lineno, text in lines:
        where = f"{file}:{lineno}"
        cut = lineno == len(lines)  # the trainer drops cut lines on resume: only the last is one
        if text is None:
            if cut:
                continue
            raise ReportError(f"{where}: not UTF-8 text")
        if not text.strip():
            continue
        value, problem = parse_line(text)
        if problem is not None:
            if cut and problem.startswith("invalid JSON"):
                continue
            raise ReportError(f"{where}: {problem}")
        rows.append(check_row(value, where))
    return rows


def data_problem(value: Any) -> str | None:
    """Why `value` (parsed YAML or JSON) cannot go into summary.json and the report, or None.

    Accepted: mappings with text keys, lists, text, finite numbers, booleans and null, at
    most `MAX_DEPTH` deep and `MAX_VALUES` in all. The answer names the field (`env.max_value`).
    Walks without recursion.
    """
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    seen = 0
    while stack:
        item, depth, name = stack.pop()
        seen += 1
        label = name or "top level"
        if seen > MAX_VALUES:
            return f"more than {MAX_VALUES} values (YAML aliases?)"
        if depth > MAX_DEPTH:
            return f"{label}: nested too deeply (more than {MAX_DEPTH} levels)"
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    where = f"{name}: " if name else ""
                    return f"{where}option names are text, got {_show(key)}"
                stack.append((child, depth + 1, f"{name}.{key}" if name else key))
            stack.extend((key, depth + 1, label) for key in item)  # keys are text too
        elif isinstance(item, list):
            stack.extend((child, depth + 1, name) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{label}: expected a finite number, got {item}"
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"{label}: a lone surrogate (not Unicode; UTF-8 cannot encode it)"
        elif not (item is None or isinstance(item, (bool, int, float))):
            return f"{label}: expected text, a number, a list or a mapping, got {type(item).__name__}"
    return None


def read_config(file: Path) -> dict[str, Any]:
    """A run's config.yaml: the mapping `assay train` wrote, checked where the lab reads it."""
    from assay.training.config import ConfigError, read_yaml

    try:
        config = read_yaml(str(file))
    except ConfigError as exc:
        raise ReportError(str(exc)) from None
    problem = data_problem(config)
    if problem is not None:
        raise ReportError(f"{file}: {problem}")
    checks = (("reward", lambda v: isinstance(v, str), "text"),
              ("seed", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63,
               "a whole number in [0, 2**63)"),
              ("steps", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= LIMIT,
               "a whole number from 0 to 2**53"))
    for key, good, words in checks:
        if key in config and not good(config[key]):
            raise ReportError(f"{file}: {key}: expected {words}, got {_show(config[key])}")
    return config


def load_run(path: Path) -> Run:
    config = read_config(path / "config.yaml")
    return Run(path, config, read_rows(path) if (path / "metrics.jsonl").exists() else [])


def find_runs(
    root: str | Path, depth: int = 4, on_error: Callable[[ReportError], None] | None = None
) -> list[Run]:
    """Every run folder (metrics.jsonl and config.yaml) under `root`, `root` included.

    A folder the lab cannot read raises `ReportError`, or, with `on_error`, the error is
    passed to it and the folder left out. Symbolic links are followed, but each folder is
    visited once (by its resolved path, real folders before links): a link loop ends, and a
    run reached under two names is one run.
    """
    root = Path(root)
    found: list[Run] = []
    seen: set[Path] = set()

    def visit(folder: Path, level: int) -> None:
        try:
            real = folder.resolve()
        except (OSError, RuntimeError):  # a loop resolve() cannot end (Python < 3.13)
            return
        if real in seen:
            return
        seen.add(real)
        if (folder / "metrics.jsonl").is_file() and (folder / "config.yaml").is_file():
            try:
                found.append(load_run(folder))
            except ReportError as exc:
                if on_error is None:
                    raise
                on_error(exc)
            return  # a run's own subfolders (checkpoints) hold no runs
        if level >= depth:
            return
        try:
            children = sorted((p for p in folder.iterdir() if p.is_dir()),
                              key=lambda p: (p.is_symlink(), p.name))
        except OSError as exc:
            error = ReportError(f"cannot read {folder}: {exc.strerror or exc}")
            if on_error is None:
                raise error from None
            on_error(error)
            return
        for child in children:
            visit(child, level + 1)

    visit(root, 0)
    return found


def _final(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values[-FINAL_WINDOW:])) if values else None


#: summary field -> the `intervals.curve_replicates` figure that gives its interval
INTERVAL_OF = {
    "initial_val_accuracy": "start",
    "peak_val_accuracy": "peak",
    "final_val_accuracy": "end",
    "initial_greedy_accuracy": "greedy_start",
    "final_greedy_accuracy": "greedy_end",
    "val_change": "change",  # end - start, paired over the same tasks
    "val_rise": "rise",  # peak - start
    "val_fall": "fall",  # peak - end
    "greedy_change": "greedy_change",
}


def replicates(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, np.ndarray] | None:
    """Bootstrap replicates of one run's validation figures (`intervals.curve_replicates`),
    or None when its metrics carry no per-task figures (runs written before they were
    logged) or when they differ in length between validations."""
    from assay.lab.intervals import curve_replicates

    evals = [r for r in rows if r.get("val_accuracy") is not None]
    sampled = [r.get("val_task_accuracy") for r in evals]
    if not evals or any(not s for s in sampled) or len({len(s) for s in sampled}) != 1:
        return None
    greedy = [r.get("val_task_greedy") for r in evals]
    usable = all(g and len(g) == len(sampled[0]) for g in greedy)
    return curve_replicates(
        np.asarray(sampled, dtype=float),  # (S, T)
        np.asarray(greedy, dtype=float) if usable else None,
        seed=seed,
    )


def interval_fields(reps: dict[str, np.ndarray] | None) -> dict[str, list[float] | None] | None:
    """`{summary field: [low, high]}` from replicates; None without them."""
    from assay.lab.intervals import percentile_interval

    if reps is None:
        return None
    return {key: percentile_interval(reps[name]) if name in reps else None
            for key, name in INTERVAL_OF.items()}


def summarize(
    rows: list[dict[str, Any]], seed: int = 0, reps: dict[str, np.ndarray] | None = None,
    planned: int | None = None,
) -> dict[str, Any]:
    """The summary fields of one run, plus each collapse criterion's firing. With per-task
    validation figures, `intervals` holds a 95% interval for each accuracy and for the
    paired changes (end - start, peak - start, peak - end); `seed` seeds the bootstrap,
    so that two runs of one seed (which share validation tasks) are resampled alike;
    `reps`, when given, are those replicates already computed; `planned`, the steps the
    run was set to run (`collapse.criteria`)."""
    evals = [r for r in rows if r.get("val_accuracy") is not None]
    intervals = interval_fields(replicates(rows, seed) if reps is None else reps)
    declined = None if intervals is None else intervals["val_change"][1] < 0
    greedy = [r for r in evals if r.get("val_greedy_accuracy") is not None]
    peak = max(evals, key=lambda r: r["val_accuracy"]) if evals else None  # first max wins
    fired = collapse.criteria(rows, planned)
    first = min((f for f in fired.values() if f is not None), key=lambda f: f.step, default=None)
    return {
        "initial_val_accuracy": evals[0]["val_accuracy"] if evals else None,
        "peak_val_accuracy": peak["val_accuracy"] if peak else None,
        "peak_step": peak["step"] if peak else None,
        "final_val_accuracy": evals[-1]["val_accuracy"] if evals else None,
        "initial_greedy_accuracy": greedy[0]["val_greedy_accuracy"] if greedy else None,
        "final_greedy_accuracy": greedy[-1]["val_greedy_accuracy"] if greedy else None,
        "collapse_step": first.step if first else None,
        "failure_mode": failure.classify(rows, declined=declined),
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
        "val_change": evals[-1]["val_accuracy"] - evals[0]["val_accuracy"] if evals else None,
        "val_tasks": len(evals[0].get("val_task_accuracy") or []) if evals else 0,
        "intervals": intervals,
        "entropy_law": entropy_law.predict(rows),  # the ceiling its first half predicts
    }


def mean_over_seeds(
    per_seed: dict[str, dict[str, Any]], reps: list[dict[str, np.ndarray] | None] | None = None
) -> dict[str, Any]:
    """The top level of a reward's entry: numbers averaged over the seeds that have them.

    `reps` (each seed's bootstrap replicates, in `per_seed`'s order) gives the mean's
    `intervals`, over seeds and tasks (`intervals.over_seeds`); without them for every
    seed, `intervals` is None.

    Steps are rounded to integers. `collapse_step` (and each criterion's step) is the mean
    over the seeds where it fired, None when it fired in none; `collapsed_seeds` says in how many it fired. `failure_mode`
    is the most common mode over seeds (ties: the first seed's).
    """
    seeds = list(per_seed.values())
    out: dict[str, Any] = {}
    for key in (*FIELDS, "steps", "val_change"):
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
    out["intervals"] = None
    if reps and all(r is not None for r in reps):
        from assay.lab.intervals import over_seeds

        combined = {name: over_seeds([r[name] for r in reps]) for name in reps[0]
                    if all(name in r for r in reps)}
        out["intervals"] = interval_fields(combined)
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

    def taken(label: str, seed: int) -> bool:
        return any(r.seed == seed for r in groups.get(label, []))

    def labels(run: Run) -> Iterator[str]:
        # The reward, then its folder's name, then parent/name, then a counter: a run is
        # never averaged with, or dropped for, another run of the same reward and seed.
        where = f"{run.path.parent.name}/{run.path.name}"
        yield from (run.reward, f"{run.reward} [{run.path.name}]", f"{run.reward} [{where}]")
        for k in itertools.count(2):
            yield f"{run.reward} [{where} #{k}]"

    for run in runs:
        label = next(name for name in labels(run) if not taken(name, run.seed))
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
        per_seed, reps = {}, []
        for run in members:
            reps.append(replicates(run.rows, seed=run.seed))
            run.summary = summarize(run.rows, seed=run.seed, reps=reps[-1], planned=run.planned)
            per_seed[str(run.seed)] = run.summary
        entry = mean_over_seeds(per_seed, reps)
        runs[label] = {"kind": reward_kind(members[0].reward), **entry}
    return {"settings": settings, "runs": runs}
