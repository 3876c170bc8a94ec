"""Fuzzing run folders with concurrency and signals: writers started together, commands
killed at random points (SIGKILL, SIGTERM, SIGINT), then resumed.

Real `assay` processes on the tiny organism (a subprocess per command: signals and locks
are between processes). Properties, for every schedule:
- a command ends with exit 0, 130 (Ctrl-C), 2 with one line (refused: the folder is being
  written, already holds a run, or holds none to resume), or by the signal sent to it;
- after the last resume, metrics.jsonl holds steps 1..N once each, in order, and the
  stored rollouts hold each step 1..N (none lost, none twice);
- no process of the schedule outlives it (workers of a killed `compare --jobs 2` included),
  found by an environment tag every process of the schedule inherits.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest
from conftest import sigint_as_at_a_terminal
from fuzz_inputs import fuzz_settings
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.training.rollout_store import read_rollouts  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STEPS = 5
TRAIN = ["train", "--model", "organism:tiny", "--quiet", "--steps", str(STEPS),
         "--set", "prompts_per_step=2", "--set", "group_size=2", "--set", "val_size=2",
         "--set", "val_samples=1", "--set", "train_size=8", "--set", "eval_every=2",
         "--set", "max_new_tokens=8", "--set", "save_every=1"]
REFUSALS = ("being written by", "already holds a run", "nothing to resume")
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}


def start(args: list[str], tag: str) -> subprocess.Popen:
    env = {**os.environ, "ASSAY_FUZZ_TAG": tag, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "assay.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_at_a_terminal)


def finish(proc: subprocess.Popen, sent: int | None = None) -> None:
    """Wait for `proc`; check that it ended in one of the allowed ways."""
    _, err = proc.communicate(timeout=900)  # a loaded machine: minutes per tiny run
    code = proc.returncode
    if sent is not None and code in (-sent, 130, 0):  # the signal, Ctrl-C, or done first
        return
    if sent == signal.SIGINT and code == 1 and interrupted_starting_python(err):
        return  # Ctrl-C while Python itself was starting: before any of assay's code ran
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and any(r in lines[0] for r in REFUSALS), err
        return
    assert code == 0, (code, err[-2000:])


def interrupted_starting_python(err: str) -> bool:
    """Whether Python itself died of Ctrl-C at start-up (it then exits 1, not by the signal):
    a fatal error of its initialisation ("Fatal Python error: init_import_site: ...") ending
    in KeyboardInterrupt. `-m assay.cli` runs only after that initialisation."""
    return err.startswith("Fatal Python error: init_") and "KeyboardInterrupt" in err


def wait_up_to(proc: subprocess.Popen, seconds: float) -> None:
    """Let `proc` run for `seconds` before it is signalled, or less if it ends first (a signal
    then finds nothing to stop: waiting on would only idle a test worker)."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass


def tagged(tag: str) -> list[psutil.Process]:
    """Live processes started by this schedule (they carry its tag in their environment)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("ASSAY_FUZZ_TAG") == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def check_nothing_left(tag: str, wait: float = 10.0) -> None:
    deadline = time.monotonic() + wait
    while (left := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for proc in left:
        proc.kill()
    assert not left, [p.cmdline() for p in left]


def check_steps(run: Path, steps: int) -> None:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    stored = sorted({r["step"] for r in read_rollouts(run / "rollouts.jsonl.gz")})
    assert stored == list(range(1, steps + 1))
    counts = [sum(1 for r in read_rollouts(run / "rollouts.jsonl.gz") if r["step"] == s)
              for s in stored]
    assert len(set(counts)) == 1, counts  # every step stored whole, none twice


schedules = st.lists(
    st.tuples(
        st.sampled_from(sorted(SIGNALS)),
        st.floats(min_value=0.0, max_value=12.0),  # seconds before the signal
        st.booleans(),  # a second writer started beside the first
    ),
    min_size=1,
    max_size=3,
)


#: a failing schedule is reported as found: shrinking one (minutes per try) is not worth it
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)


@pytest.mark.slow
@settings(fuzz_settings(share=0.1), phases=NO_SHRINK)
@given(schedule=schedules)
def test_train_killed_and_raced_then_resumed_keeps_every_step_once(schedule):
    tag = uuid.uuid4().hex
    run = Path(tempfile.mkdtemp(prefix="fuzz-run-")) / "run"
    try:
        for name, delay, racer in schedule:
            resume = ["--resume"] if (run / "config.yaml").exists() else []
            first = start([*TRAIN, "--out", str(run), *resume], tag)
            second = start([*TRAIN, "--out", str(run), *resume], tag) if racer else None
            wait_up_to(first, delay)
            first.send_signal(SIGNALS[name])
            finish(first, SIGNALS[name])
            if second is not None:
                finish(second)
        check_nothing_left(tag)
        resume = ["--resume"] if (run / "config.yaml").exists() else []
        last = start([*TRAIN, "--out", str(run), *resume], tag)
        finish(last)
        check_steps(run, STEPS)
        check_nothing_left(tag)
    finally:
        for proc in tagged(tag):
            proc.kill()
        shutil.rmtree(run.parent, ignore_errors=True)


@pytest.mark.slow
@settings(fuzz_settings(share=0.1), phases=NO_SHRINK)
@given(name=st.sampled_from(sorted(SIGNALS)), delay=st.floats(min_value=2.0, max_value=25.0))
def test_compare_killed_leaves_no_worker_and_resumes_whole(name, delay):
    tag = uuid.uuid4().hex
    out = Path(tempfile.mkdtemp(prefix="fuzz-cmp-")) / "cmp"
    args = ["compare", "--preset", "smoke", "--rewards", "verifier,random", "--steps", "4",
            "--jobs", "2", "--quiet", "--out", str(out)]
    try:
        first = start(args, tag)
        wait_up_to(first, delay)
        first.send_signal(SIGNALS[name])
        finish(first, SIGNALS[name])
        check_nothing_left(tag)  # workers included: they carry the tag too
        again = start([*args, "--resume"] if (out / "lab.json").exists() else args, tag)
        finish(again)
        for reward in ("verifier", "random"):
            check_steps(out / "runs" / f"{reward}-seed0", 4)
        check_nothing_left(tag)
    finally:
        for proc in tagged(tag):
            proc.kill()
        shutil.rmtree(out.parent, ignore_errors=True)
