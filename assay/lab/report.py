"""`assay report DIR`: from the run folders under DIR to `DIR/summary.json`, the PNG
figures and `DIR/report.html` — one self-contained page (images embedded as data URIs,
no network) with the figures, a summary table, the settings and a plain-language reading
generated from the figures' numbers.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import re
from pathlib import Path
from typing import Any

from assay.envs.jsonl import parse_line
from assay.lab import collapse
from assay.lab.summary import (
    ReportError,
    Run,
    build_summary,
    data_problem,
    find_runs,
    group_runs,
    job_key,
)

#: the reading's words: a change of at least MOVE in validation accuracy counts as a move
MOVE = 0.05
RISE = 0.03
MODES = {
    "gradual": "gradual decline",
    "length": "length collapse",
    "repetition": "repetition collapse",
}


__all__ = ["ReportError", "html_page", "read_meta", "reading", "render"]


def read_meta(folder: Path) -> dict[str, Any]:
    """`folder/lab.json` (what `assay compare` wrote), checked where the report reads it;
    {} when there is none."""
    path = folder / "lab.json"
    if not path.exists():
        return {}
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    meta, problem = parse_line(text)
    if problem is None:
        problem = data_problem(meta)
    if problem is None and not isinstance(meta, dict):
        problem = "expected a JSON object"
    if problem is None:
        problem = _meta_problem(meta)
    if problem is not None:
        raise ReportError(f"{path}: {problem}")
    return meta


def _meta_problem(meta: dict[str, Any]) -> str | None:
    settings = meta.get("settings")
    if settings is not None and not isinstance(settings, dict):
        return "settings: expected a mapping"
    settings = settings or {}
    if "rewards" in settings and not (
        isinstance(settings["rewards"], list) and all(isinstance(r, str) for r in settings["rewards"])
    ):
        return "settings.rewards: expected a list of text"
    if "seeds" in settings and not isinstance(settings["seeds"], list):
        return "settings.seeds: expected a list"
    for key in ("skipped", "failed"):
        value = meta.get(key, {})
        if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            return f"{key}: expected a mapping of text to text"
    return None


def _settings_from_runs(runs: list[Run]) -> dict[str, Any]:
    """Settings shared by every run (for folders made one by one with `assay train`)."""
    shared: dict[str, Any] = {}
    keys = set(runs[0].config)
    for key in sorted(keys):
        values = [run.config.get(key) for run in runs]
        if all(v == values[0] for v in values) and key not in ("out",):
            shared[key] = values[0]
    return {
        "preset": None,
        "env": shared.get("env"),
        "model": shared.get("model"),
        "rewards": sorted({run.reward for run in runs}),
        "seeds": sorted({run.seed for run in runs}),
        "steps": shared.get("steps"),
        "training": {k: v for k, v in shared.items() if k not in ("reward", "seed", "steps")},
    }


def missing_runs(settings: dict[str, Any], runs: list[Any], summary: dict[str, Any]) -> list[str]:
    """The runs `lab.json` planned (each reward, each seed) that are not among `runs`, and
    were neither skipped nor recorded as failed: deleted, moved or never begun. The report
    is drawn from the runs there are; these are named, not silently left out."""
    found = {(run.label, run.seed) for run in runs}
    return [f"{reward} seed {seed}" for reward in settings.get("rewards") or []
            for seed in settings.get("seeds") or []
            if (reward, seed) not in found and reward not in summary["skipped"]
            and job_key(reward, seed) not in summary["failed"]]


def render(folder: str | Path) -> dict[str, Any]:
    """Write summary.json, the PNGs and report.html in `folder`; returns the summary."""
    from assay.lab import plots

    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "is no folder"
        raise ReportError(f"{str(folder)!r} {what}: point assay report at a folder")
    if (folder / "metrics.jsonl").exists():
        # The report's summary.json would overwrite the run's own (written by the trainer).
        raise ReportError(
            f"{str(folder)!r} is a run folder (it holds metrics.jsonl); point assay report at "
            "the folder that holds run folders, e.g. its parent"
        )
    runs = [run for run in find_runs(folder) if run.rows]
    if not runs:
        raise ReportError(
            f"no run folders with metrics (metrics.jsonl + config.yaml) under {str(folder)!r}"
        )
    meta = read_meta(folder)
    settings = meta.get("settings") or _settings_from_runs(runs)
    groups = group_runs(runs, order=settings.get("rewards"))
    summary = build_summary(groups, settings)
    summary["skipped"] = meta.get("skipped", {})
    summary["failed"] = meta.get("failed", {})
    summary["unfinished"] = sorted(
        f"{run.label} seed {run.seed}" for run in runs if not run.finished
    )
    summary["missing"] = missing_runs(meta.get("settings") or {}, runs, summary)  # lab.json's plan
    target = folder / "summary.json"
    try:
        # allow_nan=False: the inputs were checked, so a NaN here is a bug, not a file to write
        target.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        figures = plots.draw(
            groups, folder, {label: entry["collapse_step"] for label, entry in summary["runs"].items()}
        )
        page = html_page(summary, figures)
        target = folder / "report.html"
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        name = exc.filename or target
        raise ReportError(f"cannot write {name}: {exc.strerror or exc}") from None
    return summary


# -- the reading -----------------------------------------------------------------------


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def trend(entry: dict[str, Any]) -> str:
    """"kept improving", "rose, then fell back part-way", "rose, then fell", "declined" or
    "within noise", decided on the 95% intervals of the paired changes (end - start,
    peak - start, peak - end) where the run logged per-task figures; else "... stayed
    level" and the rest on the fixed MOVE and RISE (runs written before per-task figures)."""
    start, peak, end = (
        entry["initial_val_accuracy"], entry["peak_val_accuracy"], entry["final_val_accuracy"]
    )
    if start is None or end is None:
        return "has no validation figures"
    ranges = entry.get("intervals")
    if ranges and ranges.get("val_change"):
        change, rise, fall = ranges["val_change"], ranges["val_rise"], ranges["val_fall"]
        if change[0] > 0:  # end above start beyond noise
            return "kept improving" if fall[0] <= 0 else "rose, then fell back part-way"
        if rise[0] > 0 and fall[0] > 0:  # a real rise, then a real fall to (or below) the start
            return "rose, then fell"
        if change[1] < 0:
            return "declined"
        return "within noise"
    if end >= start + MOVE:
        return "kept improving" if end >= peak - MOVE else "rose, then fell back part-way"
    if peak >= start + RISE and end <= peak - MOVE:
        return "rose, then fell"
    if end <= start - MOVE:
        return "declined"
    return "stayed level"


