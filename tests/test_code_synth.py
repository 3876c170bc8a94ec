"""Procedural code tasks (`source=synth`, assay/envs/code_synth.py): every rule's reference
passes its tests in the sandbox and a constant answer does not; seeds, difficulty, the
examples the prompt shows and hides; the task schema and the command line."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from assay.cli import cli
from assay.envs.code import CodeEnv
from assay.envs.code_synth import (
    CASES,
    DIFFICULTIES,
    FAMILIES,
    RULES,
    SHOWN,
    literal,
    make_fields,
    shown_examples,
)
from assay.envs.taskfile import TaskFileError


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def constant_answer(fields: dict) -> str:
    """A wrong answer that still matches the first case: it returns that case's output."""
    if "io" in fields:
        return f"print({fields['io'][0]['stdout'].rstrip()!r})"
    first = fields["tests"].splitlines()[0].split(" == ", 1)[1]
    return f"def f(*args): return {first}"


def cases(fields: dict) -> int:
    return len(fields["io"]) if "io" in fields else fields["tests"].count("assert ")


def test_every_rule_has_a_passing_reference_and_rejects_a_constant(code_env):
    """Each rule of each family, drawn three times: the reference is `correct`, a constant
    answer that matches the first case is not (so `compute` agrees with `source`, and the
    tests can tell a right answer from a wrong one)."""
    tasks = []
    for number, rule in enumerate(RULES):
        rng = random.Random(number)
        while len(tasks) < 3 * (number + 1):
            fields = make_fields(rule, rng)
            if fields is not None:
                tasks.append(code_env.make_task(fields, id=f"{rule.family}-{number}"))
    pairs = [(t, fenced(t["solution"])) for t in tasks] + [(t, fenced(constant_answer(t.fields))) for t in tasks]
    verdicts = code_env.verify_many(pairs)
    right, wrong = verdicts[: len(tasks)], verdicts[len(tasks) :]
    for task, verdict in zip(tasks, right, strict=True):
        assert verdict.correct, (task.id, task["solution"], verdict)
    for task, verdict in zip(tasks, wrong, strict=True):
        assert not verdict.correct and verdict.score < 1.0, (task.id, verdict)


def test_the_shown_examples_never_all_agree():
    """`f([1])=[] f([-3])=[] f([])=[]:` would teach nothing: such draws are drawn again."""
    for number, rule in enumerate(RULES):
        rng, drawn = random.Random(number), 0
        while drawn < 30:
            fields = make_fields(rule, rng)
            if fields is not None:
                drawn += 1
                outputs = {example.rsplit("=", 1)[1] for example in shown_examples(fields)}
                assert len(outputs) >= 2, (rule.source, shown_examples(fields))


def test_every_family_is_graded_in_difficulty():
    for family in FAMILIES:
        for difficulty in DIFFICULTIES:
            assert any(r.family == family and r.difficulty == difficulty for r in RULES), (family, difficulty)
    assert [SHOWN[d] for d in DIFFICULTIES] == sorted(SHOWN[d] for d in DIFFICULTIES)
    env = CodeEnv(source="synth", min_difficulty=2, max_difficulty=3)
    tasks = env.generate(60, seed=1)
    assert {t["difficulty"] for t in tasks} == {2, 3}
    assert {t["family"] for t in tasks} == set(FAMILIES)
    easy = CodeEnv(source="synth", families="int", max_difficulty=1).generate(20, seed=1)
    assert {(t["family"], t["difficulty"]) for t in easy} == {("int", 1)}


def test_same_seed_same_tasks_and_another_seed_differs():
    env = CodeEnv(source="synth")
    first = [t.to_dict() for t in env.generate(30, seed=5)]
    assert first == [t.to_dict() for t in CodeEnv(source="synth").generate(30, seed=5)]
    assert first != [t.to_dict() for t in env.generate(30, seed=6)]
    assert first != [t.to_dict() for t in env.generate(30, seed=-5)]


