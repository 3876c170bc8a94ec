"""Intervals on a run's validation figures: paired bootstrap over the same tasks, the peak
chosen again in each resample, the mean over seeds, and the verdicts ("kept improving",
"declined", "within noise", ...) read from those intervals instead of a fixed 0.05."""

from __future__ import annotations

import numpy as np
import pytest

from assay.lab import failure
from assay.lab.intervals import curve_replicates, over_seeds, percentile_interval
from assay.lab.report import reading_text, trend
from assay.lab.summary import ReportError, build_summary, check_row, summarize
from assay.lab.summary import Run as LabRun


def run_rows(curve: list[np.ndarray], greedy: list[np.ndarray] | None = None) -> list[dict]:
    """Metrics rows with one validation per entry of `curve` (per-task accuracies)."""
    rows = []
    for i, tasks in enumerate(curve):
        g = greedy[i] if greedy is not None else (tasks > 0.5).astype(int)
        rows.append({
            "step": 1 + 10 * i, "entropy": 1.0, "completion_length": 6.0,
            "val_accuracy": float(np.mean(tasks)), "val_greedy_accuracy": float(np.mean(g)),
            "val_task_accuracy": [float(x) for x in tasks], "val_task_greedy": [int(x) for x in g],
        })
    return rows


def spread_tasks(n: int = 200, seed: int = 0) -> np.ndarray:
    """Per-task accuracies that differ a lot between tasks (easy and hard ones)."""
    return np.random.default_rng(seed).choice([0.05, 0.3, 0.6, 0.9], size=n)


def test_a_small_change_on_every_task_is_real_when_paired():
    start = spread_tasks()
    reps = curve_replicates(np.stack([start, start + 0.03]), None)
    low, high = percentile_interval(reps["change"])
    assert 0.029 <= low <= high <= 0.031  # the same tasks at both ends: no task noise left
    # unpaired, the same +0.03 would be lost in the spread between tasks
    s_low, s_high = percentile_interval(reps["start"])
    assert s_high - s_low > 0.08


def test_the_peak_is_chosen_again_in_every_resample():
    start = spread_tasks()
    flat = curve_replicates(np.stack([start] * 5), None)
    assert np.array_equal(flat["peak"], flat["start"])  # no step is better: the peak is the start
    # two later steps, each better on different tasks: the peak is the better one per resample
    a, b = start.copy(), start.copy()
    a[:100] += 0.05
    b[100:] += 0.05
    reps = curve_replicates(np.stack([start, a, b]), None)
    assert np.all(reps["peak"] >= np.maximum(reps["start"], reps["end"]) - 1e-12)
    # in some resamples step a is the best, in others b (the end): chosen each time
    assert 0 < np.mean(reps["peak"] > reps["end"] + 1e-12) < 1


def test_trend_reads_the_paired_interval_not_a_fixed_move():
    start = spread_tasks()
    # +0.03 on every task: below the old fixed 0.05, but certain
    steady = summarize(run_rows([start, start + 0.015, start + 0.03]))
    assert trend(steady) == "kept improving"
    # +0.055 in the mean, from tasks that all moved by 0.5 one way or the other: noise
    half = np.full(200, 0.5)
    noisy_end = half + np.where(np.arange(200) < 111, 0.5, -0.5)
    noisy = summarize(run_rows([half, noisy_end]))
    assert noisy["val_change"] == pytest.approx(0.055)  # the old fixed rule: "kept improving"
    assert noisy["intervals"]["val_change"][0] < 0 < noisy["intervals"]["val_change"][1]
    assert trend(noisy) == "within noise"
    # down on every task: declined, and the failure mode follows the interval
    down = summarize(run_rows([start, start - 0.02, start - 0.03]))
    assert trend(down) == "declined"
    assert down["failure_mode"] == "gradual"
    # up, then back to the start: rose, then fell
    back = summarize(run_rows([start, start + 0.1, start]))
    assert trend(back) == "rose, then fell"
    # up, then part of the way down: still above the start
    part = summarize(run_rows([start, start + 0.1, start + 0.05]))
    assert trend(part) == "rose, then fell back part-way"


def test_a_dip_within_noise_is_not_a_failure_but_a_real_one_is():
    start = spread_tasks()
    small = summarize(run_rows([start, start - 0.01]))
    assert small["intervals"]["val_change"][1] < 0  # every task lost 0.01: a real decline
    assert small["failure_mode"] == "gradual"
    rng = np.random.default_rng(2)
    shaken = np.clip(start + rng.normal(0, 0.3, 200), 0, 1)
    shaken += start.mean() - shaken.mean() - 0.01  # the mean falls by 0.01 only
    shaken = np.clip(shaken, 0, 1)
    noisy = summarize(run_rows([start, shaken]))
    assert noisy["intervals"]["val_change"][1] > 0
    assert noisy["failure_mode"] is None