def _collapse_words(entry: dict[str, Any]) -> str:
    steps = entry["collapse_steps"]
    fired = [f"{collapse.LABELS[k]} at step {steps[k]:.0f}" for k in collapse.CRITERIA
             if steps.get(k) is not None]
    signals = sorted({
        s["collapse"]["label_free"]["signal"]
        for s in entry["seeds"].values()
        if s["collapse"].get("label_free")
    })
    if not fired:
        return "No collapse criterion fired."
    text = "Collapse: " + "; ".join(fired)
    if signals:
        text += f" (label-free signal: {', '.join(signals)})"
    nseeds = len(entry["seeds"])
    if nseeds > 1:
        text += f"; in {entry['collapsed_seeds']} of {nseeds} seeds"
    return text + "."


def _bracket(entry: dict[str, Any], key: str, sign: str = "") -> str:
    """`[0.29, 0.37]`, the 95% interval of `key` (`sign="+"`: `[-0.01, +0.11]`), or ""
    where the entry has none."""
    low_high = (entry.get("intervals") or {}).get(key)
    return f"[{low_high[0]:{sign}.2f}, {low_high[1]:{sign}.2f}]" if low_high else ""


def _ci(entry: dict[str, Any], key: str) -> str:
    """A figure and, where the run has one, its 95% interval: `0.331 [0.29, 0.37]`."""
    bracket = _bracket(entry, key)
    return f"{_f(entry.get(key))} {bracket}" if bracket else _f(entry.get(key))


def _change(entry: dict[str, Any]) -> str:
    """`, change +0.052 [-0.01, +0.11]` (end - start, paired), or nothing without intervals."""
    bracket = _bracket(entry, "val_change", sign="+")
    if not bracket or entry.get("val_change") is None:
        return ""
    return f", change {entry['val_change']:+.3f} {bracket}"


