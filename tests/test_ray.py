"""The Ray backend against a real local Ray instance started by the tests (the `ray`
extra): the same verdicts as the local backend, the same output file from
`assay verify --ray`, and no work lost when a Ray worker is killed."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import forked_cli
import pytest
from conftest import hide_module

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'assay[ray]')")

from assay.envs import get_env  # noqa: E402
from assay.sandbox import Sandbox, ray_pool  # noqa: E402
from assay.sandbox.execution import SandboxError  # noqa: E402
from assay.sandbox.ray_pool import RayPool  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers below, by value
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def humaneval_pairs(n: int = 24):
    """Canonical solutions of the first n HumanEval tasks, and a wrong one every third."""
    env = get_env("code")
    pairs = []
    for i, task in enumerate(env.generate(n, seed=0)):
        head = task.fields.get("code_prompt", task.prompt)
        right = f"```python\n{head}{task.fields['canonical_solution']}\n```"
        pairs.append((task, right if i % 3 else "```python\nimport sys\nsys.exit(0)\n```"))
    return pairs


def test_ray_sandbox_gives_the_local_verdicts(local_ray):
    pairs = humaneval_pairs()
    local = get_env("code")
    on_ray = get_env("code", backend="ray")
    try:
        expected = local.verify_many(pairs, workers=2)
        got = on_ray.verify_many(pairs)
    finally:
        local.close()
        on_ray.close()
    assert [v.to_dict() for v in got] == [v.to_dict() for v in expected]
    assert sum(v.status == "correct" for v in got) == 16  # every canonical solution passes


def test_ray_sandbox_runs_hostile_code_to_its_limit(local_ray):
    with Sandbox(backend="ray", workers=2) as box:
        loop, echo = box.run_many([{"code": "while True: pass", "timeout": 1},
                                   {"code": "print(input()[::-1])", "stdin": "abc"}])
    assert loop.status == "timeout" and echo.stdout == "cba\n"


class SlowDouble:
    """A worker that takes its time, so that one can be killed while it works."""

    def work(self, items):
        time.sleep(0.3)
        return [2 * x for x in items]

    def close(self):
        pass


def test_a_killed_worker_loses_no_work(local_ray):
    pool = RayPool(SlowDouble, slots=2, chunk=2)
    try:
        victim = pool.pids()[0]
        killed = threading.Event()

        def kill_once(index, value):
            if not killed.is_set():
                killed.set()
                os.kill(victim, signal.SIGKILL)  # mid-run: its queued chunks must be retried

        items = list(range(20))
        results = pool.run(items, on_lost=lambda item, detail: ("lost", detail), on_result=kill_once)
        assert killed.is_set()
        assert results == [2 * x for x in items]  # all there, in order, none reported lost
        assert victim not in pool.pids()  # Ray restarted the killed actor
    finally:
        pool.close()


class Broken:
    def __init__(self):
        raise RuntimeError("bubblewrap not found on this node")


def test_a_worker_that_cannot_start_says_why_once(local_ray, capsys):
    with pytest.raises(SandboxError, match="no Ray worker could start: RuntimeError: bubblewrap"):
        RayPool(Broken, slots=2)
    lines = [line for line in capsys.readouterr().err.splitlines() if "cannot work" in line]
    assert len(lines) == 1  # two actors, one reason: said once


def test_verify_ray_writes_the_local_output_file(tmp_path):
    rows = [{"task": task.to_dict(), "completion": completion}
            for task, completion in humaneval_pairs(12)]
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    outputs = {}
    for name, extra in (("local", []), ("ray", ["--ray"])):
        out = tmp_path / f"{name}.jsonl"
        proc = forked_cli.run(["verify", "code", str(data), "-o", str(out), *extra], timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs[name] = out.read_bytes()
    assert outputs["ray"] == outputs["local"]
    assert outputs["local"].count(b'"correct"') == 8 and b'"error"' in outputs["local"]


def test_missing_ray_is_one_line(monkeypatch):
    hide_module(monkeypatch, "ray")
    with pytest.raises(SandboxError, match=r"pip install 'assay\[ray\]'"):
        ray_pool.require_ray()


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_verify_ray_at_an_address_nobody_listens_on_fails_fast_in_one_line(tmp_path, address):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"task": {"numbers": [1, 2], "target": 3}, "completion": "x"}) + "\n")
    start = time.monotonic()
    proc = forked_cli.run(["verify", "countdown", str(data), "--ray", address], timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"assay: error: cannot reach Ray at {address}")
    assert time.monotonic() - start < 15
