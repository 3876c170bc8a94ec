"""The lab's one registry of experiments: the seven built-in ones, the command line made from
it, `assay report` finding an experiment by its result, and a plug-in experiment installed
through the `assay.experiments` entry points (the worked example of docs/development.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.cli import cli  # noqa: E402
from assay.lab import registry  # noqa: E402
from assay.lab.experiment import LabError, Preset, Section  # noqa: E402
from assay.lab.registry import Experiment, Option, shared  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEVEN = ["compare", "collapse_step", "zoo", "sharpen", "scale", "ttt", "theory"]


def test_the_registry_holds_the_seven_experiments_compare_among_them():
    found = registry.experiments()
    assert list(found)[:7] == SEVEN
    for name, experiment in found.items():
        assert experiment.name == name and experiment.default_preset in experiment.presets
        assert all(isinstance(p, Preset) and p.description for p in experiment.presets.values())


def test_the_command_line_is_made_from_the_registry():
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0
    for experiment in registry.experiments().values():
        assert re.search(rf"^\s+{experiment.command}\s", top.output, re.M), experiment.command
        page = runner.invoke(cli, [experiment.command, "--help"], terminal_width=200)
        assert page.exit_code == 0, page.output
        for option in experiment.options:
            assert option.option in page.output, (experiment.command, option.option)
        for name in experiment.presets:
            assert f"{name}:" in page.output, (experiment.command, name)
        assert f"runs/{experiment.command}" in page.output


def test_architecture_doc_names_every_built_in_experiment():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| study |"))
    for name in registry.BUILTIN:
        assert f"`{name.replace('_', '-')}`" in row, name


@pytest.mark.parametrize("changes, words", [
    ({"default_preset": "huge"}, "default preset 'huge'"),
    ({"report": lambda out: ""}, "one of `section` and `report`"),
    ({"name": "two words"}, "Python identifier"),
    ({"options": (Option("out", "again"),)}, "every experiment's already"),
])
def test_an_experiment_that_cannot_work_is_refused_where_it_is_made(changes, words):
    made = {"name": "toy", "summary": "s", "run": lambda **kw: {},
            "presets": {"default": Preset("default", "d", {})},
            "section": lambda result, out: Section("t", [], "s"), **changes}
    with pytest.raises(LabError, match=words):
        Experiment(**made)


def test_shared_options_are_written_once_and_parse_what_is_typed():
    assert shared("seed").type is int and shared("seed", help="x").help == "x"
    assert shared("seeds").value("0,2") == [0, 2]
    assert shared("sets").value(("a=1", "env.b=x")) == {"a": "1", "env.b": "x"}
    assert shared("sets").value(()) == {}
    with pytest.raises(LabError, match="--seeds"):
        shared("seeds").value("0,x")
    with pytest.raises(LabError, match="--jobs must be at least 1"):
        shared("jobs").value(0)


# -- a plug-in experiment: the worked example of docs/development.md -------------------


def _example() -> str:
    """The Python block of docs/development.md's "Adding an experiment"."""
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    part = text.split("## Adding an experiment", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", part, re.S).group(1)


@pytest.fixture
def installed(tmp_path: Path) -> dict[str, str]:
    """The example installed the way pip leaves a package: module and dist-info."""
    (tmp_path / "flat_groups.py").write_text(_example())
    (tmp_path / "broken_study.py").write_text("raise ImportError('no such thing')\n")
    info = tmp_path / "my_package-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-package\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[assay.experiments]\nflat_groups = flat_groups:EXPERIMENT\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def assay(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).parent / "assay")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, env=env)


def test_a_plug_in_experiment_runs_and_is_reported(installed, tmp_path):
    top = assay("--help", env=installed)
    assert re.search(r"^\s+flat-groups\s", top.stdout, re.M), top.stdout
    out = tmp_path / "flat"
    proc = assay("flat-groups", "--group-size", "4", "--rate", "0.29", "--preset", "smoke",
                 "--out", str(out), env=installed)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "flat_groups.json").read_text())
    assert result["groups"] == 1_000 and result["group_size"] == 4
    assert result["exact"] == pytest.approx(0.29 ** 4 + 0.71 ** 4)
    assert abs(result["measured"] - result["exact"]) < 0.05  # 1,000 groups: sd ~0.014
    assert "Groups that teach nothing" in proc.stdout
    assert f"report: {out}/report.html" in proc.stderr
    (out / "report.html").unlink()
    again = assay("report", str(out), env=installed)  # found by its result file, no list
    assert again.returncode == 0, again.stderr
    assert "Groups that teach nothing" in (out / "report.html").read_text()
    bad = assay("flat-groups", "--preset", "huge", "--out", str(tmp_path / "x"), env=installed)
    assert bad.returncode == 2 and "unknown preset 'huge'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_broken_plug_in_is_one_line_and_the_rest_still_works(installed, tmp_path):
    info = next(tmp_path.glob("*.dist-info"))
    (info / "entry_points.txt").write_text(
        "[assay.experiments]\nbroken_study = broken_study:EXPERIMENT\n")
    proc = assay("theory", "--preset", "smoke", "--out", str(tmp_path / "t"), "--quiet",
                 env=installed)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "broken_study" in line]
    assert len(warnings) == 1 and "cannot be loaded" in warnings[0]


def test_a_plug_in_cannot_take_a_built_in_name(installed, tmp_path):
    info = next(tmp_path.glob("*.dist-info"))
    (info / "entry_points.txt").write_text(
        "[assay.experiments]\nzoo = flat_groups:EXPERIMENT\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(LabError, match="'zoo' is a built-in experiment's name"):
            registry.experiments()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("flat_groups", None)
