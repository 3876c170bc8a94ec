"""`assay detector-eval`: the collapse criteria scored as detectors on labelled runs, the
majority-ratio candidate's threshold chosen on one set of seeds and reported on another."""

from __future__ import annotations

import json
from pathlib import Path

import forked_cli
import numpy as np
import pytest
import yaml

from assay.lab import detector_eval
from assay.lab.summary import Run

TASKS = np.random.default_rng(0).choice([0.1, 0.4, 0.7], size=120)  # (T,)


def metrics(shift: list[float], *, collapse_at: int | None, majority: float = 0.4,
            late_majority: float = 0.95) -> list[dict]:
    """100 steps, a validation every 10 (per-task figures: TASKS + shift[i] on every task);
    entropy falls to a tenth at `collapse_at` (the label-free rule fires), the majority
    ratio jumps to 0.95 there."""
    rows = []
    for step in range(1, 101):
        late = collapse_at is not None and step >= collapse_at
        row = {"step": step, "entropy": 0.1 if late else 1.0, "completion_length": 6.0,
               "repetition_rate": 0.0, "reward_accuracy": 0.5, "reward_precision": 0.5,
               "majority_ratio": late_majority if late else majority}
        if (step - 1) % 10 == 0:
            tasks = np.clip(TASKS + shift[(step - 1) // 10], 0, 1)
            row.update(val_accuracy=float(tasks.mean()), val_greedy_accuracy=float(tasks.mean()),
                       val_task_accuracy=[float(x) for x in tasks],
                       val_task_greedy=[int(x > 0.5) for x in tasks])
        rows.append(row)
    return rows


RISE_FALL = [0.0, 0.02, 0.04, 0.04, 0.0, -0.05, -0.1, -0.1, -0.1, -0.1]  # below the start at 51
RISING = [0.01 * i for i in range(10)]


def runs(seed: int) -> list[Run]:
    return [
        Run(Path(f"/x/collapsed-{seed}"), {"reward": "majority_vote", "seed": seed},
            metrics(RISE_FALL, collapse_at=40)),
        Run(Path(f"/x/missed-{seed}"), {"reward": "self_certainty", "seed": seed},
            metrics(RISE_FALL, collapse_at=None)),
        Run(Path(f"/x/healthy-{seed}"), {"reward": "verifier", "seed": seed},
            metrics(RISING, collapse_at=None)),
        Run(Path(f"/x/alarm-{seed}"), {"reward": "verifier", "seed": seed},
            metrics(RISING, collapse_at=None, majority=0.8)),
    ]


def test_labels_from_the_paired_interval():
    declined, improved = runs(0)[0], runs(0)[2]
    from assay.lab.summary import summarize

    assert detector_eval.label(summarize(declined.rows)) == "declined"
    assert detector_eval.label(summarize(improved.rows)) == "improved"
    flat = Run(Path("/x/flat"), {"seed": 0}, metrics([0.0] * 10, collapse_at=None))
    assert detector_eval.label(summarize(flat.rows)) == "within noise"
    assert detector_eval.label({"intervals": None}) is None
    assert detector_eval.fall_step(declined.rows) == 51  # the first validation below the start


def test_detection_false_alarms_and_lead_time_per_criterion():
    result = detector_eval.evaluate(runs(0) + runs(1) + runs(3), [0, 1], [3])
    rows = {r["criterion"]: r for r in result["reported_on"]}
    label_free = rows["label_free"]
    assert (label_free["detected"], label_free["declined"]) == (1, 2)
    assert label_free["detection_rate"] == 0.5
    assert (label_free["false_alarms"], label_free["improved"]) == (0, 2)
    # the entropy floor needs a trailing window below it: it fires after step 40, before 51
    assert 0 < label_free["lead_median"] <= 11
    assert result["labels"]["reported_on"] == {"declined": 2, "improved": 2, "within noise": 0}
    # the candidate's threshold is chosen on seeds 0 and 1: above the alarm run's 0.8
    assert result["majority_threshold"] > 0.8
    candidate = next(r for r in result["reported_on"] if r["criterion"].startswith("majority_ratio"))
    assert candidate["false_alarms"] == 0 and candidate["detected"] == 1
    text = detector_eval.render(result)
    assert "| label_free | 1 / 2 | 0.50 | 0 / 2 | 0.00 |" in text


def test_the_threshold_comes_from_the_choose_seeds_only():
    def pair(seed: int, late: float, alarm: float) -> list[Run]:
        return [Run(Path(f"/x/c{seed}"), {"seed": seed},
                    metrics(RISE_FALL, collapse_at=40, late_majority=late)),
                Run(Path(f"/x/a{seed}"), {"seed": seed}, metrics(RISING, collapse_at=None, majority=alarm))]

    # chosen on seed 0: declines reach 0.8, an improving run sits at 0.6 -> 0.8 (ties: higher);
    # seed 1 alone would choose 0.9 or more
    result = detector_eval.evaluate(pair(0, 0.8, 0.6) + pair(1, 0.95, 0.85), [0], [1])
    assert result["majority_threshold"] == 0.8
    candidate = next(r for r in result["reported_on"] if r["criterion"].startswith("majority_ratio"))
    assert (candidate["detected"], candidate["false_alarms"]) == (1, 1)  # 0.85 >= 0.8: an alarm


def test_a_seed_both_chosen_on_and_reported_on_is_refused():
    with pytest.raises(ValueError, match=r"seeds \[1\] are both chosen on and reported on"):
        detector_eval.evaluate(runs(1), [0, 1], [1, 2])


def test_the_command_reads_run_folders_and_writes_its_table(tmp_path):
    for run in runs(0) + runs(3):
        folder = tmp_path / run.path.name
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump(run.config))
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in run.rows))
    out = tmp_path / "detector.json"
    proc = forked_cli.run(["detector-eval", str(tmp_path), "--choose-seeds", "0",
                           "--report-seeds", "3", "--json", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| label_free | 1 / 2 |" in proc.stdout
    assert json.loads(out.read_text())["report_seeds"] == [3]
    bad = forked_cli.run(["detector-eval", str(tmp_path), "--choose-seeds", "0,x"], timeout=300)
    assert bad.returncode == 2 and "--choose-seeds: expected seeds" in bad.stderr
    assert bad.stderr.count("\n") <= 2


def test_the_majority_rule_fires_at_its_threshold_not_only_above_it():
    from assay.lab import collapse

    rows = [{"step": s, "majority_ratio": 0.25 if s < 5 else 0.5} for s in range(1, 9)]
    assert collapse.at_or_above(rows, "majority_ratio", 0.5).step == 5  # exactly 0.5 counts
    assert collapse.at_or_above(rows, "majority_ratio", 0.75) is None
    assert collapse.below(rows, "majority_ratio", 0.5).step == 1


def _write(root: Path, items: list[Run]) -> None:
    for run in items:
        folder = root / run.path.name
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(run.config))
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in run.rows))


