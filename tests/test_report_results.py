"""`assay report DIR` on an experiment's result file that is not what the experiment writes:
one line naming the file and what is wrong (exit status 2), never a traceback, an empty
report or a reading of nothing. Every built-in experiment that draws its report from its
result file declares the result's shape (`Experiment.shape`); a result that passes it and
still cannot be drawn is one line too."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import forked_cli
import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.lab import collapse_step, registry, scale, sharpen, theory, ttt, zoo  # noqa: E402
from assay.lab.experiment import LabError, Preset, Section  # noqa: E402
from assay.lab.registry import Experiment  # noqa: E402


def _rows(accuracies: list[float], steps: int = 12) -> list[dict[str, Any]]:
    """Metric rows with a validation every 5 steps (the accuracies in turn)."""
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "entropy": 1.0, "completion_length": 6.0, "kl": 0.01 * step,
               "tokens": 100, "step_time": 0.1, "repetition_rate": 0.0}
        if (step - 1) % 5 == 0:
            a = accuracies[min((step - 1) // 5, len(accuracies) - 1)]
            row.update(val_accuracy=a, val_greedy_accuracy=min(1.0, a + 0.1))
        rows.append(row)
    return rows


def _ttt() -> dict[str, Any]:
    curves = {name: [{"step": s, "updates": s - 1, "val_accuracy": a, "val_greedy_accuracy": g}
                     for s, a, g in points]
              for name, points in (("ttt", ((1, 0.30, 0.40), (5, 0.35, 0.38))),
                                   ("disjoint", ((1, 0.30, 0.40), (5, 0.31, 0.42))))}
    return {"model": "organism:tiny", "env": "countdown", "reward": "majority_vote",
            "preset": "smoke", "seed": 0, "steps": 4, "eval_tasks": 16, "val_samples": 2,
            **ttt.figures(curves), "curves": curves,
            "runs": {"ttt": "runs/ttt", "disjoint": "runs/disjoint"}, "wall_time": 1.0}


def _theory() -> dict[str, Any]:
    def run(name: str, mode: str) -> dict[str, Any]:
        return {"name": name, "correct": 0, "mode": mode, **theory.train(
            [0.6, 0.4], theory.ExpectedUpdate(2, 4), lr=1.0, steps=50)}

    runs, sampled = [run("peaked", "expected")], [run("peaked", "sampled")]
    return {"runs": runs, "sampled": sampled, "answers": 2, "preset": "smoke",
            "settings": {"group_size": 4, "lr": 1.0, "max_steps": 50, "threshold": 0.99,
                         "sampled_groups_per_step": 16, "seed": 0},
            "summary": {"expected": theory.tally(runs), "sampled": theory.tally(sampled)}}


def _zoo() -> dict[str, Any]:
    models = [{"name": name, "prior": {}, "varies": "accuracy", "spec": {},
               "prior_evaluation": {"greedy_accuracy": 0.4, "wrong_class_accuracy": None},
               "collapse_step": step, "collapsed": step < 300, "criterion": "label-free",
               "gt_gain": gain, "gt_greedy_gain": gain, "initial_val_accuracy": 0.3,
               "final_val_accuracy": 0.3 + gain, "evaluated_at": [1, 101],
               "tokens_collapse_step": 1000 * step, "tokens_gt_gain": 50_000,
               "runs": {}, "seconds": {}}
              for name, step, gain in (("a", 40, 0.05), ("b", 300, 0.1), ("c", 90, 0.08))]
    return zoo.summarise(models, {"preset": "smoke", "model": "organism:tiny", "seed": 0,
                                  "max_steps": 300})


def _sharpen() -> dict[str, Any]:
    per = [{"task": f"countdown-{i}", "prompt": f"make {i}", "run": f"runs/{i}",
            "initial_greedy": i == 0, "final_greedy": i != 2, "initial_answer": "1+2",
            "final_answer": None if i == 2 else "3", "initial_majority_share": 0.5,
            "final_majority_share": 0.9, "initial_majority_answer": "3",
            "final_majority_answer": "3", "same_majority_answer": True,
            "initial_greedy_is_majority": False, "final_greedy_is_majority": True,
            "trajectory": [0.5, 0.7, 0.9], "trajectory_correct": [True, True, True]}
           for i in range(3)]
    return {"model": "organism:tiny", "env": "countdown", "reward": "majority_vote",
            "preset": "smoke", "seed": 0, "steps": 3, "group_size": 4,
            **sharpen.tally(per), "per_problem": per}


def _scale() -> dict[str, Any]:
    sizes = {str(size): scale.measure(_rows(accuracies), size=size, steps=12,
                                      prompts_per_step=4)
             for size, accuracies in ((32, [0.3, 0.35, 0.36]), (512, [0.3, 0.2, 0.1]))}
    return {"sizes": sizes, "reward": "majority_vote", "model": "organism:tiny", "steps": 12,
            "seed": 0, "preset": "smoke"}


def _collapse_step() -> dict[str, Any]:
    result = collapse_step.measure(_rows([0.3, 0.2, 0.1]), {"collapse": None, "steps": 12},
                                   model="organism:tiny", reward="majority_vote", max_steps=12)
    return {**result, "preset": "smoke"}


#: a result each experiment with a section could have written
MADE = {"ttt": _ttt, "theory": _theory, "zoo": _zoo, "sharpen": _sharpen, "scale": _scale,
        "collapse_step": _collapse_step}


def _folder(tmp_path: Path, name: str, result: Any) -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(result))
    return folder


def test_every_built_in_experiment_with_a_section_declares_its_result_shape():
    """The shared check covers every built-in experiment that draws from its result file
    (compare draws from its run folders and checks those itself)."""
    found = registry.experiments()
    with_section = [name for name in registry.BUILTIN if found[name].section is not None]
    assert sorted(with_section) == sorted(MADE)
    assert all(found[name].shape is not None for name in with_section)


@pytest.mark.parametrize("name", sorted(MADE))
def test_a_result_of_its_shape_is_drawn(tmp_path, name):
    folder = _folder(tmp_path, name, MADE[name]())
    reading = registry.render(folder)
    assert reading and (folder / "report.html").is_file()


@pytest.mark.parametrize("name", sorted(MADE))
@pytest.mark.parametrize("result", [{}, {"runs": 1, "models": "x", "sizes": [], "per_problem": {}}])
def test_a_result_not_of_its_shape_is_one_line_naming_the_file(tmp_path, name, result):
    folder = _folder(tmp_path, name, result)
    with pytest.raises(LabError) as caught:
        registry.render(folder)
    message = str(caught.value)
    assert "\n" not in message
    command = name.replace("_", "-")
    assert message.startswith(f"{folder / name}.json: not what assay {command} writes: ")
    assert not (folder / "report.html").exists()


@pytest.mark.parametrize("name, text, words", [
    ("ttt", '{"before": "high", "after": null}', "before: expected a number, got 'high'"),
    ("theory", "{}", "runs: missing"),
    ("zoo", '{"priors": "x"}', "models: missing"),
    ("zoo", '{"models": []}', "models: expected at least 1 entry, got 0"),
    ("theory", json.dumps({**_theory(), "runs": [{**_theory()["runs"][0], "initial": [0.5]}]}),
     "runs[0].initial: expected at least 2 entries, got 1"),
    ("scale", '{"sizes": {"32": {"collapsed": "no"}}}', "sizes.32.collapsed: expected true or false"),
    # fields the reading names, printed as they were ("eleven steps per size", "3 of three")
    ("scale", json.dumps({**_scale(), "steps": "eleven"}), "steps: expected a whole number, got 'eleven'"),
    ("sharpen", json.dumps({**_sharpen(), "problems": "three"}), "problems: expected a whole number"),
])
def test_the_command_names_the_file_and_the_field(tmp_path, name, text, words):
    """The tester's files: a traceback (ttt), an empty report (theory) and a reading of
    "0 priors" (zoo), each with exit status 0 before; now one line and exit status 2."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / f"{name}.json").write_text(text)
    proc = forked_cli.run(["report", str(folder)],
                          timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{folder / name}.json" in lines[0] and words in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and not proc.stdout


def _paths(value: Any, depth: int = 3, prefix: tuple = ()) -> list[tuple]:
    """Every field of a result down to `depth` levels (of a list, its first item)."""
    found = []
    if depth == 0:
        return found
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list) and value:
        items = [(0, value[0])]
    else:
        return found
    for key, child in items:
        found.append((*prefix, key))
        found += _paths(child, depth - 1, (*prefix, key))
    return found


