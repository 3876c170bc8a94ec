"""Fuzzing every command that reads a file: `verify`, `validate`, `train --set train_file=`.

Calls run in process through click's CliRunner (a subprocess per example would cost a
second each). Properties: never a traceback; `verify` writes exactly one verdict per
input line, in order, each with a finite score in [0, 1]; a usage error is one line and
exit status 2; nothing the command started is left running.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from fuzz_inputs import (
    check_nothing_left,
    check_one_line_error,
    check_verdicts,
    children,
    env_options,
    fuzz_settings,
    json_values,
    jsonl_file,
    line_count,
    texts,
)
from hypothesis import given
from hypothesis import strategies as st

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.cli import cli  # noqa: E402
from assay.sandbox import Sandbox, SandboxError  # noqa: E402

_counter = itertools.count()


def invoke(*args: str, input: bytes | None = None):
    result = CliRunner().invoke(cli, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: hypothesis shrinks and shows the input
    assert "Traceback" not in result.stderr
    return result


def scratch(data: bytes, suffix: str = ".jsonl") -> str:
    folder = Path(tempfile.gettempdir()) / f"assay-fuzz-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    path = folder / f"in-{next(_counter)}{suffix}"
    path.write_bytes(data)
    return str(path)


def verify_and_check(env: str, data: bytes, *options: str, stdin: bool = False) -> None:
    before = children()
    path = "-" if stdin else scratch(data)
    result = invoke("verify", env, path, "--workers", "2", *options, input=data if stdin else None)
    if result.exit_code == 2:
        check_one_line_error(result.stderr)
        return
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    check_verdicts(rows, line_count(data), name="<stdin>" if stdin else path)
    summary = result.stderr.strip().splitlines()
    assert len(summary) == 1 and " verified in " in summary[0], result.stderr
    check_nothing_left(before)
    if not stdin:
        os.unlink(path)


def _sandbox_or_skip() -> None:
    try:
        Sandbox(backend="local", workers=1).close()
    except SandboxError as exc:
        pytest.skip(f"local sandbox unavailable: {exc}")


# -- verify -------------------------------------------------------------------------------------


@fuzz_settings()
@given(data=jsonl_file("countdown"), stdin=st.booleans())
def test_verify_countdown(data, stdin):
    verify_and_check("countdown", data, stdin=stdin)


@fuzz_settings(0.5)
@given(data=jsonl_file("math", max_lines=5))
def test_verify_math(data):
    verify_and_check("math", data, "--set", "time_limit=2")


@fuzz_settings(0.3)
@given(data=jsonl_file("code", max_lines=4))
def test_verify_code(data):
    _sandbox_or_skip()
    verify_and_check("code", data, "--set", "timeout=1")


@fuzz_settings()
@given(env=st.sampled_from(["countdown", "math", "code", "smt"]), options=st.data())
def test_verify_options_are_usable_or_one_line(env, options):
    chosen = options.draw(env_options(env))
    if env == "code" and chosen:  # a valid code option would start the sandbox: check the
        chosen.setdefault("backend", "nosuch")  # option handling, not the jails, here
    sets = [arg for key, value in chosen.items() for arg in ("--set", f"{key}={value}")]
    row = {"task": {"numbers": [1, 2], "target": 3}, "completion": "<answer>1+2</answer>"}
    if env == "math":
        row = {"task": {"answer": "3"}, "completion": "\\boxed{3}"}
    if env == "code":
        row = {"task": {"io": [{"stdin": "", "stdout": "3"}]}, "completion": "print(3)"}
    if env == "smt":
        row = {"task": {"smtlib": "(declare-const x Int) (assert (= x 3))"},
               "completion": "<answer>x = 3</answer>"}
    verify_and_check(env, (json.dumps(row) + "\n").encode(), *sets)


# -- validate -----------------------------------------------------------------------------------


@fuzz_settings()
@given(env=st.sampled_from(["countdown", "math", "code", "smt", "lean"]), data=st.data())
def test_validate(env, data):
    content = data.draw(jsonl_file(env, pairs=False))
    path = scratch(content)
    result = invoke("validate", env, path)
    assert result.exit_code in (0, 1), (result.exit_code, result.stderr)
    total = line_count(content)
    numbers = []
    for line in result.stdout.splitlines():
        assert line.startswith(path + ":"), line
        numbers.append(int(line[len(path) + 1 :].split(":", 1)[0]))
    assert numbers == sorted(numbers) and all(1 <= n <= total for n in numbers)
    empty = "holds no tasks" in result.stderr  # a file of blank lines and comments fails too
    assert (result.exit_code == 1) == (bool(numbers) or empty)
    assert not (empty and numbers)
    assert len(result.stderr.strip().splitlines()) == 1
    os.unlink(path)


# -- train --set train_file= -----------------------------------------------------------------------


@fuzz_settings(0.5)
@given(data=jsonl_file("countdown", pairs=False, max_lines=6))
def test_train_file(data):
    path = scratch(data)
    out = str(Path(tempfile.gettempdir()) / f"assay-fuzz-{os.getpid()}" / f"run-{next(_counter)}")
    before = children()
    result = invoke("train", "--model", "organism:tiny", "--steps", "0", "--quiet", "--out", out,
                    "--set", f"train_file={path}", "--set", "val_size=2", "--set", "eval_every=0")
    if result.exit_code == 2:
        check_one_line_error(result.stderr)
    else:
        assert result.exit_code == 0, (result.exit_code, result.stderr)
        assert json.loads((Path(out) / "summary.json").read_text())["steps"] == 0
    check_nothing_left(before)


# -- train --config FILE ----------------------------------------------------------------------------

CONFIG_KEYS = ["steps", "seed", "learning_rate", "env", "reward", "env.max_value", "prior.sft_steps",
               "collapse_signal", "eval_every", "group_size", "device", "train_file", "out"]


@st.composite
def config_files(draw) -> bytes:
    import yaml

    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=80))
    keys = st.one_of(st.sampled_from(CONFIG_KEYS), st.integers(), st.text(max_size=6))
    mapping = draw(st.dictionaries(keys, json_values(6), max_size=4))
    if kind == 1:
        return yaml.safe_dump(mapping, allow_unicode=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == 2:
        return draw(st.sampled_from([b"[1, 2]", b"- a", b"a: [" * 3000, b"\xef\xbb\xbfsteps: 1",
                                     b"? [a, b]\n: 1", b"steps: !!python/object:os.system x",
                                     b"steps: .nan", b"seed: 1e400", b"env: {max_value: .inf}",
                                     b"&a [*a]", b"a: &a\n  b: *a", b"seed: " + b"9" * 5000]))
    return draw(texts).encode("utf-8", "surrogatepass")


@fuzz_settings(0.5)
@given(content=config_files())
def test_train_config_file(content):
    path = scratch(content, suffix=".yaml")
    out = str(Path(tempfile.gettempdir()) / f"assay-fuzz-{os.getpid()}" / f"run-{next(_counter)}")
    # A model that does not exist: every run ends in a usage error, after the config is read.
    result = invoke("train", "--config", path, "--model", "/nonexistent/assay-model", "--steps", "0",
                    "--quiet", "--out", out)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    check_one_line_error(result.stderr)
    os.unlink(path)