def test_a_run_reached_twice_counts_once(tmp_path, monkeypatch):
    """Folders that overlap (the same folder twice, a folder and one inside it, one folder
    under two names) give each run folder once, by its resolved path."""
    from assay.lab.summary import find_runs

    _write(tmp_path / "runs", runs(0) + runs(3))
    monkeypatch.chdir(tmp_path)
    once = detector_eval.evaluate(find_runs("runs"), [0], [3])
    for folders in (["runs", "runs", "./runs"], ["runs", "runs/collapsed-3"],
                    ["runs/collapsed-3", "runs/collapsed-3", str(tmp_path / "runs")]):
        gathered = [run for folder in folders for run in find_runs(folder)]
        assert len(gathered) > 8  # the same run, more than once
        again = detector_eval.evaluate(gathered, [0], [3])
        assert again["labels"] == once["labels"], folders
        assert again["reported_on"] == once["reported_on"], folders
    assert once["labels"]["reported_on"] == {"declined": 2, "improved": 2, "within noise": 0}
    # through the command line: the table of `runs runs/x ./runs` is the table of `runs`
    plain = forked_cli.run(["detector-eval", "runs", "--choose-seeds", "0",
                            "--report-seeds", "3"], timeout=300)
    overlapping = forked_cli.run(["detector-eval", "runs", "runs/collapsed-3", "./runs",
                                  "--choose-seeds", "0", "--report-seeds", "3"], timeout=300)
    assert plain.returncode == overlapping.returncode == 0, overlapping.stderr
    assert overlapping.stdout == plain.stdout


