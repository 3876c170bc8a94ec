"""`assay zoo`: zoo.json's figures are the run folders' figures, recomputed here."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import forked_cli
import pytest
import yaml

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay import organism  # noqa: E402
from assay.lab import rank_correlation, zoo  # noqa: E402
from assay.lab.experiment import LabError  # noqa: E402
from assay.training import collapse_rules  # noqa: E402


def _assay(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return forked_cli.run([*args], timeout=timeout)


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()
            if line]


def _ranks(values: list[float]) -> list[float]:
    """Tie-averaged ranks, counted directly (a second implementation, not the module's)."""
    return [1 + sum(w < v for w in values) + (sum(w == v for w in values) - 1) / 2
            for v in values]


def _spearman(x: list[float], y: list[float]) -> float:
    try:
        from scipy.stats import spearmanr
    except ImportError:
        import numpy as np

        return float(np.corrcoef(_ranks(x), _ranks(y))[0, 1])
    return float(spearmanr(x, y).statistic)


# -- the pure pieces -------------------------------------------------------------------


def test_ranks_share_ties():
    assert rank_correlation.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0] == _ranks([3, 1, 3, 2])


def test_spearman():
    assert rank_correlation.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation.spearman([1, 2, 3, 4], [0.4, 0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    assert rank_correlation.spearman([1, 2, 3], [5, 5, 5]) is None  # a variable that does not vary
    assert rank_correlation.spearman([1], [2]) is None
    x, y = [300, 58, 89, 300, 120, 40, 75], [0.12, 0.01, 0.05, 0.09, 0.02, -0.03, 0.05]
    assert rank_correlation.spearman(x, y) == pytest.approx(_spearman(x, y))


def test_permutation_p():
    # 3 points in order: 2 of the 6 orderings reach |rho| = 1
    assert rank_correlation.permutation_p([1, 2, 3], [1, 2, 3]) == pytest.approx(2 / 6)
    assert rank_correlation.permutation_p(list(range(10)), list(range(10))) is None  # too many orderings


def test_gt_gain_is_last_validation_minus_first():
    rows = [{"step": 1, "val_accuracy": 0.25, "val_greedy_accuracy": 0.4},
            {"step": 2}, {"step": 3, "val_accuracy": 0.5, "val_greedy_accuracy": 0.3},
            {"step": 4}]
    gain = zoo.gt_gain(rows)
    assert gain["gt_gain"] == pytest.approx(0.25)
    assert gain["gt_greedy_gain"] == pytest.approx(-0.1)
    assert gain["evaluated_at"] == [1, 3]
    with pytest.raises(LabError):
        zoo.gt_gain(rows[:2])


def test_default_zoo_is_chosen_on_the_prior():
    members = zoo.PRESETS["default"]["members"]
    assert len(members) >= 6 and len({m.name for m in members}) == len(members)
    assert {"wrong_below", "answer_noise", "sft_steps"} <= {k for m in members for k in m.prior}
    # every run has its final validation after a whole number of evaluation periods
    for preset in zoo.PRESETS.values():
        assert (preset["steps"] - 1) % preset["eval_every"] == 0


def test_capacity_zoo_varies_size_and_budget_only():
    preset = zoo.PRESETS["capacity"]
    members = preset["members"]
    assert len(preset["seeds"]) >= 3 and len({m.name for m in members}) == len(members)
    specs = [organism.make_spec("default", **m.prior) for m in members]
    # the study's axis: width/depth and the supervised budget, nothing about confidence
    assert {k for m in members for k in m.prior} <= {"hidden_size", "layers",
                                                     "intermediate_size", "sft_steps"}
    assert len({(s.hidden_size, s.layers) for s in specs}) >= 4
    assert len({s.sft_steps for s in specs}) >= 3
    assert {s.wrong_below for s in specs} == {organism.make_spec("default").wrong_below}


def _seed_zoo(seed: int, steps: list[float], gains: list[float]) -> dict:
    models = [{"name": f"p{i}", "prior": {}, "varies": "", "spec": {}, "prior_evaluation": {},
               "collapse_step": s, "collapsed": s < 301, "gt_gain": g,
               "initial_val_accuracy": 0.2, "final_val_accuracy": 0.2 + g,
               "tokens_collapse_step": 100 * (i + 1), "tokens_gt_gain": 1000}
              for i, (s, g) in enumerate(zip(steps, gains, strict=True))]
    return zoo.summarise(models, {"preset": "x", "model": "organism", "seed": seed,
                                  "max_steps": 301})


def test_over_seeds_ranks_the_means_and_resamples_seeds():
    runs = [_seed_zoo(0, [40, 80, 120, 301], [0.10, 0.05, 0.20, 0.30]),
            _seed_zoo(1, [90, 70, 150, 200], [0.12, 0.09, 0.10, 0.26]),
            _seed_zoo(2, [50, 90, 100, 250], [0.05, 0.07, 0.18, 0.20])]
    result = zoo.over_seeds(runs)
    assert result["seeds"] == [0, 1, 2]
    means = [sum(r["models"][i]["collapse_step"] for r in runs) / 3 for i in range(4)]
    gains = [sum(r["models"][i]["gt_gain"] for r in runs) / 3 for i in range(4)]
    assert [m["collapse_step"] for m in result["models"]] == pytest.approx(means, abs=0.01)
    assert [m["gt_gain"] for m in result["models"]] == pytest.approx(gains, abs=1e-6)
    assert result["spearman"] == pytest.approx(_spearman(means, gains), abs=1e-6)
    assert [r["spearman"] for r in result["per_seed"]] == [r["spearman"] for r in runs]
    # p0 collapsed on every seed; p3 never did on seed 0
    assert result["never_collapsed"] == ["p3"] and result["models"][0]["collapsed"]
    assert result["tokens_collapse_step"] == 3 * (100 + 200 + 300 + 400)
    low, high = result["spearman_interval"]
    assert -1 <= low <= high <= 1
    # the interval is the spread of rho over resampled seeds: it holds each seed's own
    # rho when every draw takes one seed three times (those draws are among the 2,000)
    assert low <= min(r["spearman"] for r in runs) and high >= max(r["spearman"] for r in runs)
    # two seeds: a draw is seed 0 twice, seed 1 twice (a quarter each) or one of each, so
    # the interval runs from the least to the most of those three rhos
    two = zoo.over_seeds(runs[:2])
    rhos = [runs[0]["spearman"], runs[1]["spearman"], two["spearman"]]
    assert two["spearman_interval"] == pytest.approx([min(rhos), max(rhos)], abs=1e-4)
    # seeds in agreement give an interval that is a point
    same = zoo.over_seeds([_seed_zoo(s, [1, 2, 3], [0.1, 0.2, 0.3]) for s in range(3)])
    assert same["spearman"] == pytest.approx(1.0) and same["spearman_interval"] == [1.0, 1.0]
    with pytest.raises(LabError, match="different priors"):
        zoo.over_seeds([runs[0], _seed_zoo(1, [1, 2], [0.1, 0.2])])


# -- end to end ------------------------------------------------------------------------


def check_against_runs(out: Path, members) -> dict:
    """zoo.json's figures, each recomputed from the run folders it names."""
    result = json.loads((out / "zoo.json").read_text())
    assert [m["name"] for m in result["models"]] == [m.name for m in members]
    max_steps = result["max_steps"]
    for entry, member in zip(result["models"], members, strict=True):
        assert {"name", "prior", "collapse_step", "gt_gain", "tokens_collapse_step",
                "tokens_gt_gain"} <= set(entry)
        assert entry["prior"] == member.prior
        folder = out / "priors" / member.name
        # the collapse step: the label-free rule on the collapse run's own statistics
        rows = _rows(folder / "collapse" / "run")
        fired = collapse_rules.label_free(rows, w=collapse_rules.window(max_steps))
        if fired is None:  # never collapsed: it ran every step and counts as max_steps
            assert not entry["collapsed"] and len(rows) == max_steps
            assert entry["collapse_step"] == max_steps
        else:  # it stopped where the rule fired
            assert entry["collapsed"] and entry["collapse_step"] == fired.step == len(rows)
        assert all(r.get("val_accuracy") is None for r in rows)  # no labels read
        assert entry["tokens_collapse_step"] == sum(r["tokens"] for r in rows)
        collapse_config = yaml.safe_load((folder / "collapse" / "run" / "config.yaml").read_text())
        assert collapse_config["reward"] == "majority_vote"
        assert collapse_config["collapse_signal"] == "label_free"
        # the GT gain: the GT run's last validation accuracy minus its first
        rows = _rows(folder / "gt")
        evals = [r["val_accuracy"] for r in rows if r.get("val_accuracy") is not None]
        assert len(rows) == result["gt_steps"] and len(evals) >= 2
        assert entry["gt_gain"] == pytest.approx(evals[-1] - evals[0], abs=1e-9)
        assert entry["tokens_gt_gain"] == sum(r["tokens"] for r in rows)
        gt_config = yaml.safe_load((folder / "gt" / "config.yaml").read_text())
        assert gt_config["reward"] == "ground_truth" and gt_config["steps"] == max_steps
        # both runs trained the member's prior (the same spec, so the same cached folder)
        base = organism.parse_organism(result["model"])
        key = organism.make_spec(base, **member.prior).key()
        for config in (gt_config, collapse_config):
            assert organism.make_spec(base, **config["prior"]).key() == key
    steps = [float(m["collapse_step"]) for m in result["models"]]
    gains = [m["gt_gain"] for m in result["models"]]
    if result["spearman"] is None:
        assert len(set(steps)) == 1 or len(set(gains)) == 1
    else:
        assert result["spearman"] == pytest.approx(_spearman(steps, gains), abs=1e-6)
    ratio = (sum(m["tokens_gt_gain"] for m in result["models"])
             / sum(m["tokens_collapse_step"] for m in result["models"]))
    assert result["token_ratio"] == pytest.approx(ratio)
    return result


@pytest.mark.slow
def test_zoo_smoke_end_to_end(tmp_path):
    out = tmp_path / "zoo"
    proc = _assay("zoo", "--preset", "smoke", "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = check_against_runs(out, zoo.PRESETS["smoke"]["members"])
    assert (out / "zoo.png").stat().st_size > 0 and (out / "report.html").exists()
    assert "Spearman" in proc.stdout

    # a second run reads the built priors and finished runs back: nothing trains again
    before = {p: p.stat().st_mtime_ns for p in out.glob("priors/*/*/**/metrics.jsonl")}
    again = _assay("zoo", "--preset", "smoke", "--quiet", "--priors", "2", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert before and all(p.stat().st_mtime_ns == t for p, t in before.items())
    second = json.loads((out / "zoo.json").read_text())
    assert second["models"] == result["models"][:2]

    # `assay report` re-renders the zoo from zoo.json alone
    (out / "report.html").unlink()
    proc = _assay("report", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.html").exists()


@pytest.mark.slow
def test_zoo_over_two_seeds_end_to_end(tmp_path):
    out = tmp_path / "zoo"
    members = zoo.PRESETS["smoke"]["members"][:2]
    # seed 1 run alone into its place first (as side-by-side processes would), then both
    alone = _assay("zoo", "--preset", "smoke", "--quiet", "--priors", "2", "--seeds", "1",
                   "--out", str(out / "seed-1"))
    assert alone.returncode == 0, alone.stderr
    before = {p: p.stat().st_mtime_ns for p in (out / "seed-1").glob("priors/*/*/**/metrics.jsonl")}
    proc = _assay("zoo", "--preset", "smoke", "--quiet", "--priors", "2", "--seeds", "0,1",
                  "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    # the gathering read seed 1's runs back and trained only seed 0's
    assert before and all(p.stat().st_mtime_ns == t for p, t in before.items())
    per_seed = [check_against_runs(out / f"seed-{s}", members) for s in (0, 1)]
    assert [r["seed"] for r in per_seed] == [0, 1]
    result = json.loads((out / "zoo.json").read_text())
    assert result["seeds"] == [0, 1] and not (out / "priors").exists()
    for i, entry in enumerate(result["models"]):
        assert entry["gt_gains"] == [r["models"][i]["gt_gain"] for r in per_seed]
        assert entry["collapse_steps"] == [r["models"][i]["collapse_step"] for r in per_seed]
    assert "Each seed alone gave rho" in proc.stdout and (out / "report.html").exists()


@pytest.mark.parametrize("args, words", [
    (["--seeds", "0,0"], ["--seeds", "distinct"]),
    (["--seeds", "a"], ["--seeds", "expected seeds"]),
    (["--priors", "1"], ["--priors", "at least", "2"]),
    (["--priors", "99"], ["--priors", "between"]),
    (["--preset", "huge"], ["unknown preset", "smoke"]),
])
def test_bad_input_is_one_line_before_anything_trains(tmp_path, args, words):
    out = tmp_path / "z"
    proc = _assay("zoo", *args, "--quiet", "--out", str(out), timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), proc.stderr
    assert not out.exists()


def test_a_folder_made_otherwise_is_refused(tmp_path):
    out = tmp_path / "z"
    member = zoo.PRESETS["smoke"]["members"][0]
    (out / "priors" / member.name).mkdir(parents=True)
    (out / "priors" / member.name / "member.json").write_text('{"seed": 7}')
    proc = _assay("zoo", "--preset", "smoke", "--quiet", "--out", str(out), timeout=120)
    assert proc.returncode == 2
    assert "other settings" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (out / "priors" / member.name / "collapse").exists()
