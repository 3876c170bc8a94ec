"""`assay theory`: the sharpening theorem on a tabular softmax policy (no network)."""

from __future__ import annotations

import json
import math
import subprocess
from collections import Counter
from pathlib import Path

import forked_cli
import numpy as np
import pytest

from assay.lab import theory


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return forked_cli.run(["theory", *args],
                          timeout=timeout)


@pytest.fixture(scope="module")
def default_result(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("theory")
    proc = _cli("--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((out / "theory.json").read_text())


def test_every_default_run_converges_to_its_initial_majority(default_result):
    """The theorem, on every default run of the exact expected update."""
    _, result = default_result
    runs = result["runs"]
    assert len(runs) >= 10
    for r in runs:
        assert r["converged"], r["name"]
        assert max(r["final"]) > theory.THRESHOLD
        assert r["converged_to"] == r["initial_majority"], r["name"]


def test_the_json_figures_are_consistent(default_result):
    out, result = default_result
    assert {"runs", "sampled", "summary", "settings"} <= set(result)
    for r in result["runs"] + result["sampled"]:
        assert {"initial", "final", "initial_majority", "converged_to", "steps"} <= set(r)
        assert r["initial_majority"] == int(np.argmax(r["initial"]))
        assert r["converged_to"] == int(np.argmax(r["final"]))
        assert math.isclose(sum(r["initial"]), 1.0) and math.isclose(sum(r["final"]), 1.0)
        assert 1 <= r["steps"] <= result["settings"]["max_steps"]
        trajectory = r["trajectory"]
        assert trajectory["steps"][0] == 0 and trajectory["steps"][-1] == r["steps"]
        assert np.allclose(trajectory["probs"][-1], r["final"], atol=1e-5)
    for mode, runs in (("expected", result["runs"]), ("sampled", result["sampled"])):
        assert result["summary"][mode] == theory.tally(runs)
    assert (out / "theory.png").stat().st_size > 0 and (out / "report.html").exists()


def test_the_defaults_include_the_cases_the_issue_asks_for(default_result):
    """A narrow majority, a wrong majority with the correct answer second, near-uniform,
    peaked; and the answer it settles on is wrong in some runs."""
    _, result = default_result
    margins = [sorted(r["initial"])[-1] - sorted(r["initial"])[-2] for r in result["runs"]]
    assert min(margins) <= 0.01
    assert any(r["initial_majority"] != r["correct"]
               and sorted(r["initial"])[-2] == r["initial"][r["correct"]] for r in result["runs"])
    assert any(max(r["initial"]) >= 0.6 for r in result["runs"])
    wrong = result["summary"]["expected"]["ended_on_wrong_answer"]
    assert 0 < wrong < len(result["runs"])


def test_the_run_is_seeded(tmp_path, default_result):
    _, first = default_result
    proc = _cli("--out", str(tmp_path / "again"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "again" / "theory.json").read_text()) == first


def test_the_expected_update_is_the_mean_of_sampled_groups():
    """The exact update equals the average of many sampled groups' gradients."""
    probs = np.array([0.4, 0.35, 0.25])
    exact = theory.ExpectedUpdate(3, 4)(probs)
    rng = np.random.default_rng(0)
    estimate = theory.SampledUpdate(3, 4, groups=40_000)(probs, rng)
    assert np.allclose(exact, estimate, atol=0.01)
    assert exact[0] > 0 > exact[2]  # the majority is pushed up, the least likely down


def test_group_gradient_by_hand():
    """Counts (3, 1) in a group of 4, answer 0 the majority: r = (1,1,1,0), mean 3/4,
    unbiased std 1/2; A = +1/2 for answer 0, -3/2 for answer 1."""
    g = theory.group_gradient(np.array([3, 1]), 0)
    std = 0.5 + theory.STD_EPS
    assert np.allclose(g, [3 * 0.25 / std / 4, -0.75 / std / 4])
    assert np.allclose(theory.group_gradient(np.array([4, 0]), 0), 0)  # all agree: nothing


def test_count_vectors_cover_every_group():
    counts = theory.count_vectors(3, 4)
    assert len(counts) == math.comb(6, 2) and (counts.sum(1) == 4).all()
    assert len({tuple(c) for c in counts}) == len(counts)


def test_sampled_ties_go_to_the_answer_seen_first():
    """The sampled mode's majority is Counter.most_common's, as majority_vote's."""
    assert Counter([2, 1, 1, 2]).most_common(1)[0][0] == 2


@pytest.mark.parametrize("answers", ["2", "3"])
def test_few_answers_run(tmp_path, answers):
    proc = _cli("--answers", answers, "--out", str(tmp_path / "k"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "k" / "theory.json").read_text())
    assert all(len(r["initial"]) == int(answers) for r in result["runs"])
    assert all(r["converged_to"] == r["initial_majority"] for r in result["runs"])


@pytest.mark.parametrize("args", [["--answers", "1"], ["--answers", "0"], ["--answers", "x"],
                                  ["--steps", "0"], ["--lr", "-1"], ["--group-size", "1"],
                                  ["--answers", "40"]])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args):
    out = tmp_path / "bad"
    proc = _cli(*args, "--out", str(out), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


def test_report_re_renders_from_the_json(tmp_path, default_result):
    out, _ = default_result
    (out / "report.html").unlink()
    proc = forked_cli.run(["report", str(out)],
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "initial majority" in proc.stdout and (out / "report.html").exists()


def test_smoke_preset_is_smaller_and_still_converges_to_the_initial_majority(tmp_path):
    proc = _cli("--preset", "smoke", "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "theory.json").read_text())
    assert result["preset"] == "smoke" and result["settings"]["group_size"] == 4
    for r in result["runs"]:
        assert r["converged"] and r["converged_to"] == r["initial_majority"], r["name"]


def test_an_unknown_preset_is_one_line(tmp_path):
    proc = _cli("--preset", "huge", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown preset 'huge'" in lines[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args, words", [
    (["--seed", "-1"], "theory: option 'seed' must be in [0, 2**63), got -1"),
    (["--seed", str(2**63)], f"option 'seed' must be in [0, 2**63), got {2**63}"),
    (["--answers", "²"], "--answers must be a whole number"),
    (["--answers", "1000", "--group-size", "2"], "too many to enumerate"),
    # C(2e6 - 1, 1e6 - 1) would take minutes to compute: refused at once
    (["--answers", "1000000", "--group-size", "1000000"], "more than 1,000,000 possible groups"),
])
def test_numeric_options_are_checked_before_anything_runs(tmp_path, args, words):
    """A seed numpy refuses (negative, or 2**63 and above) is the one line every experiment
    gives, not numpy's traceback; so is any other option theory cannot use."""
    out = tmp_path / "bad"
    proc = _cli("--preset", "smoke", "--quiet", *args, "--out", str(out), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("kwargs, words", [
    ({"seed": -1}, "option 'seed'"), ({"groups": 0}, "groups"), ({"lr": float("inf")}, "--lr"),
    ({"steps": 0}, "--steps"), ({"group_size": 1}, "--group-size"), ({"answers": 1}, "--answers"),
])
def test_run_checks_its_options_from_python_too(tmp_path, kwargs, words):
    with pytest.raises(theory.LabError, match=words):
        theory.run(preset="smoke", out=tmp_path / "x", quiet=True, **kwargs)
    assert not (tmp_path / "x").exists()
