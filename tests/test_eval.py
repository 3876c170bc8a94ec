"""`assay eval`: the metrics against hand-computed values, and the command end to end (its
JSON agrees with the completions it wrote)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from itertools import combinations

import pytest
from conftest import workers_at_model_load

from assay.lab.evaluate import ks_for, majority_correct, pass_at_k
from assay.lab.intervals import bootstrap_interval, mean_with_interval

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 1, 1, 0.25),
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (4, 2, 2, 5 / 6),  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        (8, 3, 4, 1 - 5 / 70),  # 1 - C(5,4)/C(8,4)
        (4, 0, 4, 0.0),
        (4, 1, 4, 1.0),
        (5, 3, 3, 1.0),  # n - c < k: every draw holds a correct one
    ],
)

def test_pass_at_k_is_the_unbiased_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_equals_the_share_of_k_subsets_holding_a_correct_sample():
    samples = [True, False, False, True, False, False]
    for k in range(1, 7):
        subsets = list(combinations(samples, k))
        share = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(6, 2, k) == pytest.approx(share)
    assert pass_at_k(6, 2, 3) != pytest.approx(2 / 6)  # not the plain share correct


def test_pass_at_k_refuses_impossible_counts():
    for n, c, k in [(4, 5, 1), (4, 1, 5), (4, 1, 0), (4, -1, 1)]:
        with pytest.raises(ValueError, match="pass@k needs"):
            pass_at_k(n, c, k)


def test_majority_takes_the_most_frequent_answer():
    assert majority_correct(["7", "5", "7", None], [True, False, True, False]) is True
    assert majority_correct(["5", "7", "5", "7", "5"], [False, True, False, True, False]) is False
    # ties go to the answer seen first; no answer does not vote
    assert majority_correct([None, "5", "7"], [False, True, False]) is True
    assert majority_correct([None, "7", "5"], [False, False, True]) is False
    assert majority_correct([None, None, None], [False, False, False]) is False
    # three non-answers do not outvote one answer
    assert majority_correct([None, None, None, "7"], [False, False, False, True]) is True


def test_ks_are_powers_of_two_and_k():
    assert ks_for(1) == [1]
    assert ks_for(4) == [1, 2, 4]
    assert ks_for(6) == [1, 2, 4, 6]


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_tasks():
    small = [1.0, 0.0] * 10
    large = [1.0, 0.0] * 500
    low, high = bootstrap_interval(small, seed=0)
    assert low < 0.5 < high
    assert bootstrap_interval(small, seed=0) == (low, high)  # deterministic
    wide = high - low
    large_low, large_high = bootstrap_interval(large)
    narrow = large_high - large_low
    assert narrow < wide / 3  # ~1/sqrt(50) as wide
    # the binomial standard error gives ±1.96·sqrt(.25/20) ≈ ±0.22 for 20 tasks; the bootstrap moves in steps of 1/20
    assert wide == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 20), abs=0.08)  # steps of 0.05
    assert bootstrap_interval([0.3]) == (0.3, 0.3)
    assert all(math.isnan(v) for v in bootstrap_interval([]))
    assert mean_with_interval([1.0, 1.0])["low"] == 1.0


def test_eval_end_to_end_agrees_with_its_completions(assay, tmp_path):
    out = tmp_path / "eval"
    # 2 and 3 numbers: two difficulties to break the figures down by
    proc = assay("eval", "--model", "organism:tiny", "--env", "countdown", "-n", "12",
                 "--set", "min_numbers=2",
                 "--samples", "3", "--out", str(out), "--quiet", "--batch-size", "5",
                 timeout=580)  # a first prior build included
    assert proc.returncode == 0, proc.stderr
    assert "greedy accuracy" in proc.stdout and "maj@3" in proc.stdout
    result = json.loads((out / "evaluate.json").read_text())
    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 * (1 + 3)
    greedy = [r for r in rows if r["kind"] == "greedy"]
    sampled = [r for r in rows if r["kind"] == "sampled"]
    assert result["tasks"] == 12 and result["samples"] == 3
    assert result["greedy_accuracy"]["mean"] == pytest.approx(
        sum(r["status"] == "correct" for r in greedy) / 12)
    assert result["pass_at_k"]["1"]["mean"] == pytest.approx(
        sum(r["status"] == "correct" for r in sampled) / 36)
    by_task: dict[str, int] = {}
    for r in sampled:
        by_task[r["task"]] = by_task.get(r["task"], 0) + (r["status"] == "correct")
    assert result["pass_at_k"]["3"]["mean"] == pytest.approx(
        sum(c > 0 for c in by_task.values()) / 12)
    assert sum(result["verdicts"]["sampled"].values()) == 36
    # every sample the verifier judged (correct or incorrect) had an answer, and a task
    # whose 3 samples are all correct has a correct majority: both need the answer keys
    judged = sum(r["status"] in ("correct", "incorrect") for r in sampled)
    assert judged > 0 and result["answer_rate"] >= judged / 36
    all_right = sum(c == 3 for c in by_task.values())
    assert result["maj@3"]["mean"] >= all_right / 12
    assert result["verdicts"]["greedy"] == {
        s: sum(r["status"] == s for r in greedy) for s in {r["status"] for r in greedy}}
    for figure in [result["greedy_accuracy"], *result["pass_at_k"].values(), result["maj@3"]]:
        assert figure["low"] <= figure["mean"] <= figure["high"]
    assert set(result["by_difficulty"]) == {"2 numbers", "3 numbers"}
    assert sum(v["tasks"] for v in result["by_difficulty"].values()) == 12
    assert (out / "report.html").read_text().count("greedy accuracy") >= 1
    # the same tasks and seed give the same figures (batching does not change sampling
    # of greedy replies; the report re-renders from the JSON alone)
    again = assay("report", str(out))
    assert again.returncode == 0, again.stderr
    # a damaged figure is one line naming it, not a traceback or "answered 750.0%"
    for damage, said in ((7.5, "greedy_accuracy.mean: not between 0 and 1"),
                         ("high", "greedy_accuracy.mean: expected a number")):
        result["greedy_accuracy"]["mean"] = damage
        (out / "evaluate.json").write_text(json.dumps(result))
        proc = assay("report", str(out))
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_eval_usage_errors_are_one_line(assay, tmp_path):
    proc = assay("eval", "--model", "organism:tiny", "-n", "0")
    assert proc.returncode == 2 and "at least 1" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = assay("eval", "--model", str(tmp_path / "nowhere"), "-n", "2")
    assert proc.returncode == 2 and "no model folder" in proc.stderr
    proc = assay("eval", "--model", "organism:tiny", "--set", "no_such_option=1", "-n", "2")
    assert proc.returncode == 2 and "no_such_option" in proc.stderr


def test_eval_never_writes_into_a_folder_of_other_files_or_one_being_written(assay, tmp_path):
    from assay.training import folder_lock

    run = tmp_path / "run"  # a run's or a comparison's folder: its report.html was replaced
    run.mkdir()
    (run / "report.html").write_text("the comparison's report")
    (run / "summary.json").write_text("{}")
    proc = assay("eval", "--model", "organism:tiny", "-n", "2", "--samples", "1", "--out", str(run))
    assert proc.returncode == 2 and "holds other files (summary.json)" in proc.stderr, proc.stderr
    assert (run / "report.html").read_text() == "the comparison's report"
    live = tmp_path / "live"
    folder_lock.acquire(live, what="assay train")  # this process writes there
    try:
        proc = assay("eval", "--model", "organism:tiny", "-n", "2", "--samples", "1", "--out", str(live))
        assert proc.returncode == 2 and "is being written by pid" in proc.stderr, proc.stderr
    finally:
        folder_lock.release(live)
    again = tmp_path / "eval"  # its own files may be written again
    for _ in range(2):
        proc = assay("eval", "--model", "organism:tiny", "-n", "2", "--samples", "1", "--out", str(again))
        assert proc.returncode == 0, proc.stderr


def test_eval_starts_the_verification_workers_before_the_model_loads(tmp_path, random_model, monkeypatch):
    """As in training: a worker forked after the model keeps a copy of every page the
    process writes from then on."""
    import assay.envs
    from assay.lab import evaluate as evaluate_module
    from assay.training import policy

    workers_at_load = workers_at_model_load(monkeypatch, assay.envs, policy)
    result = evaluate_module.evaluate(model=str(random_model), env="math", n=2, samples=1,
                                      sets={"max_new_tokens": "4"}, quiet=True)
    assert result["tasks"] == 2
    assert workers_at_load and workers_at_load[0] >= 1, workers_at_load


@pytest.mark.parametrize("setting, said", [
    ("learning_rate=3", "an evaluation does not read it"),
    ("group_size=3", "an evaluation does not read it"),
    ("seed=3", "use --seed"),
    ("model=organism", "use --model"),
])
def test_eval_refuses_a_training_setting_it_would_ignore(assay, setting, said):
    proc = assay("eval", "--model", "organism:tiny", "-n", "2", "--set", setting)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert f"--set {setting.split('=')[0]}: a training setting; {said}" in lines[0]


def test_eval_routes_its_settings_and_env_options():
    from assay.lab.evaluate import route_sets

    assert route_sets({"temperature": "0.5", "min_numbers": "2", "env.max_value": "9",
                       "prior.sft_steps": "3"}) == {
        "temperature": "0.5", "env.min_numbers": "2", "env.max_value": "9", "prior.sft_steps": "3"}


@pytest.mark.parametrize("command", [
    ["eval", "--model", "organism:tiny", "-n", "2", "--samples", "0"],
    ["eval", "--model", "organism:tiny", "-n", "2", "--set", "no_such_option=1"],
    ["train", "--model", "organism:tiny", "--set", "no_such_option=1"],
], ids=["eval-count", "eval-option", "train-option"])
def test_a_bad_setting_is_refused_before_torch_loads(command):
    """A usage error comes at once: in under a second, not after torch's 2 s import."""
    script = (
        "import sys\n"
        "from assay.cli import main\n"
        f"sys.argv = ['assay', *{command!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    print(exit.code, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines() == ["2 False"], proc.stdout + proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and "error" in proc.stderr