def reading(summary: dict[str, Any]) -> list[str]:
    """Plain-language sentences, each generated from the summary's numbers."""
    lines = []
    by_trend: dict[str, list[str]] = {}
    for label, entry in summary["runs"].items():
        words = trend(entry)
        by_trend.setdefault(words, []).append(label)
        nseeds = len(entry["seeds"])
        seeds = f", mean of {nseeds} seeds" if nseeds > 1 else ""
        over = " over seeds and tasks" if nseeds > 1 else " over tasks"
        sentence = (
            f"<b>{html.escape(label)}</b> ({entry['kind']}{seeds}) {words}: validation accuracy "
            f"{_ci(entry, 'initial_val_accuracy')} → {_ci(entry, 'final_val_accuracy')}"
            f"{_change(entry)} "
            f"(peak {_ci(entry, 'peak_val_accuracy')} at step {_f(entry['peak_step'], 0)}; "
            f"greedy {_ci(entry, 'initial_greedy_accuracy')} → "
            f"{_ci(entry, 'final_greedy_accuracy')}"
            + (f"; 95% intervals{over}" if entry.get("intervals")
               else f"; no per-task validation figures, so judged on a fixed move of {MOVE}")
            + "). "
        )
        if entry["failure_mode"]:
            sentence += f"Failure mode: {MODES[entry['failure_mode']]}. "
        sentence += _collapse_words(entry)
        lines.append(sentence)
    overview = []
    for words in ("kept improving", "rose, then fell", "declined", "within noise",
                  "stayed level", "rose, then fell back part-way"):
        if by_trend.get(words):
            overview.append(f"{words[0].upper()}{words[1:]}: "
                            + ", ".join(html.escape(x) for x in by_trend[words]) + ".")
    if summary.get("missing"):
        lines.append(f"Planned but not found (left out of this report): {', '.join(summary['missing'])}.")
    return [" ".join(overview), *lines]


def reading_text(summary: dict[str, Any]) -> str:
    """The reading as plain text (for the terminal): one paragraph per line, no markup."""
    return "\n".join(html.unescape(re.sub(r"<[^>]+>", "", line)) for line in reading(summary))


# -- the page --------------------------------------------------------------------------

