"""The math environment: generators, task files, bounded verification, the CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import write_jsonl

from assay.envs import OptionError, get_env
from assay.envs.math import KINDS, MathEnv

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env():
    env = get_env("math")
    yield env
    env.close()


def reference_answer(task) -> str:
    """The generator's own answer: the gold, or for equation tasks the recorded solution."""
    return str(task.get("answer", task.get("solution")))


# -- generators ----------------------------------------------------------------------


def test_generation_is_reproducible_and_covers_every_kind(env):
    first = [t.to_dict() for t in env.generate(20, seed=7)]
    again = [t.to_dict() for t in env.generate(20, seed=7)]
    other = [t.to_dict() for t in env.generate(20, seed=8)]
    assert first == again and first != other
    assert {t["kind"] for t in first} == set(KINDS)


def test_kinds_are_selected_by_option_as_on_the_command_line():
    env = MathEnv(**{"kinds": "linear,quadratic"})
    assert {t["kind"] for t in env.generate(10)} == {"linear", "quadratic"}
    with pytest.raises(OptionError, match="kinds"):
        MathEnv(kinds="linear,calculus")


def test_equation_tasks_carry_no_gold_answer(env):
    for task in env.generate(10, seed=1):
        if task["kind"] in ("linear", "quadratic"):
            assert "answer" not in task.fields and "=" in task["equation"]


def test_every_generated_task_accepts_its_own_answer_and_rejects_a_wrong_one(env):
    tasks = env.generate(60, seed=3)
    right = [(t, f"Thus \\boxed{{{reference_answer(t)}}}.") for t in tasks]
    wrong = [(t, f"\\boxed{{{reference_answer(t)} + 1}}") for t in tasks]
    verdicts = env.verify_many(right + wrong, workers=2)
    for (task, _), verdict in zip(right, verdicts[: len(tasks)], strict=True):
        assert verdict.correct, (task.to_dict(), verdict)
    for (task, _), verdict in zip(wrong, verdicts[len(tasks) :], strict=True):
        assert verdict.status == "incorrect", (task.to_dict(), verdict)


def test_equation_tasks_are_checked_without_their_recorded_solution(env):
    task = next(t for t in env.generate(10, seed=2) if t["kind"] == "quadratic")
    solution = task.fields.pop("solution")
    assert env.verify(task, f"\\boxed{{{solution}}}").correct
    first_root = solution.split(",")[0]
    if "," in solution:  # two distinct roots: one alone is not enough
        assert env.verify(task, f"\\boxed{{{first_root}}}").status == "incorrect"


def test_copying_the_question_does_not_pass_for_its_value(env):
    arithmetic = next(t for t in env.generate(5, seed=4) if t["kind"] == "fraction")
    expression = arithmetic["problem"].split("$")[1]
    verdict = env.verify(arithmetic, f"\\boxed{{{expression}}}")
    assert verdict.status == "incorrect" and "not an integer or a fraction" in verdict.detail
    simplify = next(t for t in env.generate(5, seed=4) if t["kind"] == "simplify")
    question = simplify["problem"].split("$")[1]
    assert env.verify(simplify, f"\\boxed{{{question}}}").status == "incorrect"


def test_prompts_ask_for_a_boxed_answer(env):
    for task in env.generate(5):
        assert "\\boxed{}" in task.prompt
    assert env.make_task({"answer": "1"}).prompt.startswith("Put your final answer")


# -- task files --------------------------------------------------------------------------


def test_the_example_task_file_loads_and_its_answers_verify(env):
    tasks = env.load(ROOT / "tasks" / "math.example.jsonl")
    golds = {t.id: t.get("answer") for t in tasks}
    assert r"\{-3, 3\}" in golds.values() and "[-1, 3]" in golds.values()  # a set, an interval
    verdicts = env.verify_many([(t, f"\\boxed{{{reference_answer(t)}}}") for t in tasks], workers=2)
    assert all(v.correct for v in verdicts), verdicts


def test_gold_answers_may_be_json_numbers(env):
    assert env.check_completion(env.make_task({"answer": 873}), r"\boxed{873}").correct
    tiny = env.make_task({"answer": 1e-7})  # not read as "1e-07", i.e. 1*e - 7
    assert env.check_completion(tiny, r"\boxed{0.0000001}").correct
    assert env.check_completion(tiny, r"\boxed{e - 7}").status == "incorrect"


