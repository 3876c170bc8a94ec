"""`assay zoo`: zoo.json's figures are the run folders' figures, recomputed here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay import organism  # noqa: E402
from assay.lab import zoo  # noqa: E402
from assay.training import collapse_rules  # noqa: E402

ASSAY = str(Path(sys.executable).parent / "assay")


def _assay(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([ASSAY, *args], capture_output=True, text=True, timeout=timeout)


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
    assert zoo.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0] == _ranks([3, 1, 3, 2])


def test_spearman():
    assert zoo.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert zoo.spearman([1, 2, 3, 4], [0.4, 0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    assert zoo.spearman([1, 2, 3], [5, 5, 5]) is None  # a variable that does not vary
    assert zoo.spearman([1], [2]) is None
    x, y = [300, 58, 89, 300, 120, 40, 75], [0.12, 0.01, 0.05, 0.09, 0.02, -0.03, 0.05]
    assert zoo.spearman(x, y) == pytest.approx(_spearman(x, y))


def test_permutation_p():
    # 3 points in order: 2 of the 6 orderings reach |rho| = 1
    assert zoo.permutation_p([1, 2, 3], [1, 2, 3]) == pytest.approx(2 / 6)
    assert zoo.permutation_p(list(range(10)), list(range(10))) is None  # too many orderings


def test_gt_gain_is_last_validation_minus_first():
    rows = [{"step": 1, "val_accuracy": 0.25, "val_greedy_accuracy": 0.4},
            {"step": 2}, {"step": 3, "val_accuracy": 0.5, "val_greedy_accuracy": 0.3},
            {"step": 4}]
    gain = zoo.gt_gain(rows)
    assert gain["gt_gain"] == pytest.approx(0.25)
    assert gain["gt_greedy_gain"] == pytest.approx(-0.1)
    assert gain["evaluated_at"] == [1, 3]
    with pytest.raises(zoo.ZooError):
        zoo.gt_gain(rows[:2])


def test_default_zoo_is_chosen_on_the_prior():
    members = zoo.PRESETS["default"]["members"]
    assert len(members) >= 6 and len({m.name for m in members}) == len(members)
    assert {"wrong_below", "answer_noise", "sft_steps"} <= {k for m in members for k in m.prior}
    # every run has its final validation after a whole number of evaluation periods
    for preset in zoo.PRESETS.values():
        assert (preset["steps"] - 1) % preset["eval_every"] == 0


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


@pytest.mark.parametrize("args, words", [
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
