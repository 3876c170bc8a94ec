"""What the lab's experiments share: the one error, the one preset type, training one run,
the result file, the progress display over runs and the report page.

Each experiment is one module that registers an `Experiment` (registry.py): a `run(...)`
that writes `OUT/<name>.json` and a `section(result, out)` that turns that result into a
report `Section`; `write_report` renders `OUT/report.html` from it (one self-contained page
in the style of `assay compare`'s report), and `assay report OUT` re-renders it from the
JSON alone. `compare`, whose report reads its run folders, renders its own page.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assay.errors import AssayError


class LabError(AssayError, ValueError):
    """A usage problem in the lab (unknown preset, reward or model, a bad value, an
    unreadable result, a folder made with other settings): one line."""


@dataclass(frozen=True)
class Preset:
    """One named budget of an experiment: the settings its options fall back on.

    `settings` holds what the experiment reads (most have `model`, `steps` and `sets`, the
    `--set` values of every run; each adds its own, e.g. scale's `sizes`); the command's
    own options override them. `description` is the line `--help` shows.
    """

    name: str
    description: str
    settings: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]


def pick_preset(presets: Mapping[str, Preset], name: str, command: str) -> dict[str, Any]:
    """The settings of preset `name` (a copy), or a one-line error naming the known ones."""
    if name not in presets:
        raise LabError(f"{command}: unknown preset {name!r} (known: {', '.join(presets)})")
    return dict(presets[name].settings)


def train_run(
    *,
    out: Path,
    flags: dict[str, Any],
    sets: dict[str, str] | None = None,
    resume: bool = False,
    quiet: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One `assay train` run into `out` (quietly, unless `quiet` is False: then with its
    progress bar): returns its summary and metric rows.

    A folder that already holds a finished run (its summary.json says it was not
    interrupted and ran its steps or stopped at a collapse) is read back, not trained
    again: an experiment interrupted half way resumes where it stopped.
    """
    from assay.training import Trainer, resolve
    from assay.training.config import read_yaml, resume_changes
    from assay.training.tracking import read_metrics

    flags = {**flags, "out": str(out)}
    config = resolve(sets={**({"progress": "false"} if quiet else {}), **(sets or {})}, flags=flags)
    saved = out / "config.yaml"
    # task files are compared by content by the experiments that write them (ttt), not by path
    changes = (resume_changes(read_yaml(str(saved)), config, also=("train_file", "val_file"))
               if saved.is_file() else [])
    if changes:  # a run made with other settings is neither read back nor continued
        raise LabError(
            f"{out} holds a run made with other settings ({'; '.join(changes[:3])}); "
            "run again with those settings or choose another --out"
        )
    done = out / "summary.json"
    if done.exists():
        summary = json.loads(done.read_text(encoding="utf-8"))
        stopped = summary.get("collapse") is not None and config.stop_on_collapse
        if not summary.get("interrupted") and (summary.get("steps") == config.steps or stopped):
            return summary, read_metrics(out)
        resume = True
    elif (out / "metrics.jsonl").exists():
        resume = True
    summary = Trainer(config, resume=resume, quiet=quiet).train()
    return summary, read_metrics(out)


def write_result(out: Path, command: str, result: dict[str, Any]) -> Path:
    """`OUT/<command>.json`, written whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{command}.json"
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_result(out: Path, command: str) -> dict[str, Any]:
    """`OUT/<command>.json` as a mapping, or a one-line error naming the file."""
    path = out / f"{command}.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LabError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabError(f"{path}: not a JSON result ({exc})") from None
    except RecursionError:
        raise LabError(f"{path}: not a JSON result (nested too deeply)") from None
    if not isinstance(value, dict):
        raise LabError(f"{path}: expected a JSON object")
    return value


# -- the shape of a result -------------------------------------------------------------
#
# What an experiment's result file must hold for its report to be drawn, written as data:
# a dict is a JSON object with those keys (each required unless `optional`), `list_of`
# a list, `map_of` an object with any keys, `maybe` allows null, `where` adds a test of
# the whole value, and a `Kind` (NUMBER, WHOLE, TEXT, FLAG, ANY) is a leaf. `assay report`
# checks a result against its experiment's `shape` before drawing it, so that a file that
# is not what the experiment writes is one line naming the file and the field, not a
# traceback or an empty report.


@dataclass(frozen=True)
class Kind:
    """A leaf of a shape: what the value must be, in words, and the test."""

    words: str
    test: Callable[[Any], bool]


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


NUMBER = Kind("a number", _number)
WHOLE = Kind("a whole number", _whole)
TEXT = Kind("text", lambda value: isinstance(value, str))
FLAG = Kind("true or false", lambda value: isinstance(value, bool))
ANY = Kind("anything", lambda value: True)


@dataclass(frozen=True)
class _Maybe:
    shape: Any


@dataclass(frozen=True)
class _Optional:
    shape: Any


@dataclass(frozen=True)
class _ListOf:
    item: Any
    at_least: int


@dataclass(frozen=True)
class _MapOf:
    value: Any
    key: Kind


@dataclass(frozen=True)
class _Where:
    shape: Any
    test: Callable[[Any], str | None]


def maybe(shape: Any) -> Any:
    """`shape`, or null."""
    return _Maybe(shape)


def optional(shape: Any) -> Any:
    """In a dict shape: the key may be left out; when there, its value is of `shape`."""
    return _Optional(shape)


def list_of(item: Any, at_least: int = 0) -> Any:
    """A list of at least `at_least` values, each of shape `item`."""
    return _ListOf(item, at_least)


def map_of(value: Any, key: Kind = TEXT) -> Any:
    """An object with any keys (each `key`), every value of shape `value`."""
    return _MapOf(value, key)


def where(shape: Any, test: Callable[[Any], str | None]) -> Any:
    """`shape`, then `test(value)`: None, or what is wrong (a phrase)."""
    return _Where(shape, test)


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    return "null" if value is None else f"{value!r:.40}"


def _field(name: str, key: Any) -> str:
    """`name.key`, a long key cut short."""
    key = str(key) if len(str(key)) <= 40 else f"{str(key)[:40]}..."
    return f"{name}.{key}" if name else key


def shape_problem(value: Any, shape: Any, name: str = "") -> str | None:
    """What is wrong with `value` against `shape` (the field named, e.g. `runs[2].initial:
    expected a number, got 'x'`), or None."""
    where_ = f"{name}: " if name else ""
    if isinstance(shape, _Optional):
        shape = shape.shape
    if isinstance(shape, _Maybe):
        return None if value is None else shape_problem(value, shape.shape, name)
    if isinstance(shape, Kind):
        return None if shape.test(value) else f"{where_}expected {shape.words}, got {_show(value)}"
    if isinstance(shape, _Where):
        return shape_problem(value, shape.shape, name) or (
            None if (wrong := shape.test(value)) is None else f"{where_}{wrong}")
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where_}expected an object, got {_show(value)}"
        for key, sub in shape.items():
            field_name = _field(name, key)
            if key not in value:
                if isinstance(sub, _Optional):
                    continue
                return f"{field_name}: missing"
            problem = shape_problem(value[key], sub, field_name)
            if problem:
                return problem
        return None
    if isinstance(shape, _ListOf):
        if not isinstance(value, list):
            return f"{where_}expected a list, got {_show(value)}"
        if len(value) < shape.at_least:
            return (f"{where_}expected at least {shape.at_least} "
                    f"{'entry' if shape.at_least == 1 else 'entries'}, got {len(value)}")
        for i, item in enumerate(value):
            problem = shape_problem(item, shape.item, f"{name}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(shape, _MapOf):
        if not isinstance(value, dict):
            return f"{where_}expected an object, got {_show(value)}"
        for key, item in value.items():
            field_name = _field(name, key)
            if not shape.key.test(key):
                return f"{field_name}: expected a key that is {shape.key.words}"
            problem = shape_problem(item, shape.value, field_name)
            if problem:
                return problem
        return None
    raise TypeError(f"not a shape: {shape!r}")  # the experiment's own mistake


def check_result(path: Path, command: str, value: dict[str, Any], shape: Any) -> None:
    """A one-line `LabError` when the result read from `path` is not of `shape` (what
    `assay <command>` writes); None `shape` checks nothing."""
    if shape is None:
        return
    problem = shape_problem(value, shape)
    if problem:
        raise LabError(f"{path}: not what assay {command} writes: {problem}")


# -- progress over runs ----------------------------------------------------------------


class RunProgress:
    """A progress bar over an experiment's runs (each run's own bar stays off)."""

    def __init__(self, command: str, total: int, enabled: bool):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            f"[bold]{command}",
            BarColumn(),
            MofNCompleteColumn(),
            "{task.fields[what]}",
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self.task = self.progress.add_task(command, total=total, what="")

    def doing(self, what: str) -> None:
        """Name the run under way."""
        self.progress.update(self.task, what=what)

    def advance(self, what: str = "") -> None:
        """One run done; `what` names its outcome."""
        self.progress.update(self.task, advance=1, what=what)


@contextmanager
def run_progress(command: str, total: int, enabled: bool) -> Iterator[RunProgress]:
    from assay.heartbeat import heartbeat

    bar = RunProgress(command, total, enabled)
    with bar.progress, heartbeat(bar.progress, f"{command} (runs)"):
        yield bar


# -- the report ------------------------------------------------------------------------


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class Section:
    """One experiment's part of a report: what it found, in words and figures."""

    title: str
    #: plain-language sentences generated from the result's numbers
    reading: list[str]
    #: what the study reports for the same experiment, to read ours against
    study: str
    #: PNG files (already written into the output folder), shown in order
    figures: list[Path] = field(default_factory=list)
    #: a table: column headers, then rows of cells (already formatted as text)
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    #: the settings the result was made with
    settings: dict[str, Any] = field(default_factory=dict)


