"""Sandboxed and worker-pool verification inside the training loop.

The code env trains through real GRPO steps whose batches hold hostile programs, and
everything is checked from outside the trainer: the jails' processes (read from the
host's /proc), this process's descendants, metrics.jsonl and the stored rollouts. The
math env trains a randomly initialised model for a few steps. See docs/training.md.
"""

from __future__ import annotations

import gzip
import json
import math
import os

import pytest
from conftest import survivors, workers_at_model_load

from assay.training import Trainer, resolve
from assay.training.progress import StepProgress
from assay.training.tracking import read_metrics
from assay.verifiers import STATUSES

#: Programs a policy could write, each answering a synth `f(x)` task. Every one must score
#: 0 and cost at most its time limit.
HOSTILE = {
    "loop": "def f(x):\n    while True:\n        pass\n",
    "fork-bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "memory-bomb": "x = 'a' * (10 ** 10)\ndef f(x):\n    return None\n",
    "output-flood": "while True:\n    print('x' * 10000)\n",
    "sys-exit-0": "import sys\nsys.exit(0)\n",
    "exit-in-call": "import os\ndef f(x):\n    os._exit(0)\n",
    "always-equal": (
        "class Anything:\n    def __eq__(self, other): return True\n"
        "    def __ne__(self, other): return False\n"
        "def f(x):\n    return Anything()\n"
    ),
    "daemon": (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n"
        "def f(x):\n    return None\n"
    ),
}
FENCED = {name: f"```python\n{code}```" for name, code in HOSTILE.items()}
TIMEOUT = 2.0  # env.timeout: seconds per program
WORKERS = 2  # sandbox workers


@pytest.fixture(scope="module")
def sandbox_ok():
    from assay.sandbox import Sandbox, SandboxError

    try:
        Sandbox(workers=1).close()
    except SandboxError as exc:
        pytest.skip(f"local sandbox unavailable: {exc}")


def code_config(out, model, steps: int = 2):
    sets = {
        "prompts_per_step": "4", "group_size": "4", "max_new_tokens": "16", "eval_every": "0",
        "train_size": "16", "val_size": "4", "progress": "false",
        "env.source": "synth", "env.families": "int", "env.timeout": str(TIMEOUT),
        "env.workers": str(WORKERS),
    }
    return resolve(sets=sets, flags={"model": str(model), "env": "code", "out": str(out), "steps": steps})


