"""`assay audit ENV`: known reward hacks against real verifiers, counted per probe."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from assay.audit.audit import audit, false_positives
from assay.cli import cli
from assay.envs import Environment, get_env, register_env
from assay.verifiers import Verdict
from assay.verifiers.reasoning import outside_reasoning

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(cli, ["audit", *args])


def test_countdown_has_no_false_positives(tmp_path):
    out = tmp_path / "audit.json"
    result = run("countdown", "-n", "8", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data) == {"env", "tasks", "reference", "probes", "agreement"}
    assert data["env"] == "countdown" and data["agreement"] is None
    assert data["reference"]["tried"] == data["reference"]["accepted"] == 8
    names = [p["name"] for p in data["probes"]]
    assert names == ["empty_answer", "multiple_answers", "reasoning_only", "prompt_copy",
                     "format_only", "huge_answer", "lookalike_unicode", "restated_numbers",
                     "unused_numbers", "reused_numbers", "truncating_division"]
    for probe in data["probes"]:
        assert probe["tried"] > 0 and probe["false_positives"] == 0 and probe["examples"] == [], probe


def test_an_extractor_that_reads_reasoning_blocks_is_caught(monkeypatch):
    """Undo the fix the audit motivated (answers inside <think> are drafts): the audit
    must see it at once."""
    import assay.envs.countdown_formats as formats

    monkeypatch.setattr(formats, "outside_reasoning", lambda text: text)
    env = get_env("countdown")
    result = audit(env, env.generate(4, seed=1))
    by_name = {p["name"]: p for p in result["probes"]}
    assert by_name["reasoning_only"]["false_positives"] == 4 * 4  # every task, every form
    assert false_positives(result) == by_name["reasoning_only"]["false_positives"]
    example = by_name["reasoning_only"]["examples"][0]
    assert example["status"] == "correct" and "<think>" in example["completion"]


@register_env
class LaxEnv(Environment):
    """A verifier with the classic holes: it accepts the right number anywhere in the
    completion, after NFKC-free digit filtering, in any answer block."""

    name = "lax_audit_test"
    description = "a deliberately lax verifier (tests only)"
    verification = "in_process"

    def generate(self, n, seed=0):  # `product`, not `answer`: `audit_reference` says it
        return [self.make_task({"numbers": [i + 2, 3], "product": str((i + 2) * 3)}, id=f"lax-{i}")
                for i in range(n)]

    def render_prompt(self, task):
        return f"Multiply {task['numbers'][0]} by 3. Answer in <answer></answer>."

    def extract(self, completion):
        return completion if "<answer>" in completion else None

    def check(self, task, answer):
        digits = "".join(ch for ch in answer if ch.isdigit() or ch == " ")
        return Verdict.right() if task["product"] in digits.split() else Verdict.wrong()

    def audit_reference(self, task):
        return task["product"]

    def audit_probes(self, task, reference):
        return {"own_probe": [f"<answer>{reference}0</answer>"] if reference else []}


def test_a_lax_verifier_fails_the_audit_with_examples(tmp_path):
    out = tmp_path / "lax.json"
    result = run("lax_audit_test", "-n", "3", "-o", str(out))
    assert result.exit_code == 1, result.output
    data = json.loads(out.read_text())
    by_name = {p["name"]: p for p in data["probes"]}
    for name in ("multiple_answers", "reasoning_only", "huge_answer"):
        assert by_name[name]["false_positives"] > 0, by_name[name]
        assert by_name[name]["examples"][0]["status"] == "correct"
    assert by_name["own_probe"] == {"name": "own_probe", "tried": 3, "false_positives": 0,
                                    "errors": 0, "examples": []}
    assert "FALSE POSITIVES" in result.stderr


@register_env
class BrittleEnv(LaxEnv):
    """A strict verifier that breaks (raises) on an answer longer than it expects."""

    name = "brittle_audit_test"
    description = "a verifier that raises on long answers (tests only)"

    def check(self, task, answer):
        inner = answer.split("<answer>")[-1].split("</answer>")[0].strip()
        if len(inner) > 50:
            raise ValueError("answer too long to parse")
        return Verdict.right() if inner == task["product"] else Verdict.wrong()


def test_a_verifier_that_breaks_on_a_probe_fails_the_audit_not_ok(tmp_path):
    out = tmp_path / "brittle.json"
    result = run("brittle_audit_test", "-n", "3", "-o", str(out))
    by_name = {p["name"]: p for p in json.loads(out.read_text())["probes"]}
    assert by_name["huge_answer"]["false_positives"] == 0 and by_name["huge_answer"]["errors"] > 0
    assert result.exit_code == 1, result.output  # unjudged is not rejected
    line = next(ln for ln in result.stderr.splitlines() if "huge_answer" in ln)
    assert "VERIFIER ERRORS" in line and "ok" not in line.split()


def test_an_envs_own_probes_come_with_its_class_not_its_name():
    """The env declares its probes (`probes`, inherited): a subclass of countdown registered
    under a name of its own is audited with countdown's, and a name alone brings none."""
    from assay.audit.audit import probe_table
    from assay.envs.countdown import CountdownEnv
    from assay.envs.registry import _registered

    @register_env
    class RenamedCountdown(CountdownEnv):
        name = "countdown_renamed_audit_test"

    try:
        env = get_env("countdown_renamed_audit_test")
        result = audit(env, env.generate(3, seed=0))
    finally:
        _registered.pop(RenamedCountdown.name, None)
    by_name = {p["name"]: p for p in result["probes"]}
    assert list(by_name)[-3:] == ["unused_numbers", "reused_numbers", "truncating_division"]
    assert by_name["truncating_division"]["tried"] == 5 and false_positives(result) == 0
    # a subclass adds its own to its parent's
    extended = type("ExtendedCountdown", (CountdownEnv,), {
        "name": "countdown_extended_audit_test",
        "probes": {**CountdownEnv.probes, "mine": lambda ctx, task: [(task, ctx.wrap("0"))]}})
    assert list(probe_table(extended()))[-4:] == [*CountdownEnv.probes, "mine"]
    # named like a family member, but not of the family: the generic probes and its own only
    lookalike = type("NamedLikeRg", (LaxEnv,), {"name": "rg:chain_sum"})
    assert "hedged_answer" not in probe_table(lookalike())
    assert list(probe_table(lookalike()))[-1] == "own_probe"