def section_html(section: Section) -> str:
    """The section as HTML: reading, the study's figure, plots, table and settings."""
    from assay.lab.report import image_html

    parts = [f"<h2>{html.escape(section.title)}</h2>", "<h3>Reading</h3>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in section.reading]
    parts.append(f"<p class='note'><b>The study:</b> {html.escape(section.study)}</p>")
    if section.figures:
        parts.append("<div class='figures'>")
        parts += [f"<div>{image_html(path)}</div>" for path in section.figures if path.exists()]
        parts.append("</div>")
    if section.rows:
        parts.append("<table><tr>")
        parts += [f"<th>{html.escape(c)}</th>" for c in section.columns]
        parts.append("</tr>")
        for row in section.rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    parts.append("<h3>Settings</h3>")
    parts.append(f"<pre>{html.escape(json.dumps(section.settings, indent=2, default=str))}</pre>")
    return "\n".join(parts)


def write_report(out: Path, command: str, section: Section) -> Path:
    """`OUT/report.html`: one self-contained page holding the section."""
    from assay.lab.report import STYLE

    page = "\n".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>assay {command.replace('_', '-')}: report</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>assay {html.escape(command.replace('_', '-'))}</h1>",
        f"<p class='note'>Rendered {datetime.datetime.now().isoformat(timespec='seconds')} "
        "from " + html.escape(f"{command}.json") + "; see docs/lab.md.</p>",
        section_html(section),
        "</body></html>",
    ])
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def reading_text(section: Section) -> str:
    """The reading as plain text for the terminal."""
    return "\n".join([section.title, *(f"- {line}" for line in section.reading),
                      f"The study: {section.study}"])
