"""`assay detector-eval DIR ...`: the collapse criteria measured as detectors.

Every finished run under the folders is labelled by what its validation accuracy did,
decided on the paired 95% interval of end - start (summary.py):

- *declined*: the interval lies below zero (the run ended below its start beyond noise);
- *improved*: the interval lies above zero;
- *within noise*: the rest (counted, but neither a detection nor a false alarm).

For each criterion: the detection rate (declined runs in which it fired), the false-alarm
rate (improved runs in which it fired) and the lead time of each detection (the step of
the accuracy fall minus the step it fired; positive: it fired first). The fall is the
first validation after the peak whose accuracy is below the run's start (the last
validation when none is).

Beside the three criteria of the lab (collapse.py), one candidate: TTRL's majority ratio
(the share of a group giving its most common answer, `majority_ratio`) with a trailing
mean at or above a threshold. The threshold is chosen on the runs of `choose_seeds`
(the one with the most detections minus false alarms) and reported on `report_seeds`; a
criterion is never tuned on the seeds it is reported on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assay.lab import collapse
from assay.lab.summary import Run, summarize

#: the thresholds tried for the majority-ratio candidate
MAJORITY_GRID = tuple(round(x, 2) for x in np.arange(0.50, 0.99, 0.05))
LABELS = ("declined", "improved", "within noise")


def label(summary: dict[str, Any]) -> str | None:
    """"declined", "improved" or "within noise" from a run's paired interval; None for a
    run without per-task validation figures (it cannot be labelled fairly)."""
    change = (summary.get("intervals") or {}).get("val_change")
    if not change:
        return None
    if change[1] < 0:
        return "declined"
    return "improved" if change[0] > 0 else "within noise"


def fall_step(rows: Sequence[dict[str, Any]]) -> int | None:
    """The first validation step after the peak below the start; else the last one."""
    evals = [(r["step"], r["val_accuracy"]) for r in rows if r.get("val_accuracy") is not None]
    if not evals:
        return None
    start = evals[0][1]
    peak = max(range(len(evals)), key=lambda i: evals[i][1])
    return next((s for s, v in evals[peak + 1:] if v < start), evals[-1][0])


@dataclass
class Labelled:
    """A run, what its validation accuracy did, and its summary (computed once)."""

    run: Run
    kind: str
    summary: dict[str, Any]


#: a criterion: the step at which it fired on a run, or None
Rule = Callable[[Labelled], int | None]


def majority_rule(threshold: float) -> Rule:
    """The candidate: the first step at which the trailing mean of `majority_ratio` (one
    window, as the label-free rule) reaches `threshold`."""

    def fired(item: Labelled) -> int | None:
        hit = collapse.at_or_above(item.run.rows, "majority_ratio", threshold, smooth=True)
        return None if hit is None else hit.step

    return fired


def lab_rule(name: str) -> Rule:
    """One of the lab's criteria, as the run's summary recorded its firing."""

    def fired(item: Labelled) -> int | None:
        hit = item.summary["collapse"][name]
        return None if hit is None else hit["step"]

    return fired


@dataclass
class Score:
    """One criterion on one set of runs."""

    name: str
    declined: int = 0
    detected: int = 0
    improved: int = 0
    alarms: int = 0
    leads: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.name,
            "declined": self.declined,
            "detected": self.detected,
            "detection_rate": self.detected / self.declined if self.declined else None,
            "improved": self.improved,
            "false_alarms": self.alarms,
            "false_alarm_rate": self.alarms / self.improved if self.improved else None,
            "lead_median": float(np.median(self.leads)) if self.leads else None,
            "lead_range": [min(self.leads), max(self.leads)] if self.leads else None,
        }


def score(name: str, rule: Rule, runs: Sequence[Labelled]) -> Score:
    out = Score(name)
    for item in runs:
        fired = rule(item)
        if item.kind == "declined":
            out.declined += 1
            if fired is not None:
                out.detected += 1
                fall = fall_step(item.run.rows)
                if fall is not None:
                    out.leads.append(fall - fired)
        elif item.kind == "improved":
            out.improved += 1
            out.alarms += fired is not None
    return out


def check_seeds(seeds: Sequence[int], option: str) -> None:
    """A one-line `ValueError` for a seed listed twice or below 0 (a run's seed is in
    [0, 2**63), as `assay train` takes it)."""
    negative = sorted({s for s in seeds if s < 0})
    if negative:
        raise ValueError(f"{option}: seeds are whole numbers from 0, got {negative[0]}")
    twice = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if twice:
        raise ValueError(f"{option}: seed {twice[0]} is listed twice")


def distinct(runs: Sequence[Run]) -> list[Run]:
    """`runs` with each run folder once (by its resolved path), in their order."""
    seen: set[Path] = set()
    out = []
    for run in runs:
        try:
            where = run.path.resolve()
        except (OSError, RuntimeError):  # a loop resolve() cannot end: the path as given
            where = run.path.absolute()
        if where not in seen:
            seen.add(where)
            out.append(run)
    return out


def evaluate(runs: Sequence[Run], choose_seeds: Sequence[int],
             report_seeds: Sequence[int]) -> dict[str, Any]:
    """The detector table: every criterion on the report seeds' runs, the candidate's
    threshold chosen on the choose seeds' runs; plus the labels counted per seed set.

    A run reached twice (folders that overlap: `runs runs/x`, or one folder under two
    names) counts once, by its resolved path. Bad input is a one-line `ValueError`: a
    seed listed twice or negative, a seed in both sets, or a seed set that no run has
    (its table would be all zeros, and a threshold chosen on no run is no choice)."""
    for option, seeds in (("--choose-seeds", choose_seeds), ("--report-seeds", report_seeds)):
        check_seeds(seeds, option)
    overlap = set(choose_seeds) & set(report_seeds)
    if overlap:
        raise ValueError(f"seeds {sorted(overlap)} are both chosen on and reported on")
    runs = distinct(runs)
    have = {run.seed for run in runs}
    shown = ", ".join(map(str, sorted(have)[:10])) + (", ..." if len(have) > 10 else "")
    for option, seeds in (("--report-seeds", report_seeds), ("--choose-seeds", choose_seeds)):
        if not have & set(seeds):
            raise ValueError(f"{option} {','.join(map(str, seeds))}: no run has "
                             f"{'that seed' if len(seeds) == 1 else 'any of those seeds'} "
                             f"(the runs' seeds: {shown})")
    every = []  # (run, its summary, its label): each run summarized once
    for run in runs:
        summary = summarize(run.rows, seed=run.seed)
        every.append((run, summary, label(summary)))
    unlabelled = [str(run.path) for run, _, kind in every if kind is None]
    labelled = [Labelled(run, kind, summary) for run, summary, kind in every if kind is not None]
    choose = [item for item in labelled if item.run.seed in set(choose_seeds)]
    report = [item for item in labelled if item.run.seed in set(report_seeds)]
    for option, seeds, part in (("--report-seeds", report_seeds, report),
                                ("--choose-seeds", choose_seeds, choose)):
        if not part:
            raise ValueError(f"{option} {','.join(map(str, seeds))}: no run of "
                             f"{'that seed' if len(seeds) == 1 else 'those seeds'} has per-task "
                             "validation figures, so none can be labelled")

    def margin(threshold: float) -> tuple[float, float]:
        s = score("", majority_rule(threshold), choose)
        hit = s.detected / s.declined if s.declined else 0.0
        alarm = s.alarms / s.improved if s.improved else 0.0
        return hit - alarm, threshold  # ties: the higher threshold (fewer alarms)

    rules = {name: lab_rule(name) for name in collapse.CRITERIA}
    # a threshold is chosen on runs that declined or improved; on runs all within noise every
    # threshold scores alike, and the grid's tie-break would pass for a choice
    best = (max(MAJORITY_GRID, key=margin)
            if any(item.kind != "within noise" for item in choose) else None)
    if best is not None:
        rules[f"majority_ratio >= {best:.2f}"] = majority_rule(best)
    table = {"chosen_on": [score(n, rule, choose).to_dict() for n, rule in rules.items()],
             "reported_on": [score(n, rule, report).to_dict() for n, rule in rules.items()]}
    return {
        "choose_seeds": sorted(choose_seeds),
        "report_seeds": sorted(report_seeds),
        "majority_threshold": best,
        "labels": {
            "chosen_on": {k: sum(item.kind == k for item in choose) for k in LABELS},
            "reported_on": {k: sum(item.kind == k for item in report) for k in LABELS},
        },
        "unlabelled": unlabelled,
        **table,
    }


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def render(result: dict[str, Any]) -> str:
    """The table as Markdown (what docs/lab.md shows)."""
    lines = []
    for part, seeds in (("reported_on", result["report_seeds"]),
                        ("chosen_on", result["choose_seeds"])):
        counts = result["labels"][part]
        lines.append(f"Seeds {', '.join(map(str, seeds))} ({'reported' if part == 'reported_on' else 'chosen'} on): "
                     f"{counts['declined']} declined, {counts['improved']} improved, "
                     f"{counts['within noise']} within noise.")
        lines.append("")
        lines.append("| criterion | detected / declined | detection rate | false alarms / improved "
                     "| false-alarm rate | lead (median, range) in steps |")
        lines.append("|---|---|---|---|---|---|")
        for row in result[part]:
            lead = ("–" if row["lead_median"] is None
                    else f"{row['lead_median']:.0f} ({row['lead_range'][0]} to {row['lead_range'][1]})")
            lines.append(f"| {row['criterion']} | {row['detected']} / {row['declined']} | "
                         f"{_rate(row['detection_rate'])} | {row['false_alarms']} / {row['improved']} | "
                         f"{_rate(row['false_alarm_rate'])} | {lead} |")
        lines.append("")
    if result["majority_threshold"] is None:
        lines.append("No majority-ratio threshold was chosen: none of the chosen-on seeds' runs "
                     "declined or improved beyond noise, so every threshold scores alike.")
    if result["unlabelled"]:
        lines.append(f"Left out (no per-task validation figures): {len(result['unlabelled'])} runs.")
    return "\n".join(lines)
