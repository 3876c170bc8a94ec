"""The lean env against a fake REPL that speaks Lean's JSON protocol (no toolchain here),
and without any toolchain: one clear line, exit status 2."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import forked_cli
import pytest
from conftest import write_jsonl

from assay.envs import get_env
from assay.envs.base import Task
from assay.envs.lean import TOOLCHAIN_MISSING, LeanUnavailable
from assay.verifiers.lean import axioms_verdict, proof_command, theorem_name

FAKE = Path(__file__).parent / "data" / "fake_lean_repl.py"
STATEMENT = "theorem add_zero' (n : Nat) : n + 0 = n"


@pytest.fixture
def fake_repl(tmp_path, monkeypatch):
    """ASSAY_LEAN_PATH points at an executable that runs the fake REPL."""
    script = tmp_path / "repl"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("ASSAY_LEAN_PATH", str(script))
    return script


@pytest.fixture
def no_toolchain(monkeypatch, tmp_path):
    monkeypatch.delenv("ASSAY_LEAN_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no repl, no lake
    return tmp_path


def verdicts(env, answers, statement=STATEMENT, **fields):
    task = env.make_task({"statement": statement, **fields})
    return env.verify_many([(task, a) for a in answers], workers=2)


def test_accepted_proofs_and_rejections(fake_repl):
    env = get_env("lean", time_limit=10)
    try:
        got = verdicts(env, [
            "```lean\nby rfl\n```",                                       # the proof alone
            f"```lean\n{STATEMENT} := by\n  simp\n```",                   # the whole theorem
            f"<answer>{STATEMENT.replace(' : ', '  :  ', 1)} := by omega</answer>",  # spacing aside
            "```lean\nby\n  intro h\n```",                                # Lean reports an error
            "```lean\nby FAKE_SORRY\n```",                                # the REPL reports a sorry
            "```lean\nby sorry\n```",                                     # sorry in the text
            "```lean\ntheorem add_zero' (n : Nat) : 0 + n = n := by simp\n```",  # changed
            "```lean\nby native_decide\n```",                             # a non-standard axiom
            "```lean\naxiom cheat : False\nby exact cheat.elim\n```",     # declares an axiom
            "no proof at all",
        ])
    finally:
        env.close()
    statuses = [v.status for v in got]
    assert statuses == ["correct", "correct", "correct", "incorrect", "incorrect", "incorrect",
                        "incorrect", "incorrect", "invalid", "invalid"], got
    assert "unsolved goals" in got[3].detail
    assert "sorry" in got[4].detail and "sorry" in got[5].detail
    assert "statement was changed" in got[6].detail
    assert "Lean.ofReduceBool" in got[7].detail
    assert "axiom" in got[8].detail


def test_a_proof_only_inside_reasoning_is_not_the_answer(fake_repl):
    env = get_env("lean", time_limit=10)
    try:
        got = verdicts(env, ["<think>```lean\nby rfl\n```</think>", "<think><answer>by rfl</answer></think>",
                             "<think>```lean\nby omega\n```</think>```lean\nby rfl\n```"])
    finally:
        env.close()
    assert [v.status for v in got] == ["invalid", "invalid", "correct"], got


def test_timeout_kills_the_repl_and_the_next_check_works(fake_repl):
    env = get_env("lean", time_limit=1.5)
    task = env.make_task({"statement": STATEMENT})
    try:
        slow, after = env.verify_many([(task, "```lean\nby SLEEP\n```"), (task, "```lean\nby rfl\n```")],
                                      workers=1)
        crashed, again = env.verify_many([(task, "```lean\nby CRASH\n```"),
                                          (task, "```lean\nby rfl\n```")], workers=1)
    finally:
        env.close()
    assert slow.status == "timeout" and after.status == "correct"
    assert crashed.status == "error" and "exited" in crashed.detail and again.status == "correct"


def test_header_runs_first(fake_repl):
    env = get_env("lean", time_limit=10)
    try:
        (ok,) = verdicts(env, ["```lean\nby rfl\n```"], header="import Mathlib")
    finally:
        env.close()
    assert ok.status == "correct"


def test_no_toolchain_is_one_line(no_toolchain):
    env = get_env("lean")
    with pytest.raises(LeanUnavailable, match="Lean toolchain not found"):
        env.verify_many([(env.generate(1)[0], "```lean\nby rfl\n```")])


def test_cli_without_toolchain_exits_2(assay, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"task": {"statement": STATEMENT}, "completion": "by rfl"}])
    env = {k: v for k, v in os.environ.items() if k != "ASSAY_LEAN_PATH"}
    env["PATH"] = str(tmp_path)
    proc = forked_cli.run(["verify", "lean", str(path)], env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"assay: error: {TOOLCHAIN_MISSING}"
    assert proc.stdout == ""


def test_cli_with_fake_repl(assay, fake_repl, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [
        {"task": {"statement": STATEMENT}, "completion": "```lean\nby rfl\n```"},
        {"task": {"statement": STATEMENT}, "completion": "```lean\nby sorry\n```"},
    ])
    run = assay("verify", "lean", str(path))
    assert run.returncode == 0, run.stderr
    assert [r["status"] for r in run.jsonl()] == ["correct", "incorrect"]
    sample = assay("sample", "lean", "-n", "3")
    assert sample.returncode == 0 and len(sample.jsonl()) == 3


def test_proof_command_keeps_the_statement():
    assert proof_command(STATEMENT, "by simp") == f"{STATEMENT} :=\nby simp"
    assert proof_command(STATEMENT, ":= by simp") == f"{STATEMENT} :=\nby simp"
    whole = proof_command(STATEMENT, f"{STATEMENT} := by\n  induction n\n  rfl")
    assert whole == f"{STATEMENT} :=\nby\n  induction n\n  rfl"
    assert proof_command(STATEMENT, "theorem other : True := trivial").status == "incorrect"
    assert proof_command(STATEMENT, "theorem add_zero' (n : Nat) : n + 0 = n ∨ True := by simp").status == "incorrect"
    assert proof_command(STATEMENT, "by exact (sorry : _)").status == "incorrect"
    assert proof_command(STATEMENT, "import Mathlib\nby simp").status == "invalid"
    assert proof_command(STATEMENT, "x" * 30_000).status == "invalid"
    assert theorem_name(STATEMENT) == "add_zero'"
    assert theorem_name("example : True") is None


def test_axioms_verdict():
    ok = {"messages": [{"severity": "info", "data": "'t' depends on axioms: [propext, Quot.sound]"}]}
    bad = {"messages": [{"severity": "info", "data": "'t' depends on axioms: [sorryAx]"}]}
    none = {"messages": [{"severity": "info", "data": "'t' does not depend on any axioms"}]}
    allowed = ("propext", "Classical.choice", "Quot.sound")
    assert axioms_verdict(ok, "t", allowed).correct
    assert axioms_verdict(bad, "t", allowed).status == "incorrect"
    assert axioms_verdict(none, "t", allowed).correct
    assert axioms_verdict({"messages": []}, "t", allowed).status == "error"


def test_schema_refuses_a_non_theorem():
    from assay.envs.taskfile import validate_fields

    env = get_env("lean")
    assert validate_fields(env, {"statement": STATEMENT}) == []
    assert validate_fields(env, {"statement": "def x := 1"})
    assert isinstance(env.make_task({"statement": STATEMENT}), Task)