COLUMNS = (
    ("kind", "kind", 0),
    ("initial_val_accuracy", "val start", 3),
    ("peak_val_accuracy", "val peak", 3),
    ("peak_step", "peak step", 0),
    ("final_val_accuracy", "val end", 3),
    ("val_change", "end − start", 3),
    ("initial_greedy_accuracy", "greedy start", 3),
    ("final_greedy_accuracy", "greedy end", 3),
    ("collapse_step", "collapse step", 0),
    ("failure_mode", "failure mode", 0),
    ("final_kl", "KL end", 4),
    ("final_entropy", "entropy end", 3),
    ("final_completion_length", "length end", 2),
    ("tokens", "tokens", 0),
    ("wall_time", "train time (s)", 1),
)

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
.figures { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.note { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


def image_html(path: Path) -> str:
    """The PNG at `path` as an inline <img> (the page stays one self-contained file)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _cell(entry: dict[str, Any], key: str, digits: int) -> str:
    """A table cell: the figure, and below it its 95% interval where the entry has one."""
    value = entry.get(key)
    text = html.escape(_f(value, digits) if isinstance(value, float) else _f(value))
    bracket = _bracket(entry, key)
    if bracket:
        text += f"<br><span class='note'>{bracket}</span>"
    return f"<td>{text}</td>"


def _table(summary: dict[str, Any]) -> str:
    head = "<th>verdict</th>" + "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in COLUMNS)
    head += "".join(f"<th>{html.escape(collapse.LABELS[k])}</th>" for k in collapse.CRITERIA)
    rows = []
    for label, entry in summary["runs"].items():
        cells = [f"<td>{html.escape(label)}</td>", f"<td>{html.escape(trend(entry))}</td>"]
        cells += [_cell(entry, key, digits) for key, _, digits in COLUMNS]
        for k in collapse.CRITERIA:
            cells.append(f"<td>{_f(entry['collapse_steps'].get(k), 0)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr><th>reward</th>{head}</tr>{''.join(rows)}</table>"


def _seed_table(summary: dict[str, Any]) -> str:
    rows = []
    for label, entry in summary["runs"].items():
        for seed, s in entry["seeds"].items():
            criterion = s.get("collapse_criterion")
            figures = "".join(_cell(s, key, 3) for key in (
                "initial_val_accuracy", "peak_val_accuracy", "final_val_accuracy", "val_change"))
            law = s.get("entropy_law")
            figures += f"<td>{_f(law['ceiling'], 3) if law else '–'}</td>"
            rows.append(
                f"<tr><td>{html.escape(label)}</td><td>{seed}</td>"
                f"<td>{html.escape(trend(s))}</td>{figures}<td>{_f(s['collapse_step'])}</td>"
                f"<td>{html.escape(collapse.LABELS.get(criterion, '–'))}</td>"
                f"<td>{_f(s['failure_mode'])}</td><td>{_f(s['steps'])}</td></tr>"
            )
    return (
        "<table><tr><th>reward</th><th>seed</th><th>verdict</th><th>val start</th>"
        "<th>val peak</th><th>val end</th><th>end − start</th><th>entropy-law ceiling</th>"
        "<th>collapse step</th>"
        f"<th>first criterion</th><th>failure mode</th><th>steps</th></tr>{''.join(rows)}</table>"
    )


def html_page(summary: dict[str, Any], figures: dict[str, Path]) -> str:
    settings = summary["settings"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>assay compare: report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>assay compare</h1>",
        f"<p class='note'>{html.escape(str(settings.get('model')))} on "
        f"{html.escape(str(settings.get('env')))}, {settings.get('steps')} steps, seeds "
        f"{html.escape(', '.join(str(s) for s in settings.get('seeds', [])))}; preset "
        f"{html.escape(str(settings.get('preset')))}. Rendered "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}.</p>",
        "<h2>Reading</h2>",
        *(f"<p>{line}</p>" for line in reading(summary)),
    ]
    if summary.get("skipped"):
        parts.append("<h3>Skipped rewards</h3><ul>")
        parts += [f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                  for k, v in summary["skipped"].items()]
        parts.append("</ul>")
    if summary.get("failed"):
        parts.append("<h3>Failed runs</h3><ul>")
        parts += [f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                  for k, v in summary["failed"].items()]
        parts.append("</ul>")
    if summary.get("missing"):
        parts.append("<p class='note'>Planned runs not found (left out): "
                     + html.escape(", ".join(summary["missing"])) + ".</p>")
    if summary.get("unfinished"):
        parts.append("<p class='note'>Unfinished runs (shown as far as they got): "
                     + html.escape(", ".join(summary["unfinished"])) + ".</p>")
    parts.append("<h2>Figures</h2><div class='figures'>")
    parts += [f"<div>{image_html(path)}</div>" for path in figures.values()]
    parts.append("</div>")
    parts.append(
        "<p class='note'>Validation accuracy is the mean over n samples per task (the study's "
        "avg@k), greedy dashed; an x marks a reward's collapse step. Per-step curves are "
        f"trailing means over {5} steps; bands span the seeds. Collapse criteria: "
        f"{html.escape(collapse.LABELS['reward_accuracy'])} (the study's Model Collapse "
        f"Step); {html.escape(collapse.LABELS['reward_precision'])} (the share of promoted "
        "completions that are correct); label-free: a trailing mean of entropy below "
        f"{collapse.ENTROPY_FLOOR:.0%} of its start, length moved by more than "
        f"{collapse.LENGTH_DRIFT:.0%}, or repetition up by more than "
        f"{collapse.REPETITION_RISE}. Brackets hold 95% bootstrap intervals over the "
        "validation tasks (over seeds and tasks for a mean of seeds); a verdict is decided on "
        "the paired interval of the change, and \"within noise\" means it crosses zero. "
        "See docs/lab.md.</p>"
    )
    parts += ["<h2>Summary</h2>", _table(summary), "<h3>Per seed</h3>", _seed_table(summary)]
    parts += [
        "<h2>Settings</h2>",
        f"<pre>{html.escape(json.dumps(settings, indent=2, default=str))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)