@pytest.mark.parametrize("style", ["full", "compact"])
def test_the_prompt_shows_some_cases_and_the_tests_hold_more(style):
    for task in CodeEnv(source="synth", prompt_style=style).generate(40, seed=2):
        assert task["shown"] == SHOWN[task["difficulty"]] < cases(task.fields) == CASES
        examples = shown_examples(task.fields)
        assert len(examples) == task["shown"]
        if style == "compact":
            assert task.prompt == " ".join(examples) + ":"
            assert task.prompt.isascii() and "\n" not in task.prompt
        if "io" in task.fields:
            shown, hidden = task["io"][: task["shown"]], task["io"][task["shown"] :]
            inputs = [json.dumps(c["stdin"]) if style == "compact" else c["stdin"] for c in shown]
            assert all(i in task.prompt for i in inputs)
        else:
            lines = task["tests"].splitlines()
            shown, hidden = lines[: task["shown"]], lines[task["shown"] :]
            for line in shown:
                assert (line if style == "full" else line[7:].replace(" == ", "=")) in task.prompt
            for line in hidden:  # the hidden cases are not in the prompt
                assert line[7:].replace(" == ", "=") not in task.prompt and line not in task.prompt


def test_compact_form_and_short_references():
    (task,) = CodeEnv(source="synth", families="int", max_difficulty=1, prompt_style="compact").generate(1, seed=0)
    assert task.prompt.startswith("f(") and task.prompt.endswith(":") and " f(" in task.prompt
    assert task["solution"].startswith("def f(x): return ")
    assert literal([1, -2]) == "[1,-2]" and literal("ab") == "'ab'"
    for task in CodeEnv(source="synth").generate(80, seed=3):
        assert task["solution"].isascii() and len(task["solution"]) <= 64, task["solution"]


def test_options_are_checked():
    for bad in ({"source": "leetcode"}, {"families": "int,graphs"}, {"min_difficulty": 0},
                {"min_difficulty": 3, "max_difficulty": 2}, {"prompt_style": "tiny"}):
        with pytest.raises(ValueError):
            CodeEnv(**bad)


def test_task_files_and_the_command_line(tmp_path):
    runner = CliRunner()
    sample = runner.invoke(cli, ["sample", "code", "-n", "12", "--set", "source=synth", "--seed", "4"])
    assert sample.exit_code == 0, sample.output
    path = tmp_path / "synth.jsonl"
    path.write_text(sample.stdout)
    assert runner.invoke(cli, ["validate", "code", str(path)]).exit_code == 0
    tasks = CodeEnv().load(path)  # the default env loads them, prompts and all
    assert len(tasks) == 12 and all(t["shown"] < cases(t.fields) for t in tasks)
    schema = json.loads(runner.invoke(cli, ["schema", "code"]).stdout)
    assert {"family", "difficulty", "solution", "shown"} <= set(schema["properties"])

    rows = [json.loads(line) for line in sample.stdout.splitlines()]
    bad = [dict(rows[0], difficulty=0), dict(rows[1], shown=CASES + 1)]
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(TaskFileError) as caught:
        CodeEnv().load(tmp_path / "bad.jsonl")
    problems = " ".join(caught.value.problems)
    assert "difficulty" in problems and "shown" in problems


def test_assay_verify_code_on_synth_tasks(tmp_path, code_env):
    tasks = CodeEnv(source="synth").generate(8, seed=9)
    lines = [{"task": t.to_dict(), "completion": fenced(t["solution"])} for t in tasks]
    lines.append({"task": tasks[0].to_dict(), "completion": fenced(constant_answer(tasks[0].fields))})
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = CliRunner().invoke(cli, ["verify", "code", str(path), "--set", "timeout=3"])
    assert result.exit_code == 0, result.output
    statuses = [json.loads(line)["status"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert statuses == ["correct"] * 8 + ["incorrect"]
