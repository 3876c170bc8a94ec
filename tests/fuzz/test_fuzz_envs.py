"""Fuzzing every built-in env's `verify_many` and its options.

Random tasks (schema-valid or not: the API does not validate them) with random and hostile
completions. Properties: never an exception; exactly one verdict per pair, in order; every
score finite and in [0, 1]; no worker or jail left running after `close`.
"""

from __future__ import annotations

import pytest
from fuzz_inputs import (
    TASKS,
    check_nothing_left,
    check_verdict_objects,
    children,
    completions,
    env_options,
    fuzz_settings,
    json_values,
)
from hypothesis import given
from hypothesis import strategies as st

from assay.envs import OptionError, get_env
from assay.envs.base import Task
from assay.envs.taskfile import validate_fields
from assay.sandbox import Sandbox, SandboxError


@pytest.fixture(scope="module")
def envs():
    before = children()
    made = {"countdown": get_env("countdown"), "math": get_env("math", time_limit=2.0),
            "smt": get_env("smt", time_limit=2.0)}
    try:
        Sandbox(backend="local", workers=1).close()
        made["code"] = get_env("code", timeout=1.0, workers=2)
    except SandboxError:
        pass
    yield made
    for env in made.values():
        env.close()
    check_nothing_left(before)


def pairs_for(name: str, env, data, size: int) -> list[tuple[Task, str]]:
    """Tasks from the env's strategy (some not schema-valid) or the generator, each with a
    completion: random, hostile, or the task's own right answer."""
    out = []
    for index in range(data.draw(st.integers(0, size))):
        source = data.draw(st.integers(0, 3))
        if source == 0:
            task = env.generate(1, seed=data.draw(st.integers(0, 2**32)))[0] if name != "code" else None
        else:
            task = None
        if task is None:
            fields = data.draw(TASKS[name]() if source < 3 else json_values())
            if not isinstance(fields, dict):
                fields = {"value": fields}
            task = Task(f"fuzz-{index}", "", fields)
        completion = data.draw(completions)
        if data.draw(st.integers(0, 4)) == 0:  # the task's own answer, when it has one
            answer = task.get("solution") or task.get("answer")
            completion = f"<answer>{answer}</answer> \\boxed{{{answer}}}"
        out.append((task, completion))
    return out


@pytest.mark.parametrize("name", ["countdown", "math", "code", "smt"])
@fuzz_settings()
@given(data=st.data())
def test_verify_many(envs, name, data):
    if name not in envs:
        pytest.skip("local sandbox unavailable")
    env = envs[name]
    size = 3 if name == "code" else 8
    pairs = pairs_for(name, env, data, size)
    seen: list[int] = []
    verdicts = env.verify_many(pairs, workers=2, on_result=lambda i, v: seen.append(i))
    check_verdict_objects(verdicts, len(pairs))
    assert sorted(seen) == list(range(len(pairs)))


@pytest.mark.parametrize("name", ["countdown", "math", "code", "smt"])
@fuzz_settings(0.5)
@given(data=st.data())
def test_random_options(name, data):
    options = data.draw(env_options(name))
    if name == "code":
        options["backend"] = "nosuch"  # option checks only: no jail per example
    try:
        env = get_env(name, **options)
    except OptionError as exc:
        assert "\n" not in str(exc)
        return
    before = children()
    try:
        try:
            tasks = env.generate(3, seed=data.draw(st.integers(0, 2**32)))
        except OptionError as exc:  # options that cannot make a task say so in one line
            assert "\n" not in str(exc)
            return
        for task in tasks:
            assert validate_fields(env, task.to_dict()) == []
        pairs = [(task, data.draw(completions)) for task in tasks]
        check_verdict_objects(env.verify_many(pairs, workers=1), len(pairs))
    finally:
        env.close()
    check_nothing_left(before)