def test_bad_task_lines_name_the_field(env, tmp_path):
    from assay.envs import TaskFileError

    path = write_jsonl(
        tmp_path / "tasks.jsonl",
        [{"answer": "1"}, {"problem": "no gold"}, {"answer": "2", "form": "pretty"},
         {"equation": "x + 1 = 3", "answer": "2"}],
    )
    with pytest.raises(TaskFileError) as info:
        env.load(path)
    assert info.value.problems == [
        f"{path}:2: answer: 'answer' is a required property",
        f"{path}:3: form: 'pretty' is not one of ['number', 'fraction', 'simplified', 'expanded']",
        # an equation is label-free: jsonschema's own words were "False schema does not allow '2'"
        f"{path}:4: answer: not allowed in a task with `equation`",
    ]


def test_a_broken_equation_in_a_task_is_an_error_naming_it(env):
    task = env.make_task({"equation": "y + 1 = 2", "variable": "x"}, id="t1")
    verdict = env.verify(task, "\\boxed{1}")
    assert verdict.status == "error" and "t1" in verdict.detail and "'x'" in verdict.detail


# -- verification under the hard limit -----------------------------------------------


def test_hedging_through_the_environment(env):
    task = env.make_task({"answer": "2"})
    verdict = env.verify(task, r"It is \boxed{2} or maybe \boxed{3}.")
    assert verdict.status == "incorrect" and "hedging" in verdict.detail
    assert env.verify(task, "The answer is 2.").status == "invalid"


PATHOLOGICAL = {
    "tower": r"\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}",
    "tower of tens": r"\boxed{10^{10^{10}}}",
    "thousands of brackets": r"\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}",
    "thousands of braces": r"\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}",
    "unclosed boxes": r"\boxed{" * 50_000,
    "huge factorial": r"\boxed{(10^{10})!}",
    "slow expansion": r"\boxed{(x+1)^{2000}}",
}


def test_pathological_latex_returns_within_the_time_bound_from_a_thread():
    env = get_env("math", time_limit=1.0)
    task = env.make_task({"answer": "x^2 + 1"})
    pairs = [(task, completion) for completion in PATHOLOGICAL.values()]
    result: dict = {}

    def run() -> None:  # off the main thread, where SIGALRM-based limits fail
        start = time.perf_counter()
        result["verdicts"] = env.verify_many(pairs, workers=2)
        result["elapsed"] = time.perf_counter() - start

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    statuses = dict(zip(PATHOLOGICAL, (v.status for v in result["verdicts"]), strict=True))
    assert statuses["slow expansion"] == "timeout"  # sympy really runs away on this one
    assert all(s in ("incorrect", "invalid", "timeout") for s in statuses.values()), statuses
    # Seven jobs on two workers, each bounded by 1 s (plus worker restarts).
    assert result["elapsed"] < 8, result["elapsed"]
    # The pool recovers: a normal check right after still works.
    assert env.verify(task, r"\boxed{1 + x^2}").correct
    env.close()


def test_scoring_in_process_works_off_the_main_thread(env):
    """math-verify's own signal timeouts are off (they raise off the main thread)."""
    task = env.make_task({"answer": r"\frac{1}{2}"})
    out = []
    thread = threading.Thread(target=lambda: out.append(env.check_completion(task, r"\boxed{0.5}")))
    thread.start()
    thread.join(timeout=30)
    assert out and out[0].correct, out


def _verify_in_this_process(completion: str) -> str:
    env = get_env("math", time_limit=2.0)
    try:
        return env.verify(env.make_task({"answer": "2"}), completion).status
    finally:
        env.close()