@pytest.mark.slow
def test_math_against_math_verify_reports_the_disagreements(tmp_path):
    pytest.importorskip("math_verify")
    out = tmp_path / "math.json"
    result = run("math", "-n", "4", "--against", "math-verify", "-o", str(out))
    data = json.loads(out.read_text())
    assert result.exit_code == (1 if false_positives(data) else 0)
    a = data["agreement"]
    assert a["checker"] == "math-verify" and a["pairs"] > 0
    assert a["agree"] + a["only_assay_accepts"]["count"] + a["only_checker_accepts"]["count"] == a["pairs"]
    assert a["false_positives"]["assay"] == false_positives(data)  # the same pairs, counted twice
    # math-verify reads answers inside reasoning blocks (found by this audit)
    assert a["by_probe"]["reasoning_only"]["only_checker_accepts"] > 0
    example = a["only_checker_accepts"]["examples"][0]
    assert set(example) == {"probe", "task_id", "gold", "completion", "assay", "detail"}


def test_against_math_verify_reads_the_answer_a_reasoning_gym_env_extracts(tmp_path):
    """reasoning-gym's answers are in `<answer>` tags, which are not maths: math-verify is
    given the answer inside them, and so accepts every task's own answer."""
    pytest.importorskip("math_verify")
    pytest.importorskip("reasoning_gym")
    out = tmp_path / "rg.json"
    run("rg:basic_arithmetic", "-n", "4", "--against", "math-verify", "-o", str(out))
    a = json.loads(out.read_text())["agreement"]
    assert a["pairs"] > 0
    assert a["false_negatives"] == {"assay": 0, "math-verify": 0}
    assert "reference" not in a["by_probe"]


def test_math_task_files_are_audited_and_a_copied_question_is_reported():
    env = get_env("math")
    try:
        tasks = env.load(ROOT / "tasks" / "math.example.jsonl")
        result = audit(env, tasks)
    finally:
        env.close()
    by_name = {p["name"]: p for p in result["probes"]}
    assert result["reference"]["accepted"] == result["reference"]["tried"] == len(tasks)
    assert by_name["hedged_answers"]["tried"] > 0 and by_name["hedged_answers"]["false_positives"] == 0
    # every false positive is shown (up to 3) with the verdict that let it through
    for probe in result["probes"]:
        assert len(probe["examples"]) == min(3, probe["false_positives"])


def test_code_has_no_false_positives(code_env):
    tasks = code_env.load(ROOT / "tasks" / "code.example.jsonl")
    result = audit(code_env, tasks)
    assert result["reference"]["accepted"] == result["reference"]["tried"] > 0
    assert {p["name"]: p["false_positives"] for p in result["probes"]} == {
        p["name"]: 0 for p in result["probes"]}
    assert {"early_exit", "skipped_tests", "always_equal"} <= {p["name"] for p in result["probes"]}


