"""`assay collapse-step` and the label-free collapse rule the trainer stops at."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import forked_cli
import pytest
from conftest import ASSAY

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.training import collapse_rules  # noqa: E402
from assay.training.diagnostics import CollapseDetector  # noqa: E402


def _rows(n: int, drop_at: int) -> list[dict]:
    """Entropy 1.0, falling to 0.1 from `drop_at` on; length and repetition steady."""
    return [{"step": s, "entropy": 1.0 if s < drop_at else 0.1, "completion_length": 6.0,
             "repetition_rate": 0.0} for s in range(1, n + 1)]


def test_the_detector_stops_where_the_finished_run_says():
    """Watching a run step by step names the step the rule names on the whole run."""
    rows = _rows(100, drop_at=40)
    w = collapse_rules.window(100)
    detector = CollapseDetector("label_free", window=w)
    fired_at = None
    for row in rows:
        if detector.update(row["step"], row) is not None:
            fired_at = row["step"]
            break
    offline = collapse_rules.label_free(rows, w=w)
    assert offline is not None and offline.signal == "entropy"
    assert detector.collapse.step == offline.step == fired_at
    # the trailing mean of 10 steps crosses 25% of the start once 9 low steps are in
    assert 40 < fired_at < 50
    assert "label-free" in detector.collapse.describe()


def test_steady_statistics_never_fire():
    detector = CollapseDetector("label_free", window=10)
    for row in _rows(200, drop_at=10_000):
        assert detector.update(row["step"], row) is None


@pytest.mark.slow
def test_collapse_step_end_to_end(tmp_path):
    out = tmp_path / "cs"
    proc = forked_cli.run(
        ["collapse-step", "--preset", "smoke", "--quiet", "--out", str(out)], timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "collapse_step.json").read_text())
    assert {"model", "collapse_step", "criterion", "tokens"} <= set(result)
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    offline = collapse_rules.label_free(rows, w=collapse_rules.window(40))
    if result["collapse_step"] is None:  # no collapse: it ran to the end, and the rule agrees
        assert len(rows) == 40 and offline is None and result["criterion"] is None
    else:  # it stopped at the step, which the rule names on the rows, without labels
        assert len(rows) == result["collapse_step"] == offline.step
        assert offline.signal in result["criterion"]
    assert result["tokens"] == sum(r["tokens"] for r in rows)
    config = (out / "run" / "config.yaml").read_text()
    assert "collapse_signal: label_free" in config
    assert "model: organism:tiny" in config and "prompts_per_step: 8" in config  # the preset
    # the report: the step in words and a plot, re-rendered by `assay report` from the JSON
    page = (out / "report.html").read_text()
    step = result["collapse_step"]
    assert (f"at step {step} " if step is not None else "did not collapse") in page
    assert "data:image/png;base64," in page
    (out / "report.html").unlink()
    again = forked_cli.run(["report", str(out)], timeout=120)
    assert again.returncode == 0, again.stderr
    assert (out / "report.html").exists() and "Model Collapse Step" in again.stdout
    # the lab's report on the run folder names the step it stopped at (with the window the
    # trainer watched with, not one of the rows it stopped with: it said 29 for 30)
    import shutil

    wrap = tmp_path / "wrap"
    shutil.copytree(out / "run", wrap / "run")
    reported = forked_cli.run(["report", str(wrap)], timeout=120)
    assert reported.returncode == 0, reported.stderr
    entry = next(iter(json.loads((wrap / "summary.json").read_text())["runs"].values()))
    assert entry["collapse_steps"]["label_free"] == result["collapse_step"]
    # the same command again reads the finished run back (it was refused: "already holds a run")
    rerun = forked_cli.run(["collapse-step", "--preset", "smoke", "--quiet", "--out", str(out)], timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((out / "collapse_step.json").read_text()) == result


@pytest.mark.slow
def test_an_interrupted_collapse_step_goes_on_with_the_same_command(tmp_path):
    """Ctrl-C, then the command again: the run is continued and the result written (the hint
    was `assay train --resume`, which never wrote collapse_step.json)."""
    import signal
    import time

    out = tmp_path / "cs"
    # 8 steps, not the preset's 40: what is tested is the going on, not the collapse
    args = [ASSAY, "collapse-step", "--preset", "smoke", "--quiet", "--out", str(out),
            "--max-steps", "8", "--set", "save_every=2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "run" / "checkpoints").is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    if proc.returncode == 130:
        assert "run the same command again" in err and "--resume" not in err, err
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert (out / "collapse_step.json").is_file() and (out / "report.html").is_file()
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) <= 8


def test_a_reward_that_needs_labels_is_refused(tmp_path):
    proc = forked_cli.run(["collapse-step", "--reward", "verifier", "--out",
                           str(tmp_path / "x")], timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "external" in lines[0] and "intrinsic" in lines[0]
    assert not (tmp_path / "x").exists()


def test_an_unknown_preset_is_one_line(tmp_path):
    proc = forked_cli.run(["collapse-step", "--preset", "huge", "--out", str(tmp_path / "x")], timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown preset 'huge'" in lines[0] and "smoke" in lines[0]
    assert not (tmp_path / "x").exists()
