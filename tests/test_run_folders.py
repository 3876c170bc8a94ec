"""Run folders that cannot be corrupted (issue 26): one writer per folder, workers that die
with their parent, resumes that keep their plan, distinct folders per reward spec. Each
test failed on edb4b65, before its fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from conftest import sigint_as_at_a_terminal, survivors  # noqa: E402
from test_hardening import one_line_exit_2, run  # noqa: E402 - the same CLI helpers

from assay.training import folder_lock  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

TRAIN = ["train", "--model", "organism:tiny", "--quiet", "--set", "prompts_per_step=2",
         "--set", "group_size=2", "--set", "val_size=2", "--set", "val_samples=1",
         "--set", "train_size=8", "--set", "eval_every=0", "--set", "max_new_tokens=8"]


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that takes `folder`'s write lock and keeps it until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from assay.training import folder_lock
        folder_lock.acquire({str(folder)!r})
        print("held", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


# -- 1. one writer per folder -------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        line = one_line_exit_2(run(*TRAIN, "--out", str(out), "--steps", "1"))
        assert f"pid {holder.pid}" in line and "being written" in line
        assert not (out / "config.yaml").exists()  # the refused command wrote nothing
        assert folder_lock.writer(out).startswith(f"pid {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert folder_lock.writer(out) is None  # the kernel dropped the dead holder's lock
    result = run(*TRAIN, "--out", str(out), "--steps", "1")
    assert result.exit_code == 0, result.output
    assert folder_lock.writer(out) is None  # and the run gave it back when it ended


def test_two_train_commands_started_together_never_share_a_folder(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "assay.cli", *TRAIN, "--out", str(out), "--steps", "3"]
    procs = [subprocess.Popen([*cmd, "--seed", str(seed)], cwd=ROOT, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
             for seed in (1, 2)]
    codes = [p.wait(timeout=300) for p in procs]
    errors = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 2], (codes, errors)
    loser = errors[codes.index(2)]
    assert "being written by pid" in loser or "already holds a run" in loser, loser
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_out_naming_a_file_is_one_line_before_any_model_loads(tmp_path):
    path = tmp_path / "afile"
    path.write_text("x")
    assert "is a file" in one_line_exit_2(run(*TRAIN, "--out", str(path), "--steps", "1"))


def test_the_lock_is_reentrant_in_one_process_and_released_as_often_as_taken(tmp_path):
    folder_lock.acquire(tmp_path)
    folder_lock.acquire(tmp_path)
    folder_lock.release(tmp_path)
    code = f"from assay.training import folder_lock; folder_lock.acquire({str(tmp_path)!r})"
    busy = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert busy.returncode != 0 and "being written" in busy.stderr
    folder_lock.release(tmp_path)
    free = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert free.returncode == 0, free.stderr


# -- 5. train --resume with changed options: refused, never half-applied -------------------


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "run"
    result = run(*TRAIN, "--out", str(out), "--steps", "2", "--set", "save_every=1")
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("change, field", [
    (["--reward", "majority_vote"], "reward"),
    (["--set", "learning_rate=0.3"], "learning_rate"),
    (["--model", "organism:honest"], "model"),
    (["--set", "env.max_target=20"], "env_options"),
])
def test_resume_with_a_changed_setting_is_refused_naming_it(two_step_run, change, field):
    before = (two_step_run / "config.yaml").read_text()
    line = one_line_exit_2(run(*TRAIN, "--out", str(two_step_run), "--resume", "--steps", "3",
                               *change))
    assert f"{field}:" in line and "another --out" in line
    assert (two_step_run / "config.yaml").read_text() == before


def test_resume_with_fewer_steps_than_done_is_refused_and_changes_nothing(two_step_run):
    before = {name: (two_step_run / name).read_bytes() for name in ("config.yaml", "metrics.jsonl")}
    line = one_line_exit_2(run(*TRAIN, "--out", str(two_step_run), "--resume", "--steps", "1"))
    assert "done 2 steps already" in line and "--steps 2 or more" in line, line
    assert {name: (two_step_run / name).read_bytes() for name in before} == before


def test_resume_may_extend_a_run(tmp_path, two_step_run):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(two_step_run, out)
    result = run(*TRAIN, "--out", str(out), "--resume", "--steps", "3")
    assert result.exit_code == 0, result.output
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


# -- 2. no orphans --------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


SLEEPER = "import time\n\ndef nap(seconds):\n    time.sleep(seconds)\n    return seconds\n"
INTERRUPTED = """
import signal, threading, time
from sleeper import nap
from assay.lab.workers import run_all