@pytest.mark.parametrize(
    "args, message",
    [
        (["nonesuch"], "unknown env"),
        (["countdown", "--against", "sympy"], "--against: unknown checker 'sympy'"),
        (["countdown", "--tasks", "/no/such.jsonl"], "cannot read task file /no/such.jsonl"),
        (["countdown", "-n", "0"], "-n must be at least 1"),
        # nothing for math-verify to compare with: refused, not "0/0 agree"
        (["countdown", "-n", "2", "--against", "math-verify"],
         "--against math-verify compares answers with each task's gold `answer`, and none of "
         "the 2 tasks of env 'countdown' has one"),
        (["math", "-n", "2", "--set", "kinds=linear,quadratic", "--against", "math-verify"],
         "none of the 2 tasks of env 'math' has one"),
    ],
)
def test_audit_usage_errors_are_one_line(args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1


def test_n_and_seed_with_a_task_file_are_refused_not_ignored(tmp_path):
    tasks = str(ROOT / "tasks" / "countdown.example.jsonl")
    for extra, said in ((["-n", "3"], "-n:"), (["--seed", "2"], "--seed:")):
        result = run("countdown", "--tasks", tasks, *extra)
        assert result.exit_code == 2 and result.stderr.startswith(f"assay: error: {said}"), result.output
    assert run("countdown", "--tasks", tasks, "-o", str(tmp_path / "a.json")).exit_code == 0  # defaults: fine


def test_a_verifier_that_accepts_nothing_is_not_a_pass(monkeypatch):
    from assay.envs.countdown import CountdownEnv

    monkeypatch.setattr(CountdownEnv, "check", lambda self, task, answer: Verdict.error("broken"))
    result = run("countdown", "-n", "2")
    assert result.exit_code == 2
    assert "accepted none of the tasks' own answers (first: error: broken)" in result.output


def test_outside_reasoning():
    assert outside_reasoning("no tags") == "no tags"
    assert outside_reasoning("<think>a</think>b<think>c</think>d") == "bd"
    assert outside_reasoning("a</think>b") == "b"  # the chat template opened the block
    assert outside_reasoning("a<think>b") == "a"  # never closed: the rest is reasoning
    assert outside_reasoning("<think>" * 50_000) == ""  # linear, not quadratic
    env = get_env("countdown")
    task = env.make_task({"numbers": [5, 1, 2], "target": 7})
    assert env.verify(task, "<think>try 5+1*2</think> <answer>5+1*2</answer>").correct
    assert env.verify(task, "<think><answer>5+1*2</answer></think>").status == "invalid"


def test_code_lookalike_probe_changes_the_program_not_its_docstring():
    """A program is judged by running it: a lookalike digit in a docstring changes nothing
    (the generic probe's copy passed HumanEval/67 as `correct`, rightly), so code's own probe
    swaps characters in the program's numbers and operators only."""
    from assay.envs.code_probes import lookalike_unicode
    from assay.envs.probing import LOOKALIKES

    ref = 'def f(x):\n    """Return x + 10, e.g. f(1) == 11."""\n    return x + 10\n'
    task = get_env("code").generate(1, seed=0)[0]

    class Ctx:
        references = {task.id: ref}

        @staticmethod
        def wrap(text):
            return text

    attempts = [text for _, text in lookalike_unicode(Ctx, task)]
    assert len(attempts) == 3  # "+", "1" and "0" appear in code
    for text in attempts:
        assert text.splitlines()[1] == ref.splitlines()[1]  # the docstring is untouched
        assert text.splitlines()[2] != ref.splitlines()[2]
    assert any(f"return x {LOOKALIKES['+']} 10" in a for a in attempts)


def test_code_has_no_false_positives_on_humaneval(code_env):
    tasks = code_env.generate(20, seed=0)  # what `assay audit code` audits by default
    result = audit(code_env, tasks)
    assert result["reference"]["accepted"] == result["reference"]["tried"] == 20
    assert {p["name"]: p["false_positives"] for p in result["probes"]} == {
        p["name"]: 0 for p in result["probes"]}
    lookalike = next(p for p in result["probes"] if p["name"] == "lookalike_unicode")
    assert lookalike["tried"] > 20


def _never_returns(gold: str, completion: str) -> bool:
    while True:  # a parse that swallowed math-verify's alarm (its LaTeX parser can)
        pass


def test_a_checker_that_never_returns_is_stopped_and_counted(monkeypatch):
    from assay.audit import against
    from assay.envs import Task

    pytest.importorskip("math_verify")
    monkeypatch.setattr(against, "math_verify_judge", _never_returns)
    monkeypatch.setattr(against, "HARD_LIMIT", 0.5)
    task = Task(id="t", prompt="1+1?", fields={"answer": "2"})
    judged = [("reference", (task, "2"), Verdict.right("= 2")), ("hedge", (task, "2 or 3"), Verdict.wrong("no"))]
    started = time.monotonic()
    result = against.agreement("math-verify", judged)
    assert time.monotonic() - started < 10
    assert result["checker_failures"] == {"timeout": 2, "error": 0}
    assert result["pairs"] == 2 and result["false_negatives"]["math-verify"] == 1  # a failure is a no