DELETE = object()


@pytest.mark.parametrize("name", sorted(MADE))
def test_a_result_with_any_one_field_broken_is_drawn_or_refused_in_one_line(
        tmp_path, name, monkeypatch):
    """Each field down to three levels, replaced by text, null, an empty object or list, a
    boolean, or left out: the report is drawn or refused in one line naming the file,
    never a traceback."""
    import matplotlib.figure

    # what is drawn is not saved or laid out: that is matplotlib's work on our figure, and
    # it took two thirds of this test's time (theory's 4-panel figure, 147 times)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, path, **kw: None)
    monkeypatch.setattr(matplotlib.figure.Figure, "tight_layout", lambda self, *a, **kw: None)
    good = MADE[name]()
    folder = tmp_path / name
    for path in _paths(good):
        for bad in ("x", None, {}, [], True, DELETE):
            result = copy.deepcopy(good)
            parent = result
            for key in path[:-1]:
                parent = parent[key]
            if bad is DELETE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = bad
            _folder(tmp_path, name, result)
            try:
                registry.render(folder)
            except LabError as exc:
                assert "\n" not in str(exc) and str(exc).startswith(f"{folder / name}.json: "), (
                    path, bad, exc)


def test_a_result_that_passes_its_shape_and_still_cannot_be_drawn_is_one_line(tmp_path):
    """The shape leaves some fields open, and a plug-in may declare none: what the section
    then trips on is one line naming the file, not a traceback."""

    def section(result: dict[str, Any], out: Path) -> Section:
        return Section(title="probe", reading=[f"{result['value']:.2f}"], study="")

    probe = Experiment(name="probe", summary="a probe", run=lambda **kw: {}, section=section,
                       presets={"default": Preset("default", "one", {})})
    folder = _folder(tmp_path, "probe", {"value": "high"})
    with pytest.raises(LabError, match=r"probe\.json: not what assay probe writes: the report "
                                       r"cannot be drawn from it \(ValueError: "):
        probe.render(folder)
    _folder(tmp_path, "probe", {"other": 1})
    with pytest.raises(LabError, match=r"probe\.json: .*\(KeyError: 'value'\)"):
        probe.render(folder)
    # a size key int() cannot read (more than 4,300 digits) passes the shape's key test
    result = _scale()
    result["sizes"] = {"9" * 5000: result["sizes"]["32"]}
    with pytest.raises(LabError, match=r"scale\.json: not what assay scale writes"):
        registry.render(_folder(tmp_path, "scale", result))


def test_a_result_file_nested_too_deeply_is_one_line(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "zoo.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LabError, match=r"zoo\.json: not a JSON result \(nested too deeply\)"):
        registry.render(folder)
