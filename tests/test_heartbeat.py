"""Progress without a terminal (issue 24): a line at least every ASSAY_PROGRESS_EVERY
seconds on stderr when it is not a terminal, saying what, how far and how long is left."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from assay.heartbeat import clock, heartbeat  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_a_bar_that_cannot_draw_prints_lines_with_how_far_and_how_long(monkeypatch, capsys):
    monkeypatch.setenv("ASSAY_PROGRESS_EVERY", "0.1")
    bar = Progress(console=Console(stderr=True, force_terminal=False))
    with bar, heartbeat(bar, "building"):
        task = bar.add_task("x", total=4, loss=0.5)
        bar.update(task, completed=1)
        time.sleep(0.45)
    lines = [line for line in capsys.readouterr().err.splitlines() if "building" in line]
    assert len(lines) >= 3, lines
    assert re.search(r"building: 1/4 \(25%\) loss 0\.5; \d+ s in", lines[-1]), lines[-1]


def test_on_a_terminal_or_when_quiet_it_prints_nothing(monkeypatch, capsys):
    monkeypatch.setenv("ASSAY_PROGRESS_EVERY", "0.05")
    for bar in (Progress(console=Console(stderr=True, force_terminal=True)),
                Progress(console=Console(stderr=True, force_terminal=False), disable=True)):
        with heartbeat(bar, "quiet-or-drawn"):
            bar.add_task("x", total=2)
            time.sleep(0.2)
    assert "quiet-or-drawn" not in capsys.readouterr().err


def test_clock():
    assert [clock(s) for s in (5, 65, 3725)] == ["5 s", "1 min 05 s", "1 h 02 min"]


def test_assay_train_in_a_log_prints_progress_lines(tmp_path):
    """The CLI end to end, stderr a pipe (as under CI or nohup)."""
    env = {**os.environ, "ASSAY_PROGRESS_EVERY": "0.2", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "assay.cli", "train", "--model", "organism:tiny", "--steps", "6",
         "--set", "prompts_per_step=2", "--set", "group_size=2", "--set", "val_size=4",
         "--set", "val_samples=1", "--set", "train_size=16", "--set", "eval_every=3",
         "--out", str(tmp_path / "run")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "] train: " in line]
    assert lines, proc.stderr
    assert re.search(r"train: \d/6 \(\d+%\)", lines[-1]), lines[-1]
    # the last line says where it ended, whole; rich's bar, squeezed to 80 columns in a log
    # ("t… reward 0.000 ... (ve…"), is not drawn at all
    assert re.search(r"train: 6/6 \(100%\) reward [\d.]+ .* \(verify [\d.]+s\); ", lines[-1]), lines[-1]
    assert "…" not in proc.stderr, proc.stderr


def test_the_compare_board_says_runs_done_running_and_time_left(tmp_path):
    from types import SimpleNamespace

    from assay.lab.display import Board

    jobs = [SimpleNamespace(key=f"r#{i}", reward="r", seed=i, out=tmp_path / str(i),
                            config=SimpleNamespace(steps=4)) for i in range(3)]
    for job, step in zip(jobs, (4, 2, 0), strict=True):
        job.out.mkdir()
        rows = "".join(f'{{"step": {s}, "reward": 0.5}}\n' for s in range(1, step + 1))
        (job.out / "metrics.jsonl").write_text(rows)
    board = Board(jobs)
    board.status.update({"r#0": "done 3s", "r#1": "running", "r#2": "queued"})
    board.started -= 60
    line = board.describe()
    assert line.startswith("compare: 1/3 runs done; running r seed 1 step 2/4; 1 min 00 s in")
    assert "about 1 min 00 s left" in line  # 6 of 12 steps in 60 s
