"""The command-line contract of docs/design.md, through the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from conftest import write_jsonl

# The organism's tiny prior is built once per machine and shared with the training tests.
os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))


def test_envs_lists_every_builtin_with_a_description(assay):
    out = assay("envs")
    assert out.returncode == 0
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert {"countdown", "math", "code", "smt", "lean"} <= set(lines)
    for name in ("countdown", "math", "code", "smt", "lean"):
        assert "cannot be loaded" not in lines[name], lines[name]


def test_sample_prints_seeded_jsonl(assay):
    a = assay("sample", "countdown", "-n", "5", "--seed", "3").jsonl()
    b = assay("sample", "countdown", "-n", "5", "--seed", "3").jsonl()
    c = assay("sample", "countdown", "-n", "5", "--seed", "4").jsonl()
    assert a == b and a != c and len(a) == 5
    assert all({"id", "prompt", "numbers", "target"} <= set(t) for t in a)


def test_sample_options(assay):
    tasks = assay("sample", "countdown", "-n", "20", "--set", "min_numbers=6",
                  "--set", "max_numbers=6").jsonl()
    assert all(len(t["numbers"]) == 6 for t in tasks)


def test_usage_errors_are_one_line_and_exit_2(assay, tmp_path):
    for args, needle in [
        (("sample", "nope"), "unknown env 'nope'"),
        (("sample", "countdown", "--set", "colour=red"), "unknown option 'colour'"),
        (("sample", "countdown", "--set", "max_numbers=many"), "expects int"),
        (("sample", "countdown", "--set", "novalue"), "KEY=VALUE"),
        (("verify", "countdown", str(tmp_path / "missing.jsonl")), "cannot read"),
        (("verify", "nope", str(tmp_path / "missing.jsonl")), "unknown env"),
        # click's own: a mistyped option or command, a missing argument, a bad choice
        (("verify", "countdown", "x.jsonl", "--worker", "2"),
         "No such option '--worker'. Did you mean '--workers'? (see assay verify --help)"),
        (("verfy",), "No such command 'verfy'"),
        (("sample",), "Missing argument 'ENV'. (see assay sample --help)"),
        (("train", "--backend", "nope"), "'nope' is not one of 'assay', 'trl'"),
    ]:
        out = assay(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert needle in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "Traceback" not in out.stderr


def test_verify_1000_solutions_correct_perturbed_none_correct(assay, tmp_path):
    tasks = assay("sample", "countdown", "-n", "1000", "--seed", "11",
                  "--set", "max_numbers=6").jsonl()
    good = [{"task": t, "completion": f"<answer>{t['solution']}</answer>"} for t in tasks]
    bad = [
        {"task": {**t, "target": t["target"] + 1}, "completion": f"<answer>{t['solution']}</answer>"}
        for t in tasks
    ]
    out = assay("verify", "countdown", str(write_jsonl(tmp_path / "good.jsonl", good)))
    assert out.returncode == 0
    verdicts = out.jsonl()
    assert len(verdicts) == 1000 and all(v["status"] == "correct" for v in verdicts)
    assert "correct 1000" in out.stderr

    out = assay("verify", "countdown", str(write_jsonl(tmp_path / "bad.jsonl", bad)),
                "-o", str(tmp_path / "out.jsonl"))
    verdicts = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(verdicts) == 1000 and not any(v["status"] == "correct" for v in verdicts)


def test_hostile_answers_are_invalid_and_fast(assay, tmp_path):
    task = {"numbers": [9, 9, 9], "target": 729}
    hostile = [
        "9**9**9",
        "__import__('os').system('touch /tmp/pwned')",
        "().__class__.__mro__[1].__subclasses__()",
        "[x for x in ().__class__.__base__.__subclasses__()]",
        "9*9*9 if True else 0",
        "(" * 10000 + "9" + ")" * 10000,
    ]
    rows = [{"task": task, "completion": f"<answer>{h}</answer>"} for h in hostile]
    out = assay("verify", "countdown", str(write_jsonl(tmp_path / "h.jsonl", rows)), timeout=30)
    assert [v["status"] for v in out.jsonl()] == ["invalid"] * len(hostile)


def test_malformed_lines_are_errors_naming_the_line_and_the_rest_is_verified(assay, tmp_path):
    rows = [
        {"task": {"numbers": [1, 2], "target": 3}, "completion": "<answer>1+2</answer>"},
        "{not json",
        {"task": {"numbers": [1, 2]}, "completion": "<answer>1+2</answer>"},
        {"completion": "x"},
        {"task": {"numbers": [1, 2], "target": 3}, "completion": 5},
        "",
        {"task": {"numbers": [1, 2], "target": 4}, "completion": "<answer>1+2</answer>"},
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", rows)
    out = assay("verify", "countdown", str(path))
    assert out.returncode == 0
    verdicts = out.jsonl()
    assert [v["status"] for v in verdicts] == [
        "correct", "error", "error", "error", "error", "error", "incorrect"
    ]
    assert f"{path}:2:" in verdicts[1]["detail"]
    assert "target" in verdicts[2]["detail"] and ":3:" in verdicts[2]["detail"]
    assert ":4:" in verdicts[3]["detail"] and ":5:" in verdicts[4]["detail"]
    assert "error 5" in out.stderr and "correct 1" in out.stderr


def test_verify_reads_stdin(assay):
    row = json.dumps({"task": {"numbers": [2, 3], "target": 6}, "completion": "<answer>2*3</answer>"})
    out = assay("verify", "countdown", "-", input=row + "\n")
    assert out.jsonl() == [{"score": 1.0, "status": "correct", "detail": "= 6"}]


def test_schema_and_validate(assay, tmp_path):
    schema = json.loads(assay("schema", "countdown").stdout)
    assert schema["required"] == ["numbers", "target"]
    bad = write_jsonl(tmp_path / "t.jsonl", [
        {"numbers": [1, 2], "target": 3}, {"numbers": "12", "target": 3}, "[", {"target": 1},
    ])
    out = assay("validate", "countdown", str(bad))
    assert out.returncode == 1
    assert out.stdout.splitlines() == [
        f"{bad}:2: numbers: '12' is not of type 'array'",
        f"{bad}:3: (line): invalid JSON: Expecting value at column 2",
        f"{bad}:4: numbers: 'numbers' is a required property",
    ]
    assert out.stderr.strip() == "1 good task(s), 3 bad line(s), 3 problem(s)"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("# nothing but a comment\n\n")
    out = assay("validate", "countdown", str(empty))
    assert out.returncode == 1, out.stderr  # train, eval and audit refuse it: so does validate
    assert "holds no tasks" in out.stderr


def test_train_with_a_missing_task_file_is_one_line(assay, tmp_path):
    out = assay("train", "--model", "organism:tiny",
                "--set", f"train_file={tmp_path / 'missing.jsonl'}", "--steps", "1",
                "--out", str(tmp_path / "run"), "--quiet")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"assay: error: cannot read task file {tmp_path / 'missing.jsonl'}: No such file or directory"
    ]


def test_verify_workers_are_bounded_and_never_more_than_the_pairs(assay, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from assay.cli import cli
    from assay.envs.countdown import CountdownEnv

    pairs = write_jsonl(tmp_path / "p.jsonl", [
        {"task": {"numbers": [2, 3], "target": 6}, "completion": "<answer>2*3</answer>"}] * 2)
    out = assay("verify", "countdown", str(pairs), "--workers", "100000")
    assert out.returncode == 2 and out.stderr.strip() == "assay: error: --workers must be from 1 to 1024"
    asked = []
    real = CountdownEnv.verify_many
    monkeypatch.setattr(CountdownEnv, "verify_many",
                        lambda self, pairs, workers=None, **kw: (asked.append(workers),
                                                                 real(self, pairs, workers=workers, **kw))[1])
    result = CliRunner().invoke(cli, ["verify", "countdown", str(pairs), "--workers", "64"])
    assert result.exit_code == 0, result.output
    assert asked == [2]  # two pairs: two workers, not 64 started to stop again


def test_every_experiment_is_a_command_though_none_is_imported_at_start(assay):
    """A command's start imports no built-in experiment's module, nor numpy, jsonschema or
    torch (0.2 s of every short command on 2 cores); `--help` still lists each experiment,
    and each one's command is made when it is asked for."""
    from assay.lab.registry import BUILTIN

    script = (
        "import sys, assay.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'jsonschema', "
        f"'torch') or m in {[f'assay.lab.{name}' for name in BUILTIN]!r}))\n"
    )
    started = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert started.stdout.strip() == "[]", started.stdout
    listed = assay("--help")
    assert listed.returncode == 0, listed.stderr
    commands = {line.split()[0] for line in listed.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert {name.replace("_", "-") for name in BUILTIN} | {"train", "eval", "report"} <= commands
    zoo = assay("zoo", "--help")
    assert zoo.returncode == 0 and "--priors" in zoo.stdout, zoo.stderr
    assert assay("collapse_step", "--help").returncode == 2  # the command is the dashed name
    assert assay("collapse-step", "--help").returncode == 0
