"""The smt env: z3 decides assignments by substitution and `unsat` only by proof; the
generator's tasks are what they claim; hostile scripts and answers are bounded."""

from __future__ import annotations

import os
import time

import forked_cli
import pytest
from conftest import write_jsonl

from assay.envs import TaskFileError, get_env
from assay.envs.smt_formats import compact_prompt
from assay.envs.smt_generate import KINDS, UNSAT_KINDS
from assay.verifiers.smt import check_smt
from assay.verifiers.smtlib import MAX_DEPTH, SmtLibError, parse_assignment, parse_script

SUM = "(declare-const x Int) (declare-const y Int) (assert (= (+ x y) 10)) (assert (> x 7))"
MIXED = "(declare-const r Real) (declare-const p Bool) (assert (= (* 4 r) (- 3))) (assert (= p (< r 0)))"
ODD = "(declare-const a Int) (declare-const b Int) (assert (= (* 2 a) (+ (* 2 b) 1)))"
HARD = ("(declare-const x Int) (declare-const y Int) (declare-const z Int) "
        "(assert (= (+ (* x x x) (* y y y) (* z z z)) 33))")


@pytest.fixture(scope="module")
def env():
    environment = get_env("smt", time_limit=3.0)
    yield environment
    environment.close()


def statuses(env, script, answers):
    task = env.make_task({"smtlib": script})
    return [v.status for v in env.verify_many([(task, f"<answer>{a}</answer>") for a in answers], workers=2)]


def test_assignments_are_checked_by_substitution(env):
    assert statuses(env, SUM, ["x = 8, y = 2", "x=9; y=1", "y = 2\nx = 8", "x = 7, y = 3",
                               "x = 8, y = 3"]) == ["correct"] * 3 + ["incorrect"] * 2
    assert statuses(env, MIXED, ["r = -3/4, p = true", "r = -0.75, p = TRUE", "r = -3/4, p = false",
                                 "r = 3/4, p = false"]) == ["correct", "correct", "incorrect", "incorrect"]


@pytest.mark.parametrize("answer, why", [
    ("x = 8", "not assigned: y"),
    ("x = 8, y = 2, z = 0", "'z' is not a declared constant"),
    ("x = 8, y = 1/2", "y is Int"),
    ("x = 8.0, y = 2", "x is Int"),
    ("x = 8, x = 8, y = 2", "assigned twice"),
    ("x: 8, y: 2", "expected NAME = VALUE"),
    ("x = 8, y = __import__('os')", "y is Int"),
    ("x = 1" + "0" * 300 + ", y = 2", "more than 200 digits"),
    ("x = 8, y = 2" + ", " * 3000, "longer than"),
    ("", "no assignment"),
])
def test_malformed_answers_are_invalid(env, answer, why):
    task = env.make_task({"smtlib": SUM})
    verdict = env.verify(task, f"<answer>{answer}</answer>")
    assert verdict.status == "invalid" and why in verdict.detail, verdict


@pytest.mark.parametrize("prompt_style", ["smtlib", "compact"])
def test_an_answer_only_inside_reasoning_is_not_the_answer(prompt_style):
    env = get_env("smt", prompt_style=prompt_style)
    try:
        task = env.make_task({"smtlib": SUM})
        drafts = ["<think><answer>x = 8, y = 2</answer></think>", "<think>x=8,y=2</think>",
                  "<think>x=8,y=2"]  # (an unclosed block runs to the end)
        assert [env.verify(task, d).status for d in drafts] == ["invalid"] * 3
        assert env.verify(task, "<think>x=1,y=1</think><answer>x = 8, y = 2</answer>").correct
    finally:
        env.close()


def test_types_of_values():
    constants = {"i": "Int", "r": "Real", "p": "Bool"}
    values = parse_assignment("i = -3, r = -3/4, p = false", constants)
    assert values == {"i": -3, "r": pytest.approx(-0.75), "p": False}
    assert str(parse_assignment("i = 0, r = .5, p = true", constants)["r"]) == "1/2"
    for bad in ("i = 1, r = 1/0, p = true", "i = 1, r = 1, p = 1", "i = true, r = 1, p = true"):
        with pytest.raises(ValueError):
            parse_assignment(bad, constants)


def test_unsat_is_correct_only_when_z3_proves_it(env):
    assert statuses(env, ODD, ["unsat", "UNSAT.", "a = 1, b = 1"]) == ["correct", "correct", "incorrect"]
    assert statuses(env, SUM, ["unsat"]) == ["incorrect"]  # z3 finds a model


def test_unknown_is_a_timeout_never_rewarded():
    env = get_env("smt", time_limit=1.0)
    task = env.make_task({"smtlib": HARD})
    start = time.monotonic()
    try:
        (verdict,) = env.verify_many([(task, "<answer>unsat</answer>")], workers=1)
    finally:
        env.close()
    assert verdict.status == "timeout" and verdict.score == 0.0, verdict
    assert time.monotonic() - start < 5.0


def test_division_by_zero_is_not_a_value(env):
    script = "(declare-const x Real) (assert (= (/ 1 x) 5))"
    assert statuses(env, script, ["x = 0", "x = 1/5", "x = 0.2"]) == ["incorrect", "correct", "correct"]