def test_verification_works_inside_a_daemonic_pool_worker():
    """multiprocessing.Pool workers are daemonic, and may not start children by default."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.map(_verify_in_this_process, [r"\boxed{2}", r"\boxed{3}"]) == [
            "correct",
            "incorrect",
        ]


def _start_workers_then_die(sender) -> None:
    env = get_env("math")
    env.verify_many([(env.make_task({"answer": "1"}), r"\boxed{1}")] * 2, workers=2)
    sender.send([w.process.pid for w in env._pool(2)._workers])  # a pipe: sent before we exit
    os._exit(0)  # die without closing the pool, as a crashed or killed process would


def test_verifier_workers_exit_when_their_parent_dies():
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    parent = ctx.Process(target=_start_workers_then_die, args=(sender,))
    parent.start()
    assert receiver.poll(60)
    pids = receiver.recv()
    parent.join(timeout=30)
    deadline = time.monotonic() + 10
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive.discard(pid)
        time.sleep(0.1)
    for pid in alive:  # do not leave them behind if the test fails
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"orphaned verifier workers {sorted(alive)}"


def test_the_environment_travels_to_worker_processes(env):
    clone = pickle.loads(pickle.dumps(env))
    assert clone.options == env.options and clone.time_limit == env.time_limit


def test_answer_keys_group_equivalent_answers(env):
    task = env.make_task({"answer": "1"})
    keys = [env.answer_key(task, a) for a in ["0.5", r"\frac{1}{2}", "x = 1/2", "2"]]
    assert keys[0] == keys[1] == keys[2] != keys[3]


# -- the CLI -----------------------------------------------------------------------------


def test_cli_verify_math(assay, tmp_path):
    rows = [
        {"task": {"answer": r"\frac{1}{2004!}"}, "completion": r"\boxed{\frac{1}{2006!}}"},
        {"task": {"answer": r"\{1, 2\}"}, "completion": r"\boxed{2} and \boxed{1}"},
        {"task": {"answer": "2"}, "completion": r"\boxed{2} \boxed{3}"},
        {"task": {"answer": "[-1, 3]"}, "completion": r"<answer>[-1,3]</answer>"},
        {"task": {"equation": "x^2 - 5x + 6 = 0"}, "completion": r"\boxed{x = 3, x = 2}"},
        {"task": {"answer": "4"}, "completion": PATHOLOGICAL["tower of tens"]},
        {"task": {"answer": "4"}, "completion": "the answer is 4"},
        {"task": {"problem": "no gold"}, "completion": r"\boxed{4}"},
    ]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    run = assay("verify", "math", str(path), "--workers", "2")
    assert run.returncode == 0, run.stderr
    statuses = [row["status"] for row in run.jsonl()]
    assert statuses == [
        "incorrect",
        "correct",
        "incorrect",
        "correct",
        "correct",
        "incorrect",
        "invalid",
        "error",
    ]
    assert "in.jsonl:8" in run.jsonl()[7]["detail"]
    assert "correct 3" in run.stderr


def test_cli_sample_math_with_kinds(assay):
    run = assay("sample", "math", "-n", "4", "--seed", "1", "--set", "kinds=quadratic")
    assert run.returncode == 0, run.stderr
    tasks = run.jsonl()
    assert len(tasks) == 4 and all(t["kind"] == "quadratic" for t in tasks)
    assert all(json.dumps(t) for t in tasks)


def test_last_number_reads_the_final_number_of_plain_prose():
    from assay.verifiers.latex_answer import last_number

    assert last_number("6 - 29 = -23, so the answer is -23.") == "-23"
    assert last_number("The total is 1,234 apples") == "1234"
    assert last_number("3 and 3.5.") == "3.5"
    assert last_number("<think>9</think> it is 4") == "4"  # a draft is not the answer
    assert last_number("x2 y7 z") is None  # digits inside words are not numbers
    assert last_number("no number here") is None


def test_answer_format_last_number_checks_the_last_number():
    env = get_env("math", kinds=["arithmetic"], max_terms=2, answer_format="last_number")
    task = env.generate(1, seed=1)[0]
    gold = int(task["answer"])
    assert env.verify(task, f"First 3, then the sum is {gold}.").status == "correct"
    assert env.verify(task, f"The sum is {gold}, or maybe {gold + 1}").status == "incorrect"
    assert env.verify(task, f"\\boxed{{{gold}}}").status == "correct"
    none = env.verify(task, "I cannot say")
    assert none.status == "invalid" and "no number" in none.detail
    # the default reads boxes only: prose is no answer
    assert get_env("math").verify(task, f"The sum is {gold}.").status == "invalid"


def test_an_unknown_answer_format_is_named():
    with pytest.raises(ValueError, match="answer_format must be one of boxed, last_number"):
        get_env("math", answer_format="first_number")


def test_verifying_and_voting_use_the_workers_already_started():
    """`verify` and `answer_key` after `start_workers`: no second pool is forked (forked later, from a process
    holding a model, its worker would keep a copy of every page that training writes)."""
    env = get_env("math")
    try:
        env.start_workers(2)
        (pool,) = env._pools.values()
        before = set(multiprocessing.active_children())
        task = env.make_task({"answer": "1"})
        assert env.verify(task, r"\boxed{1}").status == "correct"
        assert env.answer_key(task, "0.5") == env.answer_key(task, r"\frac{1}{2}")  # votes too
        assert tuple(env._pools.values()) == (pool,)
        assert set(multiprocessing.active_children()) <= before  # nothing forked since
    finally:
        env.close()
