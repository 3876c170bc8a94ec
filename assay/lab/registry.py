"""The lab's experiments, one registry: what each is called, its options and presets, how it
runs and how its report is drawn. The command line makes one command per experiment from
it (`assay compare`, `assay zoo`, ...), `assay report DIR` finds the experiment whose
result DIR holds, and a package adds its own through the `assay.experiments` entry points.

An experiment is one module that ends with

    EXPERIMENT = Experiment(name="my_study", summary="...", run=run, section=section,
                            presets=PRESETS, options=(shared("model"), shared("sets"), ...))

where `run(out=..., preset=..., quiet=..., **options)` writes `OUT/my_study.json` and
returns it, and `section(result, out)` turns it into the report's `Section`. A training
option its runs must have (their `out`, say) is named in `owned=` and refused as a `--set`
by `refuse_owned`, so that a user's value is never silently overridden. The built-in
ones are named in `BUILTIN`; a plug-in names its module in its package's entry points:

    [project.entry-points."assay.experiments"]
    my_study = "my_package.my_study:EXPERIMENT"

docs/development.md has a worked example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from assay.lab.experiment import (
    LabError,
    Preset,
    Section,
    check_result,
    read_result,
    reading_text,
    write_report,
)

#: the built-in experiments, in the order the study tells them (`compare` first: the
#: comparison the others take apart); each module defines `EXPERIMENT`
BUILTIN = ("compare", "collapse_step", "zoo", "sharpen", "scale", "ttt", "theory")

ENTRY_POINT_GROUP = "assay.experiments"

#: result files `assay report` re-renders that no experiment writes, each with its module
#: and the command that writes it: `assay eval`'s
REPORTS = {"evaluate": ("assay.lab.evaluate", "eval")}

#: the experiment a folder of plain run folders (made one by one with `assay train`) is
#: reported as
RUN_FOLDERS = "compare"


class ExperimentFailed(LabError):
    """The experiment ran and failed (e.g. no run of a comparison produced metrics): exit
    status 1, not a usage error; `details` are lines to show first (each run's error)."""

    def __init__(self, message: str, details: list[str] | None = None):
        super().__init__(message)
        self.details = list(details or [])


# -- options ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One command-line option of an experiment; `name` is the keyword its `run` takes."""

    name: str
    help: str
    #: str, int or float; bool makes a flag
    type: type = str
    default: Any = None
    metavar: str | None = None
    #: the option as typed (default: `--` and the name with dashes)
    flag: str | None = None
    #: given again and again (`--set A=1 --set B=2`): `parse` gets the tuple
    multiple: bool = False
    #: turns what was typed into what `run` takes (a bad value: a one-line `LabError`)
    parse: Callable[[Any], Any] | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def value(self, raw: Any) -> Any:
        """What `run` gets for `raw`, the value typed (left out: None, or for a `multiple`
        option what `parse` makes of no values)."""
        if self.parse is None or raw is None:
            return raw
        return self.parse(raw)


def seed_list(text: str, option: str = "--seeds") -> list[int]:
    """`0,1,2` -> [0, 1, 2], or a one-line error naming `option`."""
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LabError(f"{option}: expected seeds separated by commas, e.g. 0,1,2; got {text!r}") from None
    if not seeds:
        raise LabError(f"{option}: no seeds given")
    return seeds


def _assignments(values: tuple[str, ...]) -> dict[str, str]:
    from assay.envs.base import parse_assignments

    return parse_assignments(values)


def _at_least_one(option: str) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < 1:
            raise LabError(f"{option} must be at least 1")
        return value
    return check


#: the options several experiments take, written once; `shared(name)` picks one
SHARED: dict[str, Option] = {option.name: option for option in (
    Option("model", "organism[:preset], a local HF model folder, or a hub id "
           "(default: the preset's)."),
    Option("env", "Environment (default: countdown)."),
    Option("reward", "An intrinsic (label-free) reward.", default="majority_vote"),
    Option("steps", "Steps of every run (default: the preset's).", type=int,
           parse=_at_least_one("--steps")),
    Option("seed", "Random seed.", type=int, default=0),
    Option("seeds", "Comma-separated seeds (default: the preset's).", metavar="N,N,...",
           parse=seed_list),
    Option("sets", "Any `assay train` option, for every run (env.KEY, prior.KEY as in "
           "assay train).", flag="--set", metavar="KEY=VALUE", multiple=True,
           parse=_assignments),
    Option("jobs", "Runs trained at once, in worker processes (default: one per core, at "
           "most 4, for the organism on CPU; else 1; see docs/lab.md).", type=int,
           parse=_at_least_one("--jobs")),
)}


def shared(name: str, **changes: Any) -> Option:
    """The shared option `name`, with `changes` (e.g. its own `help` or `default`)."""
    return dataclasses.replace(SHARED[name], **changes)


def refuse_owned(command: str, sets: Mapping[str, Any] | None, owned: Mapping[str, str]) -> None:
    """A one-line `LabError` when `--set` names a key `command` sets for its runs itself
    (else the experiment's own value would silently win over the user's). `owned` maps
    each such key to the flag to use instead (`--seeds`) or, where none can change it, to
    why not (a phrase)."""
    taken = sorted(set(sets or {}) & set(owned))
    if not taken:
        return
    key = taken[0]
    instead = owned[key]
    hint = f"use {instead} instead" if instead.startswith("--") else instead
    raise LabError(f"--set {key}: {command} sets it itself; {hint}")


# -- experiments ------------------------------------------------------------------------


@dataclass(frozen=True)
class Experiment:
    """One experiment of the lab: the command `assay <name>` and its report."""

    #: a Python name; the command is the name with dashes (`collapse_step` -> collapse-step)
    name: str
    #: the command's help: a first line, then what it writes
    summary: str
    #: `run(out=Path, preset=str, quiet=bool, **options) -> result`: does the work, writes
    #: `OUT/<result_file>` and returns what it wrote
    run: Callable[..., dict[str, Any]]
    presets: Mapping[str, Preset]
    #: its options beyond `--out`, `--preset` and `--quiet`, which every experiment has
    options: tuple[Option, ...] = ()
    #: the preset used when `--preset` is left out
    default_preset: str = "default"
    #: the report section from the result (`section(result, out)`); see `report`
    section: Callable[[dict[str, Any], Path], Section] | None = None
    #: instead of `section`: `report(out) -> reading` draws `OUT/report.html` itself
    report: Callable[[Path], str] | None = None
    #: the file `run` writes in OUT (default `<name>.json`); `assay report` looks for it
    result_file: str = ""
    #: what to do after Ctrl-C (`{out}` is the output folder), or `resume_hint(out)` where
    #: that depends on how far the command got
    resume_hint: str | Callable[[Path], str] = "run the same command again to continue"
    #: the lines for stderr after the reading, and the exit status, from the result
    closing: Callable[[dict[str, Any], Path], tuple[list[str], int]] | None = None
    #: the `--set` keys `run` sets itself, each with the flag to use instead or why none
    #: can change it: `run` refuses them with `refuse_owned` (see there)
    owned: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: the shape of the result file (experiment.py: a dict of fields, `list_of`, NUMBER,
    #: ...): `assay report` refuses a file not of it in one line before drawing it
    shape: Any = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise LabError(f"experiment {self.name!r}: the name must be a Python identifier")
        if (self.section is None) == (self.report is None):
            raise LabError(f"experiment {self.name!r}: give one of `section` and `report`")
        if self.default_preset not in self.presets:
            raise LabError(f"experiment {self.name!r}: default preset {self.default_preset!r} "
                           f"is not one of its presets ({', '.join(self.presets)})")
        taken = {"out", "preset", "quiet"} & {o.name for o in self.options}
        if taken:
            raise LabError(f"experiment {self.name!r}: option {sorted(taken)[0]!r} is every "
                           "experiment's already")
        # a hint must name a flag the command has (compare's seeds are `--seeds`)
        flags = {"--out", "--preset", "--quiet", *(o.option for o in self.options)}
        wrong = sorted(k for k, v in self.owned.items() if v.startswith("--") and v not in flags)
        if wrong:
            raise LabError(f"experiment {self.name!r}: --set {wrong[0]} points to "
                           f"{self.owned[wrong[0]]}, which is not one of its options")

    @property
    def command(self) -> str:
        return self.name.replace("_", "-")

    @property
    def result_name(self) -> str:
        return self.result_file or f"{self.name}.json"

    def holds_result(self, folder: Path) -> bool:
        return (Path(folder) / self.result_name).is_file()

    def render(self, folder: Path) -> str:
        """Draw `folder/report.html` (and its plots) from the stored result; the reading."""
        folder = Path(folder)
        if self.report is not None:
            return self.report(folder)
        assert self.section is not None
        stem = Path(self.result_name).stem
        section = draw_section(self.section, folder, stem, self.command, self.shape)
        write_report(folder, self.name, section)
        return reading_text(section)

    def finish(self, result: dict[str, Any], out: Path) -> tuple[list[str], int]:
        """What to say on stderr once the reading is out, and the exit status."""
        if self.closing is not None:
            return self.closing(result, out)
        return [f"result: {out}/{self.result_name}; report: {out}/report.html"], 0


def draw_section(section: Callable[[dict[str, Any], Path], Section], folder: Path, stem: str,
                 command: str, shape: Any = None) -> Section:
    """`section(result, folder)` from `folder/<stem>.json`, checked against `shape` first.
    A result that passes and still cannot be drawn (a field the shape leaves open, or an
    experiment without a shape) is one line naming the file too, not a traceback."""
    path = folder / f"{stem}.json"
    result = read_result(folder, stem)
    check_result(path, command, result, shape)
    try:
        return section(result, folder)
    except LabError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise LabError(f"{path}: not what assay {command} writes: the report cannot be drawn "
                       f"from it ({type(exc).__name__}: {str(exc)[:200]})") from None


def _load(name: str, target: str) -> Experiment:
    """`module` or `module:ATTR` -> the `Experiment` there, or a one-line error."""
    module, _, attr = target.partition(":")
    try:
        value = getattr(import_module(module), attr or "EXPERIMENT")
    except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break the lab
        raise LabError(f"experiment {name!r} ({target}) cannot be loaded: "
                       f"{type(exc).__name__}: {exc}") from None
    if not isinstance(value, Experiment):
        raise LabError(f"experiment {name!r} ({target}) is not an Experiment")
    if value.name != name:
        raise LabError(f"experiment {name!r} ({target}) calls itself {value.name!r}")
    return value


def builtin_experiment(name: str) -> Experiment:
    """The built-in experiment `name` (one of `BUILTIN`), its module imported now."""
    return _load(name, f"assay.lab.{name}")


def plugin_experiments(on_error: Callable[[LabError], None] | None = None) -> dict[str, Experiment]:
    """The plug-ins' experiments, by name (one cannot take a built-in one's name). A plug-in
    that cannot be loaded raises its one-line `LabError`, or with `on_error` is handed to it
    and left out."""
    found: dict[str, Experiment] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        try:
            if ep.name in BUILTIN or ep.name in found:
                raise LabError(f"experiment plug-in {ep.value!r}: {ep.name!r} is a built-in "
                               "experiment's name")
            found[ep.name] = _load(ep.name, ep.value)
        except LabError as exc:
            if on_error is None:
                raise
            on_error(exc)
    return found


def experiments(on_error: Callable[[LabError], None] | None = None) -> dict[str, Experiment]:
    """Every experiment: the built-in ones in the study's order, then the plug-ins'
    (`plugin_experiments`, with `on_error`)."""
    return {**{name: builtin_experiment(name) for name in BUILTIN}, **plugin_experiments(on_error)}


def get_experiment(name: str) -> Experiment:
    """The experiment called `name` (dashes or underscores), or a one-line error."""
    known = experiments()
    key = name.replace("-", "_")
    if key not in known:
        raise LabError(f"no experiment called {name!r} (known: {', '.join(known)})")
    return known[key]


def experiment_in(folder: Path) -> Experiment | None:
    """The experiment whose result `folder` holds (None: none does)."""
    # a plug-in that cannot be loaded was said at start; the others are still found
    known = experiments(on_error=lambda exc: None).values()
    return next((e for e in known if e.holds_result(Path(folder))), None)


def render(folder: Path) -> str:
    """Re-draw `folder/report.html` from what it holds: an experiment's result, `assay
    eval`'s, or run folders (as a comparison). Returns the reading."""
    folder = Path(folder)
    found = experiment_in(folder)
    if found is not None:
        return found.render(folder)
    for name, (module, command) in REPORTS.items():
        if (folder / f"{name}.json").is_file():
            loaded = import_module(module)
            section = draw_section(loaded.section, folder, name, command,
                                   getattr(loaded, "RESULT_SHAPE", None))
            write_report(folder, name, section)
            return reading_text(section)
    return get_experiment(RUN_FOLDERS).render(folder)