def test_runs_without_per_task_figures_keep_the_fixed_rule():
    rows = [{"step": 1, "val_accuracy": 0.30}, {"step": 11, "val_accuracy": 0.36}]
    entry = summarize(rows)
    assert entry["intervals"] is None
    assert trend(entry) == "kept improving"  # +0.06 >= the fixed 0.05
    seeds = {"0": entry}
    text = reading_text({"runs": {"verifier": {"kind": "external", "seeds": seeds,
                                               "collapse_steps": {}, **entry}}})
    assert "judged on a fixed move of 0.05" in text and "[" not in text
    assert failure.classify([{"step": 1, "val_accuracy": 0.3}, {"step": 2, "val_accuracy": 0.2}])


def test_mean_over_seeds_carries_an_interval_over_seeds_and_tasks(tmp_path):
    start = spread_tasks()
    runs = [LabRun(tmp_path / f"s{seed}", {"reward": "verifier", "seed": seed},
                   run_rows([start, start + shift]))
            for seed, shift in ((0, 0.0), (1, 0.2))]
    summary = build_summary({"verifier": runs}, {})
    entry = summary["runs"]["verifier"]
    assert entry["val_change"] == pytest.approx(0.1)
    low, high = entry["intervals"]["val_change"]
    assert low <= 0.0 + 1e-9 and high >= 0.2 - 1e-9  # seeds that disagree widen it
    for seed in ("0", "1"):
        s_low, s_high = entry["seeds"][seed]["intervals"]["val_change"]
        assert s_high - s_low < 1e-6  # each seed alone is certain of its own change
    text = reading_text(summary)
    assert "over seeds and tasks" in text and "change +0.100" in text


def test_over_seeds_with_one_seed_is_that_seed():
    reps = np.arange(10.0)
    assert np.array_equal(over_seeds([reps]), reps)


@pytest.mark.parametrize("value, words", [
    ("0.5", "val_task_accuracy: expected a list"),
    ([0.5, 1.5], "val_task_accuracy[1]: expected a number in [0, 1], got 1.5"),
    ([0.5, None], "val_task_accuracy[1]"),
])
def test_bad_per_task_figures_name_the_line_and_the_index(value, words):
    with pytest.raises(ReportError, match=r"metrics.jsonl:3: ") as err:
        check_row({"step": 1, "val_task_accuracy": value}, "metrics.jsonl:3")
    assert words in str(err.value)


# -- the entropy-performance law --------------------------------------------------------


def law_rows(a: float, b: float, entropies: list[float], noise: float = 0.0) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"step": 1 + 10 * i, "entropy": h,
             "val_accuracy": float(-a * np.exp(h) + b + rng.normal(0, noise))}
            for i, h in enumerate(entropies)]


def test_the_law_recovers_its_parameters_and_predicts_the_ceiling_from_the_first_half():
    from assay.lab import entropy_law

    entropies = list(np.linspace(1.2, 0.05, 10))
    rows = law_rows(0.1, 0.6, entropies)
    a, b = entropy_law.fit(*entropy_law.points(rows))
    assert a == pytest.approx(0.1) and b == pytest.approx(0.6)
    law = entropy_law.predict(rows)
    assert law["fit_steps"] == 45 and law["fit_points"] == 5  # steps 1..41 of 91
    assert law["last_seen"] == pytest.approx(rows[4]["val_accuracy"])  # the naive forecast
    assert law["ceiling"] == pytest.approx(0.5)  # b - a, at H = 0
    assert law["achieved_end"] == pytest.approx(-0.1 * np.exp(0.05) + 0.6)
    assert law["error_end"] == pytest.approx(0.5 - law["achieved_end"], abs=1e-4)


def test_the_law_needs_moving_entropy_and_three_validations():
    from assay.lab import entropy_law

    assert entropy_law.predict(law_rows(0.1, 0.6, [0.5] * 10)) is None  # entropy never moved
    assert entropy_law.predict(law_rows(0.1, 0.6, [1.0, 0.5, 0.2, 0.1])) is None  # 2 in the first half
    assert entropy_law.predict([]) is None


def test_the_law_gives_no_fit_on_values_past_float_range():
    # a corrupt metrics file, as the report fuzzer wrote one: exp(H) overflows, the
    # solver would fail; the report shows no prediction rather than a traceback
    from assay.lab import entropy_law

    rows = [{"step": s, "entropy": h, "val_accuracy": acc} for s, h, acc in
            [(1, 0.5, 0.1), (3, 8.66e-123, 0.0), (6, 422.83, 0.05), (7, 8.9e15, 0.94), (16, 0.4, 0.2)]]
    assert entropy_law.predict(rows) is None
    assert entropy_law.fit(np.array([0.5, 0.4, 0.3]), np.array([0.1, float("nan"), 0.2])) is None
    assert entropy_law.fit(np.array([0.5, 800.0, 0.3]), np.array([0.1, 0.2, 0.3])) is None


def test_the_fit_reads_the_validation_on_its_last_step():
    # steps 1..40: the fit reads steps up to 20, the validation at step 20 included
    from assay.lab import entropy_law

    rows = [{"step": s, "entropy": h, "val_accuracy": -0.1 * np.exp(h) + 0.6}
            for s, h in [(1, 1.2), (10, 0.8), (20, 0.5), (30, 0.3), (40, 0.1)]]
    law = entropy_law.predict(rows)
    assert law is not None and law["fit_steps"] == 20 and law["fit_points"] == 3