def ctrl_c_on_another_thread():
    time.sleep(3)  # the workers are napping by now
    pool = [t for t in threading.enumerate() if t.name not in ("MainThread", "ctrl-c")]
    signal.pthread_kill(pool[0].ident, signal.SIGINT)  # what the kernel may do with a kill

threading.Thread(target=ctrl_c_on_another_thread, name="ctrl-c", daemon=True).start()
start = time.time()
try:
    run_all(nap, [{"seconds": 60}, {"seconds": 60}], jobs=2)
except KeyboardInterrupt:
    print(f"interrupted {time.time() - start - 3:.1f} s after the Ctrl-C")
"""


def test_a_ctrl_c_that_lands_on_another_thread_stops_the_runs_at_once(tmp_path):
    """A process-directed SIGINT may be handed to any thread; the job runner's main thread
    must see it within a second, not when the next run ends (here, a minute later)."""
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", INTERRUPTED], capture_output=True, text=True,
                          timeout=120, env=env, preexec_fn=sigint_as_at_a_terminal)
    assert "interrupted" in proc.stdout, proc.stdout + proc.stderr
    assert float(proc.stdout.split()[1]) < 5.0, proc.stdout  # WAKE is 0.5 s
    assert time.time() - started < 45, "the runs went on after the Ctrl-C"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["KILL", "TERM", "INT"])
def test_workers_die_with_their_parent(tmp_path, sig):
    """`assay compare --jobs 2` killed: no worker trains on with parent 1."""
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "assay.cli", "compare", "--preset", "smoke", "--model",
           "organism:tiny", "--rewards", "verifier,random", "--steps", "200", "--jobs", "2",
           "--quiet", "--out", str(out)]
    log = tmp_path / "stderr.txt"
    parent = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("w"),
                              start_new_session=True, preexec_fn=sigint_as_at_a_terminal)
    deadline = time.time() + 240
    while time.time() < deadline:  # until both runs have written a step
        rows = list(out.glob("runs/*/metrics.jsonl"))
        if len(rows) == 2 and all(p.stat().st_size for p in rows):
            break
        time.sleep(0.5)
    else:
        parent.kill()
        pytest.fail("the runs did not start within 240 s")
    workers = _children(parent.pid)
    assert workers, "compare --jobs 2 started no worker process"
    os.kill(parent.pid, sig)
    # The property is that no worker outlives the parent, and that the parent exits at
    # once. (A SIGINT took 40-180 s in suites started in the background, which ignore
    # SIGINT for every child: `sigint_as_at_a_terminal` restores it.) A parent still
    # running after 30 s prints its threads' stacks (SIGUSR1), which go into the failure.
    signalled = time.time()
    try:
        parent.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(parent.pid, signal.SIGUSR1)
        try:
            parent.wait(timeout=270)
        except subprocess.TimeoutExpired:
            os.kill(parent.pid, signal.SIGUSR1)
            time.sleep(2)
            os.killpg(parent.pid, signal.SIGKILL)
            pytest.fail(f"compare still running 300 s after {sig.name}; its stacks:\n"
                        + log.read_text()[-6000:])
    if time.time() - signalled > 30:  # it exits in a second or two, even on a busy machine
        pytest.fail(f"compare took {time.time() - signalled:.0f} s to exit after {sig.name}; "
                    f"its stacks at 30 s:\n{log.read_text()[-4000:]}")
    left = survivors(workers, within=15)
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"{len(left)} worker(s) outlived their parent (signal {sig.name})"


# -- 3, 4, 6, 12, 13. compare: a resume keeps its plan; one folder per reward -------------

COMPARE = ["compare", "--preset", "smoke", "--quiet", "--jobs", "1"]


@pytest.fixture(scope="module")
def small_comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "c"
    result = run(*COMPARE, "--rewards", "verifier", "--steps", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_compare_resume_keeps_the_saved_plan(small_comparison):
    before = json.loads((small_comparison / "lab.json").read_text())["settings"]
    result = run("compare", "--quiet", "--out", str(small_comparison), "--resume")
    assert result.exit_code == 0, result.output
    after = json.loads((small_comparison / "lab.json").read_text())["settings"]
    for key in ("preset", "model", "rewards", "seeds", "steps", "sets"):
        assert after[key] == before[key], key
    assert [p.name for p in (small_comparison / "runs").iterdir()] == ["verifier-seed0"]


@pytest.mark.parametrize("change, named", [
    (["--steps", "5"], "--steps 5"),
    (["--rewards", "verifier,majority_vote"], "--rewards"),
    (["--preset", "quick"], "--preset quick"),
    (["--set", "learning_rate=0.5"], "--set learning_rate=0.5"),
])
def test_compare_resume_with_other_settings_is_refused_naming_them(small_comparison, change,
                                                                   named):
    before = (small_comparison / "lab.json").read_text()
    line = one_line_exit_2(run("compare", "--quiet", "--out", str(small_comparison), "--resume",
                               *change))
    assert named in line and "saved" in line
    assert (small_comparison / "lab.json").read_text() == before


def test_two_reward_specs_that_share_a_folder_are_refused(tmp_path):
    line = one_line_exit_2(run(*COMPARE, "--rewards", "2*verifier,2 * verifier",
                               "--out", str(tmp_path / "c")))
    assert "same reward" in line
    assert not (tmp_path / "c" / "runs").exists()


@pytest.mark.parametrize("key", ["model=organism", "steps=3", "out=elsewhere", "seed=4"])
def test_compare_refuses_a_set_of_what_it_decides_itself(tmp_path, key):
    line = one_line_exit_2(run(*COMPARE, "--set", key, "--out", str(tmp_path / "c")))
    assert f"--set {key.split('=')[0]}" in line and "instead" in line


def test_rewards_naming_nothing_is_refused(tmp_path):
    assert "names no reward" in one_line_exit_2(run(*COMPARE, "--rewards", ",",
                                                    "--out", str(tmp_path / "c")))


def test_a_second_comparison_in_a_folder_being_written_is_refused(tmp_path):
    out = tmp_path / "c"
    holder = hold_lock(out)
    try:
        line = one_line_exit_2(run(*COMPARE, "--out", str(out)))
        assert f"pid {holder.pid}" in line
        report = run("report", str(out))
        assert f"being written by pid {holder.pid}" in report.stderr
    finally:
        holder.kill()
        holder.wait()


def test_ctrl_c_in_compare_exits_130_with_the_resume_line(tmp_path, monkeypatch):
    from assay.lab import compare

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "_execute", interrupted)
    result = run(*COMPARE, "--rewards", "verifier", "--out", str(tmp_path / "c"))
    assert result.exit_code == 130, result.output
    # interrupted before lab.json was written: --resume would be refused, so not suggested
    # (tests/test_lab.py: after it, the hint is --resume)
    assert "run the same command again" in result.stderr and "Aborted" not in result.output


# -- 11. a prompt longer than a learned position table --------------------------------------


def test_a_model_with_a_position_table_never_samples_past_it(tmp_path):
    """GPT-2 has 16 positions here: completions are cut there (truncated), and a prompt that
    fills them is one line, where an IndexError came from inside the model."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from assay.training.policy import resolve_model_path
    from assay.training.rollout import EngineError, HFEngine

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("organism:tiny", quiet=True))
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1,
                                       n_head=2, n_positions=16))
    engine = HFEngine(model, tokenizer)
    assert engine.max_positions == 16
    (gens,) = engine.generate([[5] * 10], 2, max_new_tokens=40, seed=0)
    assert all(len(g.token_ids) <= 6 for g in gens)
    with pytest.raises(EngineError, match="fills the model's 16 positions"):
        engine.generate([[5] * 16], 1, max_new_tokens=4)


# -- 3. an experiment run again on its folder keeps its settings ---------------------------


def test_an_experiment_rerun_with_other_settings_is_refused_not_read_back(tmp_path):
    """`train_run` is how zoo, scale, sharpen and ttt train their runs: a finished run made
    with other settings was read back as if made with these."""
    from assay.lab.experiment import LabError, train_run

    flags = {"model": "organism:tiny", "steps": 1}
    sets = {"prompts_per_step": "2", "group_size": "2", "val_size": "2", "val_samples": "1",
            "train_size": "8", "eval_every": "0", "max_new_tokens": "8"}
    summary, rows = train_run(out=tmp_path / "run", flags=flags, sets=sets)
    assert summary["steps"] == 1 and len(rows) == 1
    with pytest.raises(LabError, match="learning_rate: .* -> 0.5"):
        train_run(out=tmp_path / "run", flags=flags, sets={**sets, "learning_rate": "0.5"})
    again, _ = train_run(out=tmp_path / "run", flags=flags, sets=sets)
    assert again == summary  # the same settings: read back, not trained again