def test_quantified_assertions(env):
    script = "(declare-const k Int) (assert (forall ((z Int)) (>= (* k z z) 0)))"
    assert statuses(env, script, ["k = 2", "k = -1"]) == ["correct", "incorrect"]


@pytest.mark.parametrize("kind", KINDS)
def test_generated_tasks_are_what_they_claim(env, kind, tmp_path):
    tasks = []
    for difficulty in range(1, 6):
        gen = get_env("smt", kinds=kind, min_difficulty=difficulty, max_difficulty=difficulty)
        tasks += gen.generate(3, seed=difficulty)
    assert all(t["expected"] == ("unsat" if kind in UNSAT_KINDS else "sat") for t in tasks)
    assert [t["difficulty"] for t in tasks] == [d for d in range(1, 6) for _ in range(3)]
    # Through a task file: `load` audits every recorded answer with z3.
    path = write_jsonl(tmp_path / "gen.jsonl", [t.to_dict() for t in tasks])
    assert len(env.load(path)) == len(tasks)
    answers = [t.get("solution") or "unsat" for t in tasks]
    verdicts = env.verify_many([(t, f"<answer>{a}</answer>") for t, a in zip(tasks, answers, strict=True)])
    assert all(v.correct for v in verdicts), [v for v in verdicts if not v.correct]
    opposite = ["unsat" if t.get("solution") else "x = 0" for t in tasks]
    verdicts = env.verify_many([(t, f"<answer>{a}</answer>") for t, a in zip(tasks, opposite, strict=True)])
    assert not any(v.correct for v in verdicts)


def test_generation_is_seeded():
    env = get_env("smt")
    assert [t.to_dict() for t in env.generate(7, seed=5)] == [t.to_dict() for t in env.generate(7, seed=5)]
    assert [t.to_dict() for t in env.generate(7, seed=5)] != [t.to_dict() for t in env.generate(7, seed=6)]


def test_hostile_scripts_are_bounded():
    deep = "(declare-const x Int) (assert " + "(not " * (MAX_DEPTH + 5) + "true" + ")" * (MAX_DEPTH + 6)
    for script, why in [
        (deep, "nested deeper"),
        ("(declare-const x Int) (assert (> x 1" + "0" * 300 + "))", "more than 200 digits"),
        ("(declare-const x Int) (assert (> x 1))" * 4000, "longer than"),
        ("(declare-const x Int) (push 1) (assert (> x 1))", "'push' is not supported"),
        ("(declare-fun f (Int) Int) (assert (= (f 1) 2))", "no arguments"),
        ("(declare-const s String) (assert (= s s))", "sort"),
        ("(declare-const x Int) (assert (> x 1)", "unbalanced"),
        ("(declare-const x Int)", "asserts nothing"),
    ]:
        with pytest.raises(SmtLibError, match=why):
            parse_script(script)
    verdict = check_smt("(declare-const x Int) (assert (= x y))", "x = 1")
    assert verdict.status == "error" and "unknown constant y" in verdict.detail


def test_validate_names_file_line_and_field(assay, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [
        {"smtlib": SUM, "expected": "sat", "solution": "x = 8, y = 2"},
        {"smtlib": SUM, "expected": "unsat"},                      # z3 finds a model
        {"smtlib": SUM, "solution": "x = 1, y = 9"},               # the solution is false
        {"smtlib": "(declare-const x Int) (push 1)"},              # not a usable script
        {"smtlib": ODD, "expected": "unsat"},
        {"smtlib": "(declare-const x Int) (assert (= x y))"},      # z3 cannot read it
        {"smtlib": HARD, "expected": "unsat"},                     # no proof within the limit
    ])
    run = assay("validate", "smt", str(path))
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split(":")[1] for line in lines] == ["2", "3", "4", "6", "7"], lines
    assert lines[0].startswith(f"{path}:2: expected: recorded unsat, but satisfiable")
    assert lines[1].startswith(f"{path}:3: solution: assertion 2 is false")
    assert lines[2].startswith(f"{path}:4: smtlib: command 2: 'push'")
    assert "unknown constant y" in lines[3]
    assert lines[4].startswith(f"{path}:7: expected: recorded unsat, but z3 could not prove"), lines[4]
    assert "Traceback" not in run.stderr


def test_cli_sample_verify_validate(assay, tmp_path):
    sample = assay("sample", "smt", "-n", "14", "--seed", "2")
    assert sample.returncode == 0
    tasks = sample.jsonl()
    assert {t["kind"] for t in tasks} == set(KINDS)
    path = write_jsonl(tmp_path / "tasks.jsonl", tasks)
    assert assay("validate", "smt", str(path)).returncode == 0
    rows = [{"task": t, "completion": f"<answer>{t.get('solution', 'unsat')}</answer>"} for t in tasks]
    rows.append("{not json")
    rows.append({"task": {"smtlib": "(assert"}, "completion": "<answer>unsat</answer>"})
    run = assay("verify", "smt", str(write_jsonl(tmp_path / "in.jsonl", rows)))
    out = run.jsonl()
    assert run.returncode == 0 and len(out) == 16
    assert all(r["status"] == "correct" for r in out[:14])
    assert out[14]["status"] == "error" and "in.jsonl:15" in out[14]["detail"]
    assert out[15]["status"] == "error" and "in.jsonl:16: task.smtlib" in out[15]["detail"]