def bwrap_descendants() -> list[int]:
    """Pids of bubblewrap processes below this one, read from the host's /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            try:
                with open(f"/proc/{child}/cmdline", "rb") as handle:
                    if b"bwrap" in handle.read():
                        found.append(child)
            except OSError:
                continue
    return found




def inject_hostile(trainer: Trainer) -> None:
    """Swap the decoded text of completions 1 and 2 of every group for hostile programs.

    Only the text is swapped (the tokens, the loss and everything else are the model's):
    the real trainer verifies it through the real sandbox and stores it in the rollouts.
    """
    decode = trainer.tokenizer.batch_decode
    G = trainer.config.group_size
    names = sorted(FENCED)

    def with_hostile(sequences, **kwargs):
        texts = decode(sequences, **kwargs)
        for p in range(len(texts) // G):
            for slot, j in enumerate((1, 2)):
                texts[p * G + j] = FENCED[names[(2 * p + slot) % len(names)]]
        return texts

    trainer.tokenizer.batch_decode = with_hostile


def watch_jails(trainer: Trainer) -> list[dict]:
    """After every verification of the run: the sandbox object and its jails' processes."""
    seen: list[dict] = []
    verify_many = trainer.env.verify_many

    def watched(pairs, **kwargs):
        verdicts = verify_many(pairs, **kwargs)
        box = trainer.env._sandbox
        jails = box.jail_processes()
        seen.append({"sandbox": id(box), "jails": jails,
                     "bwrap": [w.transport.process.pid for w in box._pool._workers]})
        return verdicts

    trainer.env.verify_many = watched
    return seen


def test_hostile_completions_cost_their_time_limit_score_zero_and_leave_no_process(
    tmp_path, random_model, sandbox_ok
):
    out = tmp_path / "run"
    before = bwrap_descendants()
    trainer = Trainer(code_config(out, random_model), quiet=True)
    inject_hostile(trainer)
    seen = watch_jails(trainer)
    trainer.train()

    # The run finished every step.
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    # One sandbox for the whole run, started once; after each step's verification its jails
    # hold their fork servers and nothing else (the daemon, the fork bomb's children: gone).
    assert len(seen) == 2 and len({s["sandbox"] for s in seen}) == 1
    assert len({tuple(s["bwrap"]) for s in seen}) == 1  # the same jails, not new ones
    for s in seen:
        assert len(s["jails"]) == WORKERS
        assert all(len(jail) == 1 for jail in s["jails"]), s["jails"]
    # Closed at the end: no jail, no bwrap process left anywhere below us.
    pids = {pid for s in seen for pid in s["bwrap"] + [p for jail in s["jails"] for p in jail]}
    assert not survivors(pids)
    assert bwrap_descendants() == before
    assert trainer.env._sandbox is None

    # Every hostile completion scored 0, and none was an `error` (which would mask it).
    with gzip.open(out / "rollouts.jsonl.gz", "rt") as handle:
        stored = [json.loads(line) for line in handle]
    hostile = [r for r in stored if r["completion"] in FENCED.values()]
    assert len(hostile) == 2 * 4 * 2  # 2 per group, 4 groups, 2 steps
    assert {r["completion"] for r in hostile} == set(FENCED.values())
    for r in hostile:
        assert r["score"] == 0.0 and r["reward"] == 0.0, r
        assert r["status"] in ("incorrect", "invalid", "timeout"), r
    assert any(r["status"] == "timeout" for r in hostile)

    # Verdicts are counted by status; verification is timed and bounded by the limits:
    # at most ceil(8 / WORKERS) time limits in a row, plus slack for a loaded machine.
    for row in rows:
        assert sum(row[f"verdicts/{s}"] for s in STATUSES) == 16
        assert 1 <= row["verify_pairs"] <= 16
        assert 0 < row["verify_time"] <= row["step_time"]
        assert row["verify_time"] < math.ceil(8 / WORKERS) * TIMEOUT + 10, row["verify_time"]


class Stop(Exception):
    """A crash in the middle of a step."""


@pytest.mark.parametrize("ending", [KeyboardInterrupt, Stop], ids=["ctrl-c", "crash"])
def test_the_sandbox_is_closed_on_ctrl_c_and_on_a_crash(tmp_path, random_model, sandbox_ok, ending):
    trainer = Trainer(code_config(tmp_path / "run", random_model, steps=3), quiet=True)
    before = bwrap_descendants()
    verify_many = trainer.env.verify_many
    started = []

    def then_stop(pairs, **kwargs):
        verify_many(pairs, **kwargs)  # the jails are up now
        started.extend(bwrap_descendants())
        raise ending()

    trainer.env.verify_many = then_stop
    with pytest.raises(ending):
        trainer.train()
    # only this trainer's jails: one that an earlier test in this worker left to the
    # garbage collector may still be alive (and may go at any moment)
    ours = set(started) - set(before)
    assert ours, "the sandbox never started"
    assert not survivors(ours)
    assert not ours & set(bwrap_descendants())
    assert trainer.env._sandbox is None


def test_math_trains_a_random_init_model(tmp_path, random_model):
    """`assay train --env math` on a model that cannot answer: every verdict `invalid`,
    through the env's worker pool and its time limit, step after step."""
    from click.testing import CliRunner

    from assay.cli import cli

    sets = {"prompts_per_step": "4", "group_size": "4", "max_new_tokens": "16",
            "eval_every": "2", "val_size": "4", "val_samples": "1", "train_size": "16"}
    args = ["train", "--env", "math", "--model", str(random_model), "--steps", "3",
            "--out", str(tmp_path / "run"), "--quiet"]
    args += [arg for k, v in sets.items() for arg in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:
        counts = {s: row[f"verdicts/{s}"] for s in STATUSES}
        assert sum(counts.values()) == 16, counts
        assert counts["invalid"] == 16, counts  # noise holds no \boxed{} answer
        assert row["reward"] == 0.0 and row["verify_time"] >= 0
    assert rows[0]["val_accuracy"] == 0.0


def test_each_distinct_pair_is_verified_once_and_shares_its_verdict():
    from assay.envs import Task, get_env

    env = get_env("countdown")
    a = env.make_task({"numbers": [1, 2], "target": 3})
    b = Task(a.id, a.prompt, dict(a.fields))  # ids need not be unique: b is another task
    batches: list[list] = []
    check = env.verify_batch

    def counted(pairs, **kwargs):
        batches.append(list(pairs))
        return check(pairs, **kwargs)

    env.verify_batch = counted
    x, y = "<answer>1+2</answer>", "<answer>2+1</answer>"
    pairs = [(a, x), (a, x), (a, y), (b, x), (a, x), (b, x)]
    ready: list[int] = []
    verdicts = env.verify_many(pairs, on_result=lambda index, verdict: ready.append(index))
    assert batches == [[(a, x), (a, y), (b, x)]]
    assert (env.last_batch.pairs, env.last_batch.checked) == (6, 3) and env.last_batch.seconds >= 0
    assert sorted(ready) == list(range(6))  # every input index hears its verdict
    assert all(v.correct for v in verdicts)
    assert verdicts[0] is verdicts[1] is verdicts[4] and verdicts[3] is verdicts[5]
    assert verdicts[0] is not verdicts[3]  # the same text for another task is checked again


def test_the_progress_bar_shows_the_verification_time():
    bar = StepProgress(2, enabled=False)
    metrics = {"step": 1, "reward": 0.5, "reward_accuracy": 1.0, "gt_accuracy": 0.5,
               "entropy": 1.0, "completion_length": 3.0, "step_time": 1.25, "verify_time": 0.75}
    bar.advance(metrics)
    assert "1.25s/step (verify 0.75s)" in bar.progress.tasks[0].fields["figures"]


def test_the_verification_workers_start_before_the_model_loads(tmp_path, random_model, monkeypatch):
    """Forked after the model, each worker keeps its own copy of every page training
    writes (the SmolLM2 bench, assay and TRL in one process, ran out of 24 GiB so)."""
    from assay.training import Trainer, resolve
    from assay.training import trainer as trainer_module

    workers_at_load = workers_at_model_load(monkeypatch, trainer_module, trainer_module)
    config = resolve(sets={"prompts_per_step": "2", "group_size": "2", "max_new_tokens": "4", "eval_every": "0",
                           "val_size": "2", "train_size": "4", "progress": "false"},
                     flags={"model": str(random_model), "env": "math", "out": str(tmp_path / "run"), "steps": 1})
    trainer = Trainer(config, quiet=True)
    try:
        assert workers_at_load and workers_at_load[0] >= 1, workers_at_load
        (pool,) = trainer.env._pools.values()  # the one pool verification then uses
        trainer.step()
        assert (pool,) == tuple(trainer.env._pools.values())
        assert all(worker.process.is_alive() for worker in pool._workers)
    finally:
        trainer.env.close()