@pytest.mark.parametrize("choose, report, words", [
    ([0, 0], [3], "--choose-seeds: seed 0 is listed twice"),
    ([0], [3, 3], "--report-seeds: seed 3 is listed twice"),
    ([-1], [3], "--choose-seeds: seeds are whole numbers from 0, got -1"),
    ([0], [-3, 3], "--report-seeds: seeds are whole numbers from 0, got -3"),
    ([0], [4, 5], "--report-seeds 4,5: no run has any of those seeds"),
    ([7], [3], "--choose-seeds 7: no run has that seed"),
])
def test_bad_seed_sets_are_refused_in_one_line(choose, report, words):
    with pytest.raises(ValueError, match=words) as caught:
        detector_eval.evaluate(runs(0) + runs(3), choose, report)
    assert "\n" not in str(caught.value)


def test_report_seeds_whose_runs_cannot_be_labelled_are_refused():
    """Runs of the report seeds without per-task figures: no run to score either."""
    bare = [Run(r.path, r.config, [{k: v for k, v in row.items() if not k.startswith("val_task")}
                                   for row in r.rows]) for r in runs(3)]
    with pytest.raises(ValueError, match="--report-seeds 3: no run of that seed has per-task"):
        detector_eval.evaluate(runs(0) + bare, [0], [3])


def test_the_command_refuses_seeds_no_run_has(tmp_path):
    """Every run is seed 0 and the report seeds are the default 3,4: not an all-zero table
    with exit 0, but one line and exit 2; likewise a seed list with a seed twice or below 0."""
    _write(tmp_path, runs(0))
    for args, words in ((["--choose-seeds", "1"], "--report-seeds 3,4: no run has"),
                        (["--choose-seeds", "0,0"], "seed 0 is listed twice"),
                        (["--choose-seeds", "0", "--report-seeds", "-1"],
                         "whole numbers from 0, got -1")):
        proc = forked_cli.run(["detector-eval", str(tmp_path), *args], timeout=300)
        assert proc.returncode == 2, (args, proc.stdout)
        assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "|" not in proc.stdout


def test_no_threshold_is_chosen_on_runs_all_within_noise():
    """Every threshold scores alike there; the grid's tie-break (0.95) passed for a choice."""
    flat = [Run(Path(f"/x/flat{i}"), {"seed": 0}, metrics([0.0] * 10, collapse_at=None)) for i in range(2)]
    result = detector_eval.evaluate(flat + runs(3), [0], [3])
    assert result["labels"]["chosen_on"] == {"declined": 0, "improved": 0, "within noise": 2}
    assert result["majority_threshold"] is None
    assert not any(r["criterion"].startswith("majority_ratio") for r in result["reported_on"])
    assert "No majority-ratio threshold was chosen" in detector_eval.render(result)


def test_a_run_without_per_task_figures_is_left_out_and_named():
    bare = metrics(RISE_FALL, collapse_at=40)
    for row in bare:
        row.pop("val_task_accuracy", None)
        row.pop("val_task_greedy", None)
    result = detector_eval.evaluate(runs(0) + runs(3) + [Run(Path("/x/bare"), {"seed": 3}, bare)], [0], [3])
    assert result["unlabelled"] == ["/x/bare"]
    assert sum(result["labels"]["reported_on"].values()) == len(runs(3))
    assert "Left out (no per-task validation figures): 1 runs." in detector_eval.render(result)


def test_a_seed_no_run_has_is_named_with_the_seeds_there_are():
    ten = [Run(Path(f"/x/s{s}"), {"seed": s}, metrics(RISING, collapse_at=None)) for s in range(10)]
    with pytest.raises(ValueError) as err:
        detector_eval.evaluate(ten, [0], [11])
    assert str(err.value).endswith("(the runs' seeds: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)"), err.value
    eleven = ten + [Run(Path("/x/s10"), {"seed": 10}, metrics(RISING, collapse_at=None))]
    with pytest.raises(ValueError, match=r", \.\.\.\)$"):  # more than ten: the first ten, then ...
        detector_eval.evaluate(eleven, [0], [11])
