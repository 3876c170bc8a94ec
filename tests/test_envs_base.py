"""Environment base, registry, options and task files."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from assay import Environment, Task, Verdict, get_env, register_env
from assay.envs import OptionError, TaskFileError, UnknownEnvError, env_names, list_envs
from assay.envs.base import parse_assignments

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class EchoOptions:
    expected: str = "yes"
    delay: float = 0.0


@register_env
class EchoEnv(Environment):
    """A user environment defined by decorator, in a few lines."""

    name = "test-echo"
    description = "answer with the expected word"
    Options = EchoOptions
    time_limit = 0.5
    task_schema = {"type": "object", "required": ["word"], "properties": {"word": {"type": "string"}}}

    def generate(self, n: int, seed: int = 0) -> list[Task]:
        return [self.make_task({"word": f"w{seed}-{i}"}, id=str(i)) for i in range(n)]

    def render_prompt(self, task: Task) -> str:
        return f"Say {task['word']}"

    def extract(self, completion: str) -> str | None:
        return completion.strip() or None

    def check(self, task: Task, answer: str) -> Verdict:
        if answer == "crash":
            raise RuntimeError("verifier bug")
        if answer == "hang":
            time.sleep(60)
        return Verdict.right() if answer == task["word"] else Verdict.wrong()


def test_decorator_registration_and_lookup():
    assert "test-echo" in env_names()
    env = get_env("test-echo", expected="no")
    assert isinstance(env, EchoEnv) and env.options.expected == "no"
    assert list_envs()["test-echo"] == "answer with the expected word"
    with pytest.raises(UnknownEnvError, match="unknown env 'missing'"):
        get_env("missing")


def test_register_rejects_non_environments():
    with pytest.raises(TypeError):
        register_env(dict)  # type: ignore[arg-type]


def test_task_round_trips_as_a_flat_object():
    task = Task(id="a", prompt="p", fields={"numbers": [1], "target": 1})
    assert task.to_dict() == {"id": "a", "prompt": "p", "numbers": [1], "target": 1}
    assert Task.from_dict(task.to_dict()) == task
    assert task["numbers"] == [1] and task.get("missing", 3) == 3


def test_make_task_renders_the_prompt_when_absent():
    env = EchoEnv()
    assert env.make_task({"word": "hi"}).prompt == "Say hi"
    assert env.make_task({"word": "hi", "prompt": "custom"}).prompt == "custom"


def test_options_coercion_and_errors():
    assert EchoEnv(delay="0.5").options.delay == 0.5
    with pytest.raises(OptionError, match="unknown option 'nope'.*delay, expected"):
        EchoEnv(nope=1)
    with pytest.raises(OptionError, match="expects float"):
        EchoEnv(delay="slow")
    assert parse_assignments(["a=1", "b-c=x=y"]) == {"a": "1", "b_c": "x=y"}
    with pytest.raises(OptionError):
        parse_assignments(["=1"])


def test_verifier_failures_are_errors_and_timeouts_never_silent_zeros():
    env = EchoEnv()
    (task,) = env.generate(1)
    verdicts = env.verify_many(
        [(task, "w0-0"), (task, "crash"), (task, "hang"), (task, ""), (task, "other")], workers=2
    )
    env.close()
    assert [v.status for v in verdicts] == ["correct", "error", "timeout", "invalid", "incorrect"]
    assert "RuntimeError: verifier bug" in verdicts[1].detail
    assert "0.5 s" in verdicts[2].detail


def test_verify_is_bounded_off_the_main_thread():
    env = EchoEnv()
    (task,) = env.generate(1)
    result: list[Verdict] = []
    thread = threading.Thread(target=lambda: result.append(env.verify(task, "hang")))
    start = time.perf_counter()
    thread.start()
    thread.join(timeout=10)
    env.close()
    assert result and result[0].status == "timeout"
    assert time.perf_counter() - start < 5


def test_task_file_loading_reports_every_bad_line_and_keeps_the_good(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"numbers": [1, 2], "target": 3}),
                "# a comment",
                json.dumps({"numbers": [1, 2.5], "target": 3}),
                "",
                json.dumps({"numbers": [1, 2]}),
                "{oops",
                json.dumps([1, 2]),
                json.dumps({"numbers": [4], "target": 4, "note": "extra fields are fine"}),
            ]
        )
    )
    env = get_env("countdown")
    with pytest.raises(TaskFileError) as info:
        env.load(path)
    problems = info.value.problems
    assert problems == [
        f"{path}:3: numbers.1: 2.5 is not of type 'integer'",
        f"{path}:5: target: 'target' is a required property",
        f"{path}:6: (line): invalid JSON: Expecting property name enclosed in double quotes at column 2",
        f"{path}:7: (task): [1, 2] is not of type 'object'",
    ]
    good = info.value.tasks
    assert [t["target"] for t in good] == [3, 4]
    assert good[0].id == "tasks.jsonl:1" and "Using the numbers [1, 2]" in good[0].prompt


def test_shipped_task_files_and_schemas_are_valid():
    for name in ("countdown", "math", "code", "smt", "lean"):
        env = get_env(name)
        schema = json.loads((ROOT / "tasks" / "schemas" / f"{name}.schema.json").read_text())
        assert schema == env.task_schema, f"tasks/schemas/{name}.schema.json is stale"
        tasks = env.load(ROOT / "tasks" / f"{name}.example.jsonl")
        assert tasks
        if name == "countdown":
            for task in tasks:
                assert env.verify(task, f"<answer>{task['solution']}</answer>").correct
        if name == "smt":  # the recorded answers were audited by load; check them again
            for task in tasks:
                answer = task.get("solution") or task.get("expected") or "x = 4, y = 3"
                assert env.verify(task, f"<answer>{answer}</answer>").correct, task.id
        env.close()


class PidEnv(EchoEnv):
    """Says which process checked it, to tell in-process from worker verification."""

    name = "test-pid"

    def check(self, task: Task, answer: str) -> Verdict:
        import os

        return Verdict.right(str(os.getpid()))


class InProcessPidEnv(PidEnv):
    name = "test-pid-in-process"
    verification = "in_process"


def test_verify_many_runs_where_the_env_says():
    import os

    task = Task("t", "p", {"word": "x"})
    pairs = [(task, "x")] * 3
    here = str(os.getpid())
    workers = PidEnv()
    try:
        assert all(v.detail != here for v in workers.verify_many(pairs, workers=1))
    finally:
        workers.close()
    seen = []
    verdicts = InProcessPidEnv().verify_many(pairs, on_result=lambda i, v: seen.append(i))
    assert [v.detail for v in verdicts] == [here] * 3 and seen == [0, 1, 2]
    assert get_env("countdown").verification == "in_process"
    assert get_env("code").verification == "sandbox" and get_env("math").verification == "workers"


def test_verification_modes_are_checked():
    with pytest.raises(TypeError, match="verification must be one of"):

        class Misdeclared(EchoEnv):
            verification = "threads"

    class NoSandboxOverride(EchoEnv):
        verification = "sandbox"

    with pytest.raises(NotImplementedError, match="must override verify_batch"):
        NoSandboxOverride().verify_many([(Task("t", "p", {"word": "x"}), "x")])


def test_check_completion_is_extract_then_check_and_never_raises():
    env = EchoEnv()
    task = Task("t", "p", {"word": "yes"})
    assert env.check_completion(task, " yes ").status == "correct"
    assert env.check_completion(task, "  ").status == "invalid"
    crashed = env.check_completion(task, "crash")
    assert crashed.status == "error" and "verifier bug" in crashed.detail


def test_every_deliberate_error_is_an_assay_error():
    from assay.errors import AssayError
    from assay.rewards import RewardError
    from assay.sandbox import SandboxError
    from assay.training import ConfigError, TrainError
    from assay.training.policy import ModelLoadError
    from assay.training.rollout import EngineError
    from assay.training.tracking import TrackerError

    for error in (OptionError, TaskFileError, UnknownEnvError, RewardError, SandboxError,
                  ConfigError, TrainError, ModelLoadError, EngineError, TrackerError):
        assert issubclass(error, AssayError), error
    with pytest.raises(AssayError, match="unknown env 'missing'"):
        get_env("missing")
