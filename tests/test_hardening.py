"""Regression tests of issue 13: malformed and hostile input answered with a verdict or one
line, forms that stop answers copying the question, checked options and configs, run
folders. Each test failed before its fix."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.cli import cli  # noqa: E402
from assay.envs import OptionError, get_env  # noqa: E402
from assay.envs.base import Task  # noqa: E402
from assay.sandbox import Sandbox, SandboxError  # noqa: E402
from assay.training import ConfigError, resolve  # noqa: E402
from assay.verifiers import Verdict  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, input: bytes | None = None):
    result = CliRunner().invoke(cli, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: the test shows it
    return result


def one_line_exit_2(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("assay: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def code_env():
    try:
        Sandbox(backend="local", workers=1).close()
    except SandboxError as exc:
        pytest.skip(f"local sandbox unavailable: {exc}")
    env = get_env("code", timeout=3.0, workers=2)
    yield env
    env.close()


def verdicts_of(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


# -- 1. lone surrogates ----------------------------------------------------------------


def test_surrogates_in_code_tasks_and_completions_do_not_abort_the_batch(code_env, tmp_path):
    good = {"task": {"io": [{"stdin": "", "stdout": "1\n"}]}, "completion": "print(1)"}
    rows = [
        good,
        {"task": {"io": [{"stdin": "\ud800", "stdout": "1\n"}]}, "completion": "print(1)"},
        {"task": {"tests": "assert f() == '\ud800'", "entry_point": "f"}, "completion": "def f(): return 1"},
        {"task": {"io": [{"stdin": "", "stdout": "1\n"}]}, "completion": "print(1)  # \ud800"},
        good,
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json escapes the surrogates
    result = run("verify", "code", str(path), "--set", "timeout=3")
    out = verdicts_of(result)
    assert [v["status"] for v in out] == ["correct", "error", "error", "error", "correct"]
    for line, verdict in zip((2, 3, 4), out[1:4], strict=True):
        assert f"s.jsonl:{line}" in verdict["detail"] and "surrogate" in verdict["detail"]
    # verify_many itself, for the API: surrogates anywhere are a verdict, never an exception
    task = Task("t", "", {"io": [{"stdin": "\udfff", "stdout": "1\n"}]})
    (verdict,) = code_env.verify_many([(task, "print(1)")])
    assert verdict.status == "error" and "surrogate" in verdict.detail


@pytest.mark.parametrize("name", ["countdown", "math", "smt"])
def test_surrogates_in_other_envs_are_verdicts(name):
    env = get_env(name)
    task = env.generate(1, seed=0)[0]
    verdicts = env.verify_many([(task, "<answer>\ud800</answer> \\boxed{\ud800}"), (task, "\udc80")], workers=1)
    assert all(v.status in ("invalid", "incorrect", "error") for v in verdicts)
    env.close()


# -- 2. deep nesting -------------------------------------------------------------------


def test_deep_nesting_is_an_error_verdict_and_a_problem_naming_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps({"task": {"numbers": [1, 2], "target": 3}, "completion": "<answer>1+2</answer>"})
    path.write_text(good + "\n" + "[" * 5000 + "]" * 5000 + "\n" + good + "\n")
    out = verdicts_of(run("verify", "countdown", str(path)))
    assert [v["status"] for v in out] == ["correct", "error", "correct"]
    assert "d.jsonl:2" in out[1]["detail"] and "nested" in out[1]["detail"]
    tasks = tmp_path / "t.jsonl"
    tasks.write_text('{"numbers": [1, 2], "target": 3}\n' + "[" * 3000 + "]" * 3000 + "\n")
    result = run("validate", "countdown", str(tasks))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"{tasks}:2: (line): invalid JSON: nested too deeply"]


# -- 3. answer forms -------------------------------------------------------------------


def _example(task_id: str) -> dict:
    for line in (ROOT / "tasks" / "math.example.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["id"] == task_id:
            return row
    raise KeyError(task_id)


@pytest.fixture(scope="module")
def math_env():
    env = get_env("math")
    yield env
    env.close()


@pytest.mark.parametrize(
    ("task_id", "copy", "right"),
    [
        ("half", r"\frac{3}{6}", r"\frac{1}{2}"),
        ("tiny", r"\frac{2005}{2005!}", r"\frac{1}{2004!}"),
        ("radical", r"\sqrt{50}", r"5\sqrt{2}"),
    ],
)
def test_shipped_examples_do_not_accept_a_copy_of_the_question(math_env, task_id, copy, right):
    task = math_env.make_task(_example(task_id), id=task_id)
    wrong, ok = math_env.verify_many([(task, f"\\boxed{{{copy}}}"), (task, f"\\boxed{{{right}}}")], workers=1)
    assert wrong.status == "incorrect", wrong
    assert ok.status == "correct", ok


def test_generated_fraction_tasks_want_lowest_terms(math_env):
    task = math_env.make_task(
        {"problem": "Compute $\\frac{19}{12}$. Give the answer as a fraction in lowest terms.",
         "answer": "\\frac{19}{12}", "form": "fraction"}
    )
    verdicts = math_env.verify_many(
        [(task, r"\boxed{\frac{38}{24}}"), (task, r"\boxed{38/24}"), (task, r"\boxed{\frac{19}{12}}"),
         (task, r"\boxed{19/12}"), (task, r"\boxed{1.58333}")],
        workers=1,
    )
    assert [v.status for v in verdicts] == ["incorrect", "incorrect", "correct", "correct", "incorrect"]


def test_every_generated_kind_passes_its_answer_and_fails_an_unreduced_one(math_env):
    tasks = math_env.generate(60, seed=3)
    pairs, expect = [], []
    for task in tasks:
        if "equation" in task.fields:
            roots = task["solution"]
            pairs.append((task, f"\\boxed{{{roots}}}"))
            expect.append("correct")
            continue
        pairs.append((task, f"\\boxed{{{task['answer']}}}"))
        expect.append("correct")
        problem = task["problem"]
        question = problem[problem.index("$") + 1 : problem.rindex("$")]
        if task["kind"] == "simplify" and "neq" in question:
            question = question.split("$")[0]
        pairs.append((task, f"\\boxed{{{question}}}"))  # the question copied
        expect.append("incorrect")
        if task["kind"] in ("arithmetic", "fraction"):  # the value, unreduced (times 2/2)
            sign, p, q = re.fullmatch(r"(-?)(?:\\frac\{(\d+)\}\{(\d+)\}|(\d+))", task["answer"]).group(1, 2, 3)
            p, q = (p, q) if q else (task["answer"].lstrip("-"), "1")
            pairs.append((task, f"\\boxed{{{sign}\\frac{{{2 * int(p)}}}{{{2 * int(q)}}}}}"))
            expect.append("incorrect")
    verdicts = math_env.verify_many(pairs, workers=2)
    bad = [(t["problem"] if "problem" in t.fields else t["equation"], c, v)
           for (t, c), v, e in zip(pairs, verdicts, expect, strict=True) if v.status != e]
    assert not bad, bad[:5]


def test_expanded_form_refuses_unreduced_coefficients(math_env):
    task = math_env.make_task({"problem": "Expand $(x+1)^2$.", "answer": "x^2 + 2x + 1", "form": "expanded"})
    wrong, ok = math_env.verify_many([(task, r"\boxed{x^2 + \frac{4}{2}x + 1}"), (task, r"\boxed{x^2+2x+1}")], workers=1)
    assert wrong.status == "incorrect" and ok.status == "correct"


# -- 4. encodings ----------------------------------------------------------------------


def test_non_utf8_lines_are_errors_naming_the_line_and_a_bom_is_not(tmp_path):
    good = json.dumps({"task": {"numbers": [1, 2], "target": 3}, "completion": "<answer>1+2</answer>"}).encode()
    path = tmp_path / "enc.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\r\n" + b'{"task": "\xff"}\n' + good + b"\n")
    out = verdicts_of(run("verify", "countdown", str(path)))
    assert [v["status"] for v in out] == ["correct", "error", "correct"]
    assert "enc.jsonl:2" in out[1]["detail"] and "UTF-8" in out[1]["detail"]
    tasks = tmp_path / "t.jsonl"
    tasks.write_bytes(b'\xef\xbb\xbf{"numbers": [1, 2], "target": 3}\n\xff\xfe\n{"numbers": [1], "target": 1}\n')
    result = run("validate", "countdown", str(tasks))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"{tasks}:2: (line): not UTF-8 text"]


def test_a_line_separator_inside_a_string_is_not_a_line_break(tmp_path):
    row = {"task": {"numbers": [1, 2], "target": 3, "note": "a\u2028b\x1cc\x85"}, "completion": "<answer>1+2</answer>"}
    path = tmp_path / "ls.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [v["status"] for v in verdicts_of(run("verify", "countdown", str(path)))] == ["correct"]


# -- 5. option ranges and scores ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("countdown", {"format_score": "nan"}),
        ("countdown", {"format_score": "2"}),
        ("countdown", {"format_score": "-0.1"}),
        ("countdown", {"max_value": "1e30"}),
        ("countdown", {"min_target": "-5", "max_target": "10**9"}),
        ("math", {"time_limit": "inf"}),
        ("math", {"time_limit": "nan"}),
        ("math", {"max_root": "100000000"}),
        ("math", {"max_denominator": "100000000"}),
        ("math", {"max_terms": "1000"}),
        ("code", {"timeout": "inf"}),
        ("code", {"timeout": "nan"}),
        ("code", {"timeout": "100000"}),
        ("code", {"workers": "-1"}),
        ("code", {"memory_mb": "100000000"}),
    ],
)
def test_env_options_are_range_checked(name, options):
    with pytest.raises(OptionError):
        get_env(name, **options)


def test_a_verdict_score_is_finite_and_in_0_1():
    for bad in (float("nan"), float("inf"), 2.0, -0.5):
        with pytest.raises(ValueError):
            Verdict(bad, "incorrect")
    assert Verdict(1, "correct").score == 1.0


def test_format_score_cli_is_one_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"task": {"numbers": [1, 2], "target": 3}, "completion": "<answer>1*2</answer>"}) + "\n")
    assert "format_score" in one_line_exit_2(run("verify", "countdown", str(path), "--set", "format_score=nan"))


# -- 6. training config ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("collapse_signal", "nosuch"),
        ("learning_rate", "inf"),
        ("learning_rate", "nan"),
        ("eval_every", "-1"),
        ("save_every", "-1"),
        ("keep_checkpoints", "-1"),
        ("train_size", "0"),
        ("val_size", "0"),
        ("warmup_steps", "-1"),
        ("temperature", "inf"),
        ("epsilon_low", "1.5"),
        ("epsilon_high", "-1"),
        ("adam_beta1", "1"),
        ("adam_beta2", "-0.1"),
        ("weight_decay", "nan"),
        ("max_grad_norm", "-1"),
        ("beta", "inf"),
        ("collapse_threshold", "nan"),
        ("verify_temperature", "0"),
        ("verify_max_new_tokens", "0"),
        ("seed", "-1"),
        ("out", ""),
        ("model", ""),
        ("wandb_project", ""),
    ],
)
def test_train_config_mistakes_name_the_field(key, value):
    flags = {"model": value if key == "model" else "organism:tiny"}
    with pytest.raises(ConfigError, match=key):
        resolve(sets={key: value}, flags=flags)


# -- 7 and 8. run folders and one-line failures of `assay train` --------------------------------

TRAIN = ["train", "--model", "organism:tiny", "--quiet", "--set", "prompts_per_step=2", "--set", "group_size=2",
         "--set", "val_size=2", "--set", "val_samples=1", "--set", "train_size=8", "--set", "eval_every=0",
         "--set", "max_new_tokens=8"]


def test_resume_on_an_empty_or_missing_folder_is_refused(tmp_path):
    assert "nothing to resume" in one_line_exit_2(run(*TRAIN, "--out", str(tmp_path / "missing"), "--resume"))
    (tmp_path / "empty").mkdir()
    assert "nothing to resume" in one_line_exit_2(run(*TRAIN, "--out", str(tmp_path / "empty"), "--resume"))


def test_a_zero_step_run_is_a_run(tmp_path):
    out = str(tmp_path / "zero")
    done = run(*TRAIN, "--out", out, "--steps", "0")
    assert done.exit_code == 0
    # it names what it wrote (no metrics.jsonl: no step)
    assert done.stderr.strip() == f"trained 0 steps -> {out} (config.yaml and summary.json)"
    assert "already holds a run" in one_line_exit_2(run(*TRAIN, "--out", out, "--steps", "1"))
    assert "trained no step" in one_line_exit_2(run("rescore", out, "--rewards", "verifier"))


def test_ctrl_c_exits_130_with_an_interrupted_summary(tmp_path, monkeypatch):
    from assay.training import Trainer

    real_step = Trainer.step

    def step(self):
        if self.step_count == 1:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", step)
    out = tmp_path / "int"
    result = run(*TRAIN, "--out", str(out), "--steps", "3")
    assert result.exit_code == 130, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "interrupted" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["steps"] == 1


def test_disk_full_is_one_line(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"task": {"numbers": [1, 2], "target": 3}, "completion": "<answer>1+2</answer>"}) + "\n")
    assert "/dev/full" in one_line_exit_2(run("verify", "countdown", str(path), "-o", "/dev/full"))


def test_a_broken_model_folder_is_one_line(tmp_path):
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"w": torch.randn(4, 4)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    line = one_line_exit_2(run(*TRAIN, "--model", str(folder), "--out", str(tmp_path / "r"), "--steps", "1"))
    assert "cannot load model" in line


def test_cuda_without_cuda_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = one_line_exit_2(run(*TRAIN, "--set", "device=cuda", "--out", str(tmp_path / "r"), "--steps", "1"))
    assert "cuda" in line


# -- 9. smaller ----------------------------------------------------------------------------


def test_a_checkpoint_carries_the_organisms_assay_json(tmp_path):
    from assay.training.checkpoint import latest
    from assay.training.config import model_hints

    out = tmp_path / "run"
    assert run(*TRAIN, "--out", str(out), "--steps", "1").exit_code == 0
    hints = model_hints(str(latest(out)))
    organism = model_hints("organism:tiny")
    assert hints and hints == organism
    # the run named by its folder or by checkpoints/last: the same checkpoint, the same
    # settings (not the defaults of a model that recommends none)
    for name in (out, out / "checkpoints" / "last"):
        assert model_hints(str(name)) == organism
        config = resolve(flags={"model": str(name)})
        assert config.env_options == resolve(flags={"model": "organism:tiny"}).env_options
        assert config.max_new_tokens == organism["train_defaults"]["max_new_tokens"]
    assert model_hints(str(tmp_path / "nothing" / "checkpoints" / "last")) == {}


def test_a_run_stopped_before_its_first_checkpoint_is_named_so(tmp_path):
    from assay.training.policy import ModelLoadError, run_checkpoint

    out = tmp_path / "run"
    assert run(*TRAIN, "--out", str(out), "--steps", "1", "--set", "save_every=0").exit_code == 0
    import shutil
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # as if stopped before the first
    for name in (out, out / "checkpoints" / "last"):
        with pytest.raises(ModelLoadError, match="has no checkpoint yet"):
            run_checkpoint(str(name))


def test_truncated_output_is_reported_as_such(code_env):
    task = Task("big", "", {"io": [{"stdin": "", "stdout": "x" * (2 << 20) + "\n"}]})
    (verdict,) = code_env.verify_many([(task, "print('x' * (2 << 20))")])
    assert verdict.status == "incorrect" and "truncated" in verdict.detail, verdict


def test_negative_seeds_are_refused():
    assert "seed" in one_line_exit_2(run("sample", "countdown", "--seed", "-1"))
    with pytest.raises(ConfigError, match="seed"):
        resolve(flags={"seed": -1, "model": "organism:tiny"})


@pytest.mark.parametrize("name", ["countdown", "math", "code"])
def test_a_negative_seed_gives_its_own_tasks_through_the_api(name):
    # random.Random(-n) is random.Random(n): env.generate(n, seed=-1) repeated seed 1's tasks
    env = get_env(name)
    tasks = {seed: [t.to_dict() for t in env.generate(8, seed=seed)] for seed in (-2, -1, 1, 2)}
    fields = {seed: [{k: v for k, v in t.items() if k != "id"} for t in rows] for seed, rows in tasks.items()}
    assert fields[-1] != fields[1] and fields[-2] != fields[2] and fields[-1] != fields[-2]
    assert tasks[-1] == [t.to_dict() for t in env.generate(8, seed=-1)]  # still reproducible
    env.close()


def test_partial_credit_is_the_same_rule_for_asserts_and_io(code_env):
    hang_after_two = (
        "calls = 0\n"
        "def f(x):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if calls > 2:\n"
        "        while True: pass\n"
        "    return x\n"
    )
    asserts = Task("a", "", {"tests": "assert f(1) == 1\nassert f(2) == 2\nassert f(3) == 3", "entry_point": "f"})
    io = Task("b", "", {"io": [{"stdin": "1", "stdout": "1\n"}, {"stdin": "2", "stdout": "2\n"},
                               {"stdin": "3", "stdout": "3\n"}]})
    io_program = "x = input()\nif x == '3':\n    while True: pass\nprint(x)\n"
    a, b = code_env.verify_many([(asserts, hang_after_two), (io, io_program)])
    assert (a.status, b.status) == ("incorrect", "incorrect"), (a, b)
    assert math.isclose(a.score, 2 / 3) and math.isclose(b.score, 2 / 3)
    assert "time limit" in a.detail and "timeout" in b.detail


def test_readme_says_an_unfenced_completion_runs_whole():
    readme = (ROOT / "README.md").read_text()
    assert "whole completion" in readme


@pytest.mark.slow
def test_a_real_sigint_exits_130_and_leaves_a_summary(assay, tmp_path):
    import signal
    import subprocess
    import time

    from conftest import ASSAY, sigint_as_at_a_terminal

    out = tmp_path / "sig"
    args = [ASSAY, *TRAIN, "--out", str(out), "--steps", "100000", "--set", "save_every=0"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_at_a_terminal)
    deadline = time.monotonic() + 120
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").stat().st_size):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["steps"] >= 1


# -- found by the fuzz suite ------------------------------------------------------------------


def test_an_empty_train_file_is_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\xef\xbb\xbf# only a comment\n")
    line = one_line_exit_2(run(*TRAIN, "--out", str(tmp_path / "r"), "--steps", "0", "--set", f"train_file={empty}"))
    assert "holds no tasks" in line


def test_a_bad_train_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"numbers": [1, 2], "target": 3}\n{"numbers": "x"}\n[[[\n')
    line = one_line_exit_2(run(*TRAIN, "--out", str(tmp_path / "r"), "--steps", "0", "--set", f"train_file={bad}"))
    assert "bad.jsonl:2" in line
    # lines counted as lines: line 2 has two problems (numbers, target), line 3 one
    assert f"2 bad line(s) in {bad} (3 problems)" in line, line


def test_a_malformed_code_task_is_its_own_error_verdict(code_env):
    good = Task("g", "", {"io": [{"stdin": "", "stdout": "1\n"}]})
    pairs = [(Task("a", "", {"value": None}), "print(1)"), (good, "print(1)"),
             (Task("b", "", {"io": [{"stdin": 5, "stdout": None}]}), "print(1)")]
    verdicts = code_env.verify_many(pairs)
    assert [v.status for v in verdicts] == ["error", "correct", "error"]
    assert verdicts[0].detail.startswith("task a: malformed task")


def test_a_broken_assay_json_is_one_line(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "assay.json").write_text('{"env": "countdown", ')
    line = one_line_exit_2(run(*TRAIN, "--model", str(folder), "--out", str(tmp_path / "r"), "--steps", "1"))
    assert "assay.json" in line


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"\xff\n", "not UTF-8"), (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
     (b"\x1f", "invalid YAML")],
)
def test_a_bad_config_file_is_one_line(tmp_path, content, words):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert words in one_line_exit_2(run(*TRAIN, "--config", str(path), "--out", str(tmp_path / "r")))


@pytest.mark.parametrize("content", [b"0: null\n", b"env: {1: 2}\n"])
def test_config_keys_that_are_not_text_are_one_line(tmp_path, content):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert "option names are text" in one_line_exit_2(run(*TRAIN, "--config", str(path), "--out", str(tmp_path / "r")))


def test_an_integer_too_large_for_a_float_option_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: " + "9" * 400 + "\n")
    assert "learning_rate" in one_line_exit_2(run(*TRAIN, "--config", str(path), "--out", str(tmp_path / "r")))


# -- assay report: a run folder it cannot read is one line naming file, line and field ------------

CONFIG = b"reward: verifier\nseed: 0\nsteps: 2\n"
ROW = b'{"step": 1, "val_accuracy": 0.5, "entropy": 1.0, "completion_length": 9}\n'


def run_folder(root: Path, metrics: bytes | None = ROW * 2, config: bytes | None = CONFIG,
               name: str = "r") -> Path:
    from conftest import make_run_folder

    return make_run_folder(root / name, metrics, config)


@pytest.mark.parametrize(
    ("metrics", "words"),
    [
        (b"\xff\n" + ROW, "metrics.jsonl:1: not UTF-8"),
        (b"[1]\n" + ROW, "metrics.jsonl:1: expected a JSON object"),
        (b"{}\n" + ROW, "metrics.jsonl:1: step: missing"),
        (b'{"step": "1"}\n' + ROW, "metrics.jsonl:1: step: expected"),
        (b'{"step": -1}\n' + ROW, "metrics.jsonl:1: step: expected"),
        (ROW + b'{"step": 2, "val_accuracy": "high"}\n' + ROW, "metrics.jsonl:2: val_accuracy: expected"),
        (b'{"step": 1, "val_accuracy": 2}\n' + ROW, "metrics.jsonl:1: val_accuracy: expected"),
        (b'{"step": 1, "entropy": NaN}\n' + ROW, "metrics.jsonl:1: entropy: expected"),
        (b'{"step": 1, "kl": Infinity}\n' + ROW, "metrics.jsonl:1: kl: expected"),
        (b'{"step": 1, "tokens": 1e308}\n' * 3, "metrics.jsonl:1: tokens: expected"),  # sum: inf
        (b'{"step": 1, "reward_accuracy": true}\n' + ROW, "metrics.jsonl:1: reward_accuracy: expected"),
        (b"[" * 5000 + b"]" * 5000 + b"\n" + ROW, "metrics.jsonl:1: invalid JSON: nested too deeply"),
        (b'{"step": ' + b"9" * 5000 + b"}\n" + ROW, "metrics.jsonl:1: invalid JSON"),
        (b'{"step": 1, "note": "\\ud800"}\n' + ROW, "metrics.jsonl:1: invalid text"),
        (b'{"step": 1, \n' + ROW, "metrics.jsonl:1: invalid JSON"),  # only the last line is a kill's
    ],
)
def test_report_a_bad_metrics_line_is_one_line(tmp_path, metrics, words):
    run_folder(tmp_path, metrics)
    assert words in one_line_exit_2(run("report", str(tmp_path)))


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (b"\xff", "config.yaml: not UTF-8"),
        (b"a: [", "config.yaml:1: invalid YAML"),
        (b"- a\n", "config.yaml: expected a mapping"),
        (b"a: " + b"[" * 5000, "config.yaml: invalid YAML"),
        (b"a: " + b"9" * 5000 + b"\n", "config.yaml: invalid YAML"),
        (b"seed: abc\n", "config.yaml: seed: expected"),
        (b"seed: -1\n", "config.yaml: seed: expected"),
        (b"steps: .inf\n", "config.yaml: steps: expected"),
        (b"reward: [1, 2]\n", "config.yaml: reward: expected"),
        (b"learning_rate: .nan\n", "config.yaml: learning_rate: expected a finite number"),
        (b"env: {max_value: -.inf}\n", "config.yaml: env.max_value: expected a finite number"),
        (b"created: 2020-01-01\n", "config.yaml: created: expected"),
        (b"1: 2\n", "config.yaml: option names are text"),
        (b'model: "\\ud800"\n', "config.yaml: model: a lone surrogate"),
        (b"a: &a [*a]\n", "config.yaml:1: YAML anchors and aliases are not supported"),  # issue 26
    ],
)
def test_report_a_bad_config_yaml_is_one_line(tmp_path, config, words):
    run_folder(tmp_path, config=config)
    assert words in one_line_exit_2(run("report", str(tmp_path)))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{", "lab.json: invalid JSON"),
        (b"[]", "lab.json: expected a JSON object"),
        (b'{"settings": {"seeds": null}}', "lab.json: settings.seeds: expected a list"),
        (b'{"settings": {"rewards": [[1]]}}', "lab.json: settings.rewards: expected a list of text"),
        (b'{"skipped": {"x": 1}}', "lab.json: skipped: expected a mapping of text to text"),
        (b'{"settings": {"model": NaN}}', "lab.json: settings.model: expected a finite number"),
    ],
)
def test_report_a_bad_lab_json_is_one_line(tmp_path, content, words):
    run_folder(tmp_path)
    (tmp_path / "lab.json").write_bytes(content)
    assert words in one_line_exit_2(run("report", str(tmp_path)))


def test_report_skips_only_a_last_line_cut_by_a_kill(tmp_path):
    run_folder(tmp_path, ROW + b'{"step": 2, "val_acc')
    result = run("report", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["runs"]["verifier"]["steps"] == 1


def test_report_a_reward_name_matplotlib_would_parse_as_maths(tmp_path):
    run_folder(tmp_path, config=b"reward: $\\frac{$\nseed: 0\nsteps: 2\n")
    result = run("report", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert "$\\frac{$" in json.loads((tmp_path / "summary.json").read_text())["runs"]


def test_report_that_cannot_be_written_is_one_line(tmp_path):
    run_folder(tmp_path)
    (tmp_path / "report.html").mkdir()
    assert "report.html" in one_line_exit_2(run("report", str(tmp_path)))


def test_report_an_error_naming_a_folder_with_a_newline_is_one_line(tmp_path):
    run_folder(tmp_path, b"[1]\n", name="a\nb")
    line = one_line_exit_2(run("report", str(tmp_path)))
    assert "a\\nb" in line and "expected a JSON object" in line


def test_a_train_config_integer_past_python_limits_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"steps: " + b"9" * 5000 + b"\n")
    assert "invalid YAML" in one_line_exit_2(run(*TRAIN, "--config", str(path), "--out", str(tmp_path / "r")))


def test_compare_trains_again_a_run_folder_it_cannot_read(tmp_path):
    from assay.lab.compare import finished_runs

    run_folder(tmp_path / "runs", b"[1]\n", name="bad")
    good = run_folder(tmp_path / "runs", ROW.replace(b'"step": 1', b'"step": 2'), name="good")
    (good / "summary.json").write_text("{}")
    assert finished_runs(tmp_path) == {good.resolve()}


# -- issue 26: run folders that cannot be corrupted ----------------------------------------------

BOMB = "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9) if i else ', '.join('x' * 9)}]\n"
               for i in range(10)) + "env: *a9\n"


def test_a_yaml_alias_bomb_in_a_train_config_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    line = one_line_exit_2(run(*TRAIN, "--config", str(path), "--out", str(tmp_path / "r")))
    assert f"{path}:1: " in line and "aliases are not supported" in line and len(line) < 300


def test_yaml_aliases_are_refused_in_a_run_config_read_back(tmp_path):
    from conftest import make_run_folder  # noqa: F401 - the report's reader of config.yaml

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text("e: &e countdown\nenv: *e\n")
    line = one_line_exit_2(run("rescore", str(folder), "--rewards", "verifier"))
    assert "config.yaml:1: " in line and "aliases are not supported" in line


def test_a_config_file_that_never_ends_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").symlink_to("/dev/zero")
    line = one_line_exit_2(run("rescore", str(tmp_path / "run"), "--rewards", "verifier"))
    assert "config.yaml" in line and "larger than" in line


LONG = "x" * 5000


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "countdown", "--set", f"max_value={LONG}"],
        ["sample", "countdown", "--set", f"{LONG}=1"],
        ["sample", "countdown", "--set", LONG],
        [*TRAIN, "--set", f"steps={LONG}"],
        [*TRAIN, "--set", f"loss_type={LONG}"],
        [*TRAIN, "--set", f"env.max_value={LONG}"],
        [*TRAIN, "--set", f"{LONG}=1"],
    ],
)
def test_an_error_shows_at_most_200_characters_of_a_bad_value(tmp_path, args):
    line = one_line_exit_2(run(*args, *(["--out", str(tmp_path / "r")] if args[0] == "train" else [])))
    # the value is cut (the rest of the line names the field and, for an unknown option,
    # every option of its owner)
    longest = max(len(run_) for run_ in re.findall("x+", line))
    assert "…" in line and longest <= 200 and len(line) < 800, line


def test_a_long_bad_value_in_a_yaml_config_is_cut(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"env: {{max_value: [{', '.join(['1'] * 3000)}]}}\n")
    line = one_line_exit_2(run(*TRAIN, "--config", str(path), "--out", str(tmp_path / "r")))
    assert "max_value" in line and "…" in line and len(line) < 400, line


@pytest.mark.parametrize("key", ["name", "self", "options"])
def test_an_option_called_name_or_self_is_an_unknown_option(tmp_path, key):
    line = one_line_exit_2(run("sample", "countdown", "--set", f"{key}=x"))
    assert f"unknown option '{key}' for env 'countdown'" in line
    (tmp_path / "in.jsonl").write_text("")
    assert f"unknown option '{key}'" in one_line_exit_2(
        run("verify", "countdown", str(tmp_path / "in.jsonl"), "--set", f"{key}=x"))
    assert f"unknown option '{key}'" in one_line_exit_2(run("audit", "countdown", "--set", f"{key}=x"))
    assert f"unknown option '{key}'" in one_line_exit_2(
        run(*TRAIN, "--set", f"env.{key}=x", "--out", str(tmp_path / "r")))
    config = tmp_path / "c.yaml"
    config.write_text(f"env_options: {{{key}: x}}\n")
    assert f"unknown option '{key}'" in one_line_exit_2(
        run(*TRAIN, "--config", str(config), "--out", str(tmp_path / "r")))
    for env in ("math", "code", "smt", "lean"):
        with pytest.raises(OptionError, match=f"unknown option '{key}' for env '{env}'"):
            get_env(env, **{key: "x"})


def test_name_and_self_in_other_places_options_arrive(tmp_path):
    from assay.integrations.verl import compute_score

    with pytest.raises(OptionError, match="unknown option 'name' for env 'countdown'"):
        compute_score("countdown", "x", {"numbers": [1, 2], "target": 3},
                      {"env_options": {"name": "x"}})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("env: countdown\nenv_options: {self: 1}\n")
    assert "unknown option 'self'" in one_line_exit_2(run("rescore", str(run_dir), "--rewards", "verifier"))
    assert "unknown option 'preset' for organism prior" in one_line_exit_2(
        run("prior", "--set", "preset=tiny"))


def test_a_symlink_loop_in_a_runs_folder_lists_each_run_once(tmp_path):
    from assay.lab.summary import find_runs

    root = tmp_path / "runs"
    run_folder(root, name="verifier")
    run_folder(root / "group", name="majority_vote")
    (root / "group" / "loop").symlink_to(root)  # runs/group/loop/group/loop/... forever
    (root / "again").symlink_to(root / "verifier")  # the same run under a second name
    found = find_runs(root)
    assert sorted(run.path.name for run in found) == ["majority_vote", "verifier"]
    result = run("report", str(root))
    assert result.exit_code == 0, result.stderr
    assert len(json.loads((root / "summary.json").read_text())["runs"]) == 2


# -- 10. where a command writes ------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["eval", "--model", "organism:tiny", "-n", "2", "--samples", "1", "--quiet"],
    TRAIN + ["--steps", "1"],
    ["train", "--model", "organism:tiny", "--quiet", "--steps", "1", "--backend", "trl"],
    ["compare", "--preset", "smoke", "--quiet"],
    ["zoo", "--preset", "smoke", "--quiet"],
], ids=["eval", "train", "train-trl", "compare", "an-experiment"])
def test_an_out_folder_that_cannot_be_made_is_one_line_before_any_work(tmp_path, command):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for out, said in ((blocker, "is a file, not a folder"), (blocker / "sub", "afile is a file")):
        line = one_line_exit_2(run(*command, "--out", str(out)))
        assert said in line and str(out) in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing made, nothing lost


def test_detector_eval_refuses_a_json_path_it_cannot_write_and_leaves_nothing(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    for path, said in ((folder, "is a folder"), (tmp_path / "missing" / "x.json", "no existing folder")):
        assert said in one_line_exit_2(run("detector-eval", str(tmp_path), "--json", str(path)))
    assert [p.name for p in tmp_path.iterdir()] == ["a-folder"]


def test_write_json_over_a_folder_fails_without_a_stray_temporary_file(tmp_path):
    from assay.training.checkpoint import write_json

    (tmp_path / "x.json").mkdir()
    with pytest.raises(OSError):
        write_json(tmp_path / "x.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_a_file_error_no_command_caught_is_still_one_line(monkeypatch, capfd):
    import assay.cli
    from assay.lab import evaluate

    def unwritable(**_):
        raise PermissionError(13, "Permission denied", "/ro/evaluate.json")

    monkeypatch.setattr(evaluate, "evaluate", unwritable)
    monkeypatch.setattr("sys.argv", ["assay", "eval", "--model", "organism:tiny", "--quiet"])
    with pytest.raises(SystemExit) as stop:
        assay.cli.main()
    assert stop.value.code == 2
    assert capfd.readouterr().err.splitlines() == ["assay: error: /ro/evaluate.json: Permission denied"]


@pytest.mark.parametrize("key, value, said", [
    ("train_defaults", 7, "train_defaults: expected an object, got 7"),
    ("env_options", [1], "env_options: expected an object, got [1]"),
    ("env", 3, "env: expected text, got 3"),
    ("train_defaults", {"learning_rate": "x"}, "train_defaults: config: option 'learning_rate' expects float"),
])
def test_a_damaged_assay_json_is_named_with_its_field(tmp_path, key, value, said):
    from assay.training.checkpoint import latest
    from assay.training.config import ConfigError

    out = tmp_path / "run"
    assert run(*TRAIN, "--out", str(out), "--steps", "1").exit_code == 0
    meta_path = latest(out) / "assay.json"
    meta = json.loads(meta_path.read_text())
    meta[key] = value
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ConfigError) as err:
        resolve(flags={"model": str(out)})
    assert str(err.value).startswith(f"{latest(out)}/assay.json: {said}"), err.value


def test_a_task_file_of_default_prompts_is_named_when_the_run_writes_others(tmp_path):
    """`assay sample countdown` stores the prompt countdown writes by default; the organism
    reads the compact one, and would train on prompts it cannot read without a word."""
    sampled = run("sample", "countdown", "-n", "8")
    assert sampled.exit_code == 0
    stored = tmp_path / "stored.jsonl"
    stored.write_text(sampled.stdout)
    trained = run(*TRAIN, "--set", f"train_file={stored}", "--out", str(tmp_path / "a"), "--steps", "1")
    assert trained.exit_code == 0, trained.output
    assert f"{stored}: 8 of 8 tasks carry the prompt countdown writes with its default options" in trained.stderr
    bare = tmp_path / "bare.jsonl"  # without `prompt`: written for the run, nothing to say
    bare.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "prompt"}) + "\n"
                            for line in sampled.stdout.splitlines()))
    trained = run(*TRAIN, "--set", f"train_file={bare}", "--out", str(tmp_path / "b"), "--steps", "1")
    assert trained.exit_code == 0 and "carry the prompt" not in trained.stderr, trained.stderr


def test_a_damaged_value_in_a_runs_config_yaml_names_the_file(tmp_path):
    out = tmp_path / "run"
    assert run(*TRAIN, "--out", str(out), "--steps", "1").exit_code == 0
    saved = out / "config.yaml"
    saved.write_text(saved.read_text().replace("learning_rate: ", "learning_rate: fast #", 1))
    said = one_line_exit_2(run(*TRAIN, "--out", str(out), "--steps", "2", "--resume"))
    assert said == f"assay: error: {saved}: option 'learning_rate' expects float, got 'fast'", said


def test_a_hub_id_with_the_hub_unreachable_is_one_line_at_once(tmp_path):
    """It retried for most of a minute, printing each retry, before its one line."""
    import subprocess
    import sys
    import time

    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    for args in (["train", "--model", "no-such/model", "--steps", "1", "--out", str(tmp_path / "t")],
                 ["compare", "--preset", "smoke", "--model", "no-such/model", "--out", str(tmp_path / "c")]):
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "assay.cli", *args], capture_output=True, text=True,
                              timeout=300, env=env)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "the hub cannot be reached from here" in lines[0], proc.stderr
        assert time.monotonic() - started < 60
