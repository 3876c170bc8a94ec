"""What the lab's experiments take from `--set` and `--resume`: a `--set` of an option an
experiment sets for its runs itself is refused in one line naming a flag the command
really has (it was silently overridden), and `compare --resume` on a folder that holds no
comparison is refused as `assay train --resume` refuses a folder without a run (it
started a new one)."""

from __future__ import annotations

import os
import re
import tempfile

import pytest
from click.testing import CliRunner

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from test_hardening import one_line_exit_2, run  # noqa: E402 - the same CLI helpers

from assay.cli import cli  # noqa: E402
from assay.lab import registry  # noqa: E402
from assay.lab.experiment import LabError, Preset, Section  # noqa: E402
from assay.lab.registry import Experiment, shared  # noqa: E402

# -- 1. a --set of what the experiment sets itself ----------------------------------------


@pytest.mark.parametrize("command, assignment, named", [
    ("scale", "reward=verifier", "use --reward instead"),
    ("scale", "steps=2", "use --steps instead"),
    ("scale", "train_size=5", "use --sizes instead"),
    ("ttt", "reward=verifier", "use --reward instead"),
    ("ttt", "val_file=tasks.jsonl", "val_size"),
    ("collapse-step", "out={tmp}/elsewhere", "use --out instead"),
    ("collapse-step", "steps=3", "use --max-steps instead"),
    ("collapse-step", "stop_on_collapse=false", "label-free collapse"),
    ("sharpen", "seed=3", "use --seed instead"),
    ("sharpen", "train_file=tasks.jsonl", "--problems"),
])
def test_an_experiment_refuses_a_set_of_what_it_sets_itself(tmp_path, command, assignment,
                                                            named):
    out = tmp_path / "x"
    line = one_line_exit_2(run(command, "--preset", "smoke", "--quiet", "--out", str(out),
                               "--set", assignment.format(tmp=tmp_path)))
    key = assignment.partition("=")[0]
    assert f"--set {key}: {command} sets it itself" in line and named in line
    assert not (out / "runs").exists() and not (out / "run").exists()  # nothing trained
    assert not (tmp_path / "elsewhere").exists()


def test_what_an_experiment_only_defaults_stays_the_users():
    """A preset's `--set` values are defaults: none of them is refused."""
    for experiment in registry.experiments().values():
        for preset in experiment.presets.values():
            for key in preset.settings.get("sets") or {}:
                registry.refuse_owned(experiment.command, {key: "1"}, experiment.owned)
    for key in ("learning_rate", "val_size", "eval_every", "group_size", "env.vote_key"):
        for experiment in registry.experiments().values():
            registry.refuse_owned(experiment.command, {key: "1"}, experiment.owned)


def test_every_experiment_that_takes_set_refuses_what_its_runs_are_given():
    """The options each `run` passes its runs as flags are owned wherever `--set` is taken
    (a new experiment that forgets to say so fails here)."""
    for experiment in registry.experiments().values():
        if "sets" in {o.name for o in experiment.options}:
            assert {"model", "reward", "steps", "seed", "out"} <= set(experiment.owned), \
                experiment.name


# -- 2. the flag a refusal names is one the command has -----------------------------------


def _flags(command: str) -> set[str]:
    page = CliRunner().invoke(cli, [command, "--help"], terminal_width=200)
    assert page.exit_code == 0, page.output
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", page.output))


def test_every_refusal_names_flags_its_command_has():
    for experiment in registry.experiments().values():
        flags = _flags(experiment.command)
        for key in experiment.owned:
            with pytest.raises(LabError) as caught:
                registry.refuse_owned(experiment.command, {key: "1"}, experiment.owned)
            named = set(re.findall(r"--[a-z][a-z-]*", str(caught.value)))
            assert named <= flags, (experiment.command, key, str(caught.value), flags)


@pytest.mark.parametrize("assignment, flag", [("seed=3", "--seeds"),
                                              ("reward=verifier", "--rewards")])
def test_compare_points_to_its_own_flags(tmp_path, assignment, flag):
    line = one_line_exit_2(run("compare", "--preset", "smoke", "--quiet",
                               "--out", str(tmp_path / "c"), "--set", assignment))
    assert f"use {flag} instead" in line


def test_an_experiment_whose_hint_names_a_flag_it_lacks_is_refused_where_it_is_made():
    with pytest.raises(LabError, match="--set seed points to --seed"):
        Experiment(name="toy", summary="s", run=lambda **kw: {},
                   presets={"default": Preset("default", "d", {})},
                   section=lambda result, out: Section("t", [], "s"),
                   options=(shared("seeds"), shared("sets")), owned={"seed": "--seed"})


# -- 3. --resume with nothing to resume ---------------------------------------------------


@pytest.mark.parametrize("made", ["missing", "empty", "unrelated file"])
def test_compare_resume_on_a_folder_without_a_comparison_is_refused(tmp_path, made):
    out = tmp_path / "c"
    if made != "missing":
        out.mkdir()
    if made == "unrelated file":
        (out / "notes.txt").write_text("mine\n")
    line = one_line_exit_2(run("compare", "--preset", "smoke", "--quiet", "--out", str(out),
                               "--resume"))
    assert f"{out} holds no comparison, so there is nothing to resume" in line
    assert not (out / "runs").exists() and not (out / "lab.json").exists()


def test_compare_resume_of_run_folders_without_a_saved_plan_is_planned(tmp_path):
    """Run folders put there without `lab.json` are still resumed (as planned now)."""
    from assay.lab.compare import plan

    out = tmp_path / "c"
    (out / "runs" / "verifier-seed0").mkdir(parents=True)
    planned = plan(out, preset="smoke", rewards=["verifier"], resume=True)
    assert [job.out for job in planned.jobs] == [out / "runs" / "verifier-seed0"]
