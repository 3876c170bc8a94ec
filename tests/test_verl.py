"""`assay.integrations.verl.compute_score`, called as veRL's reward manager calls it, on
every built-in env (veRL itself is not needed: the calling convention is plain Python)."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from test_lean_env import fake_repl  # noqa: F401  (the fixture)

from assay.envs import get_env
from assay.envs.math import MathEnv
from assay.integrations import verl
from assay.integrations.verl import compute_score


def manager_call(row: dict, response: str) -> dict:
    """What veRL's NaiveRewardManager does with one row of its data file and one response."""
    return compute_score(
        data_source=row["data_source"],
        solution_str=response,
        ground_truth=row["reward_model"]["ground_truth"],
        extra_info=row.get("extra_info"),
    )


def parquet_rows(env_name: str, tmp_path, n: int = 3) -> list[dict]:
    """The env's tasks written as veRL's parquet by the data script, read back."""
    out = tmp_path / f"{env_name}.parquet"
    proc = subprocess.run([sys.executable, "-m", "assay.integrations.verl", env_name,
                           "-n", str(n), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return pq.read_table(out).to_pylist()


RIGHT = {
    "countdown": lambda t: f"<think>...</think> <answer>{t['solution']}</answer>",
    "math": lambda t: f"So the answer is \\boxed{{{t.get('answer', t.get('solution'))}}}.",
    "code": lambda t: "```python\n" + t["code_prompt"] + t["canonical_solution"] + "\n```"
    if "code_prompt" in t else "```python\n" + t["prompt"] + t["canonical_solution"] + "\n```",
    "smt": lambda t: f"<answer>{t['solution']}</answer>",
}
WRONG = {
    "countdown": lambda t: "<answer>1 + 1</answer>",
    "math": lambda t: "\\boxed{123456789}",
    "code": lambda t: "```python\ndef nothing():\n    return 0\n```",
    "smt": lambda t: "<answer>unsat</answer>",
}


@pytest.mark.parametrize("env_name", sorted(RIGHT))
def test_every_builtin_env_scores_through_veRL_convention(env_name, tmp_path):
    rows = parquet_rows(env_name, tmp_path)
    assert rows and all(r["data_source"] == env_name for r in rows)
    assert rows[0]["prompt"][0]["role"] == "user" and rows[0]["prompt"][0]["content"]
    env = get_env(env_name)
    try:
        for row in rows:
            fields = json.loads(row["reward_model"]["ground_truth"])
            task = env.make_task(fields)
            for make, status in ((RIGHT[env_name], "correct"), (WRONG[env_name], None)):
                response = make(fields)
                got = manager_call(row, response)
                assert set(got) == set(verl.KEYS)
                expected = env.verify(task, response)  # the env's own verdict, directly
                assert (got["score"], got["status"]) == (expected.score, expected.status)
                assert got["acc"] == float(expected.status == "correct")
                if status == "correct":
                    assert got["status"] == "correct" and got["score"] == 1.0, (env_name, got)
                else:
                    assert got["status"] != "correct" and got["score"] < 1.0
    finally:
        env.close()


def test_lean_through_veRL_convention(fake_repl, tmp_path):  # noqa: F811
    statement = "theorem add_zero' (n : Nat) : n + 0 = n"
    truth = {"statement": statement}
    good = compute_score("lean", f"```lean\n{statement} := by omega\n```", truth)
    bad = compute_score("lean", f"```lean\n{statement} := by sorry\n```", truth)
    assert good["status"] == "correct" and good["score"] == 1.0
    assert bad["status"] != "correct" and bad["score"] == 0.0


def test_math_gold_answer_as_plain_text():
    assert compute_score("math", r"\boxed{\frac{1}{2}}", "0.5")["status"] == "correct"
    assert compute_score("math", r"\boxed{0.25}", "1/2")["status"] == "incorrect"


class RenamedMath(MathEnv):  # at module level: the math env's workers pickle it
    name = "math_renamed_verl_test"


def test_a_bare_gold_answer_is_read_by_the_env_class_not_its_name():
    """The env says which field a bare string is (`answer_field`): a subclass of math under
    another name reads it too, and an env without one (countdown) does not."""
    from assay.envs import register_env

    register_env(RenamedMath)
    assert compute_score("math_renamed_verl_test", r"\boxed{0.5}", "1/2")["status"] == "correct"
    assert verl.task_fields(get_env("countdown"), "7") == "7"


def test_a_bad_ground_truth_is_an_error_not_a_silent_zero():
    got = compute_score("countdown", "<answer>1+2</answer>", {"numbers": "nope", "target": 3})
    assert got == {"score": 0.0, "status": "error", "acc": 0.0}


def test_an_unknown_data_source_names_the_envs():
    with pytest.raises(ValueError, match="not an assay env.*countdown"):
        compute_score("gsm8k", "x", {"answer": "1"})


def test_env_options_ride_in_extra_info():
    truth = {"numbers": [2, 3], "target": 5}
    plain = compute_score("countdown", "<answer>2+3</answer>", truth)
    opts = compute_score("countdown", "<answer>2+3</answer>", truth,
                         {"env_options": {"format_score": 0.25}})
    assert plain["score"] == opts["score"] == 1.0
    wrong = compute_score("countdown", "<answer>2*3</answer>", truth,
                          {"env_options": {"format_score": 0.25}})
    assert wrong["score"] == 0.25 and wrong["status"] == "incorrect"


def test_data_script_bad_env_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "assay.integrations.verl", "nope", "--out",
                           str(tmp_path / "x.parquet")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.parquet").exists()


# -- issue 26: the data script as docs/integrations.md shows it ------------------------------


def data_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assay.integrations.verl", *args],
                          capture_output=True, text=True, timeout=120)


def test_data_script_creates_the_folders_of_out(tmp_path):
    out = tmp_path / "data" / "countdown" / "train.parquet"  # as docs/integrations.md writes it
    proc = data_script("countdown", "-n", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert len(pq.read_table(out).to_pylist()) == 4


@pytest.mark.parametrize(
    "args, words",
    [
        (["-n", "-5"], "-n must be at least 1"),
        (["-n", "0"], "-n must be at least 1"),
        (["--seed", "-1"], "--seed must be at least 0"),
        (["--out", "."], "is a folder"),
    ],
)
def test_data_script_mistakes_are_one_line(tmp_path, args, words):
    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "x.parquet")]
    proc = subprocess.run([sys.executable, "-m", "assay.integrations.verl", "countdown", *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr[-2000:]
    assert lines[0].startswith("assay: error: ") and not (tmp_path / "x.parquet").exists()


# -- a task file the data script cannot use is one line naming its first problem -------------


def test_data_script_names_the_first_bad_line_of_a_task_file(tmp_path):
    good = json.dumps(get_env("countdown").generate(1)[0].to_dict())
    tasks = tmp_path / "bad.jsonl"
    tasks.write_text("\n".join([good, '{"numbers": [1, 2], "target": "x"}', "{nope"]) + "\n")
    out = tmp_path / "x.parquet"
    proc = data_script("countdown", "--tasks", str(tasks), "--out", str(out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    # the count, then the first problem as `file:line: field: message`, then where to look
    assert lines[0].startswith(f"assay: error: 2 bad line(s) in {tasks}"), lines[0]
    assert f"; first: {tasks}:2: target: " in lines[0], lines[0]
    assert f"(see: assay validate countdown {tasks})" in lines[0], lines[0]
    assert not lines[0].endswith(":") and not out.exists()


def test_data_script_refuses_a_task_file_of_no_tasks(tmp_path):
    tasks = tmp_path / "empty.jsonl"
    tasks.write_text("\n# only a comment\n\n")
    out = tmp_path / "x.parquet"
    proc = data_script("countdown", "--tasks", str(tasks), "--out", str(out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0] == f"assay: error: task file {tasks} holds no tasks; nothing to write"
    assert not out.exists()


def test_data_script_task_file_that_is_not_there_is_one_line(tmp_path):
    out = tmp_path / "x.parquet"
    proc = data_script("countdown", "--tasks", str(tmp_path / "nope.jsonl"), "--out", str(out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "cannot read task file" in lines[0] and "nope.jsonl" in lines[0]
    assert not out.exists()


def test_extra_info_that_is_not_a_dict_and_a_bytes_response_are_read():
    truth = json.dumps({"numbers": [2, 3], "target": 5})
    assert compute_score("countdown", "<answer>2+3</answer>", truth, extra_info="abc")["score"] == 1.0
    assert compute_score("countdown", b"<answer>2+3</answer>", truth)["score"] == 1.0