def test_bad_options_are_one_line(assay):
    for option in ("kinds=linear,nosuch", "max_difficulty=9", "prompt_style=lisp", "time_limit=nan"):
        run = assay("sample", "smt", "--set", option)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_without_z3_verify_is_one_line_and_sample_works(tmp_path):
    fake = tmp_path / "z3"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('No module named z3')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    path = write_jsonl(tmp_path / "in.jsonl", [{"task": {"smtlib": SUM}, "completion": "<answer>unsat</answer>"}])
    proc = forked_cli.run(["verify", "smt", str(path)], env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "assay: error: env 'smt': z3 is not installed: pip install 'assay[smt]' (the z3-solver package)"
    proc = forked_cli.run(["sample", "smt", "-n", "2"], env=env, timeout=60)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2


def test_compact_form():
    assert compact_prompt(SUM) == "x y|x+y=10;x>7:"
    assert compact_prompt(MIXED) == "r:R p:B|4*r=-3;p=(r<0):"
    assert compact_prompt("(declare-const x Int) (assert (= (+ (* 2 x) (* (- 3) x)) (- x 1)))") == "x|2*x-3*x=x-1:"
    env = get_env("smt", prompt_style="compact")
    task = env.make_task({"smtlib": SUM})
    assert task.prompt == "x y|x+y=10;x>7:"
    assert env.extract(" x=8,y=2 ") == "x=8,y=2"
    assert env.verify(task, "x=8,y=2").correct
    assert env.verify(task, "unsat").status == "incorrect"
    env.close()


def test_answer_key_groups_equal_assignments():
    env = get_env("smt")
    task = env.make_task({"smtlib": MIXED})
    keys = {env.answer_key(task, a) for a in ("r = -3/4, p = true", "p = TRUE; r = -0.75")}
    assert len(keys) == 1
    assert env.answer_key(task, "Unsat") == "unsat"
    assert env.answer_key(task, "r = 1") == "r=1"  # not a full assignment: the text


def test_schema_refuses_a_script_that_is_not_text(tmp_path):
    with pytest.raises(TaskFileError, match="smtlib: 3 is not of type 'string'"):
        get_env("smt").load(write_jsonl(tmp_path / "t.jsonl", [{"smtlib": 3}]))


def _pigeonhole(holes: int) -> str:
    name = {(i, j): f"p{i}h{j}" for i in range(holes + 1) for j in range(holes)}
    facts = [f"(or {' '.join(name[i, j] for j in range(holes))})" for i in range(holes + 1)]
    facts += [f"(not (and {name[i, j]} {name[k, j]}))"
              for j in range(holes) for i in range(holes + 1) for k in range(i + 1, holes + 1)]
    return " ".join(f"(declare-const {n} Bool)" for n in name.values()) + " ".join(
        f"(assert {f})" for f in facts)


def test_memory_cap_is_a_timeout_never_a_reward():
    script = _pigeonhole(8)  # z3 proves it in about a second with a few hundred MB
    capped = get_env("smt", memory_mb=16, time_limit=10)
    try:
        verdict = capped.verify(capped.make_task({"smtlib": script}), "<answer>unsat</answer>")
    finally:
        capped.close()
    assert verdict.status == "timeout" and "memory" in verdict.detail and verdict.score == 0.0, verdict


# -- issue 26 ---------------------------------------------------------------------------------


def test_a_too_long_script_is_named_not_printed(assay, tmp_path):
    long = "(declare-const x Int) (assert (> x 1))" * 3000  # more than 100,000 characters
    path = write_jsonl(tmp_path / "t.jsonl", [{"smtlib": long}])
    run = assay("validate", "smt", str(path))
    assert run.returncode == 1, run.stderr
    [line] = run.stdout.splitlines()
    assert line.startswith(f"{path}:1: smtlib: ") and "is too long" in line and "…" in line
    assert len(line) < 400, len(line)
    pairs = write_jsonl(tmp_path / "in.jsonl", [{"task": {"smtlib": long}, "completion": "x"}])
    run = assay("verify", "smt", str(pairs))
    [verdict] = run.jsonl()
    assert "is too long" in verdict["detail"] and len(verdict["detail"]) < 400


def test_everything_after_exit_is_ignored(env):
    script = parse_script("(declare-const x Int) (assert (> x 1)) (check-sat) (exit) "
                          "(assert (< x 0)) (declare-const y Int) (push 1) ) \" junk")
    assert list(script.constants) == ["x"] and script.assertions == ("(> x 1)",)
    assert statuses(env, "(declare-const x Int) (assert (> x 1)) (exit) (assert (< x 0))",
                    ["x = 2"]) == ["correct"]
    with pytest.raises(SmtLibError, match="asserts nothing"):
        parse_script("(declare-const x Int) (exit) (assert (> x 1))")
