"""Hypothesis strategies for the fuzz suite: random and adversarial JSONL, env options and
completions, and the checks every answer must pass.

`ASSAY_FUZZ_EXAMPLES` sets the number of examples per test (default: a CI-sized run);
see docs/development.md, "Fuzzing".
"""

from __future__ import annotations

import json
import math
import os
import re
import time

import psutil
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from assay.verifiers import STATUSES

EXAMPLES = int(os.environ.get("ASSAY_FUZZ_EXAMPLES", "20"))
BOM = b"\xef\xbb\xbf"


def fuzz_settings(share: float = 1.0) -> settings:
    """Settings for one fuzz test: `share` of the examples (slow targets get fewer)."""
    return settings(
        max_examples=max(3, int(EXAMPLES * share)),
        deadline=None,
        database=None,  # CI machines start clean; a long run reports what it finds itself
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture],
    )


# -- text ------------------------------------------------------------------------------

# Every code point, lone surrogates and control characters included.
any_text = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
hostile_text = st.sampled_from(
    [
        "\ud800", "\udfff", "\udc80", "\x00", "\x1c\x1d\x1e\x85\u2028\u2029", "\r", "\r\n",
        "\ufeff", "\u202e", "🙂" * 50, "a" * 100_000, "[" * 2000, "{" * 2000, "\\" * 1001,
    ]
)
texts = st.one_of(any_text, hostile_text, st.text(max_size=20))

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**4000), max_value=10**4000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 2**63, 10**4299, 1e308, -0.0]),
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy:
    """Any JSON-like value: nested lists and objects of numbers, strings, booleans, null."""
    leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


# -- completions -------------------------------------------------------------------------

HOSTILE_COMPLETIONS = [
    "", " ", "<answer></answer>", "<answer>" + "(" * 5000 + "</answer>",
    "<answer>9**9**9</answer>", "<answer>__import__('os').system('id')</answer>",
    "<answer>1" + "+1" * 5000 + "</answer>", "\\boxed{" * 500, "\\boxed{" + "{" * 100 + "1" + "}" * 101,
    "\\boxed{10^{10^{10^{10}}}}", "\\boxed{(x+1)^{2000}}", "\\boxed{\\frac{1}{0}}", "\\boxed{\ud800}",
    "\\boxed{1} \\boxed{2} " * 20, "<answer>\\boxed{1}</answer>" * 30, "\x00" * 100,
    "```python\nwhile True: pass\n```", "```python\nimport os\nos.kill(os.getppid(), 9)\n```",
    "```python\nimport sys; sys.exit(0)\n```", "```python\nprint('x' * (3 << 20))\n```",
    "```python\n" + "(" * 500 + "\n```", "```python\nprint(input())\n```", "print(1)  # \udfff",
    "```\n" * 100, "x" * 200_000,
]
completions = st.one_of(texts, st.sampled_from(HOSTILE_COMPLETIONS))


# -- tasks ---------------------------------------------------------------------------------


def countdown_tasks() -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {"numbers": st.lists(st.integers(-(10**20), 10**20), min_size=1, max_size=12),
         "target": st.integers(-(10**30), 10**30)},
        optional={"solution": texts, "id": st.one_of(texts, st.integers()), "prompt": texts},
    )


MATH_ANSWERS = ["1", "\\frac{1}{2}", "\\{-3, 3\\}", "[-1, 3]", "x^2 + 2x + 1", "5\\sqrt{2}",
                "10^{10^{10}}", "\\frac{1}{2004!}", "\\text{oops", "}{", "\ud800"]


def math_tasks() -> st.SearchStrategy:
    gold = st.fixed_dictionaries(
        {"answer": st.one_of(st.sampled_from(MATH_ANSWERS), texts.filter(bool), numbers)},
        optional={"form": st.sampled_from(["number", "fraction", "simplified", "expanded"]),
                  "problem": texts},
    )
    equation = st.fixed_dictionaries(
        {"equation": st.one_of(st.sampled_from(["x^2 - 5x + 6 = 0", "x = x", "\\sin(x) = 0",
                                                "x^{10^{10}} = 1", "y = 2", "=", "x^2 + 1 = 0"]),
                               texts.map(lambda t: t + "="))},
        optional={"variable": st.sampled_from(["x", "y", "t"]),
                  "domain": st.sampled_from(["real", "complex"])},
    )
    return st.one_of(gold, equation)


def code_tasks() -> st.SearchStrategy:
    field = st.one_of(texts, texts, texts, json_values(4))  # now and then a wrong type
    case = st.fixed_dictionaries({"stdin": field, "stdout": field})
    io = st.fixed_dictionaries({"io": st.lists(case, min_size=1, max_size=3)})
    asserts = st.fixed_dictionaries(
        {"tests": st.one_of(st.sampled_from(["assert f(1) == 1", "assert f('\ud800') == 1",
                                             "def check(c):\n    assert c(2) == 2", "assert (",
                                             "x = 1"]), texts.filter(bool)),
         "entry_point": st.sampled_from(["f", "candidate", "g"])},
        optional={"setup": texts},
    )
    return st.one_of(io, asserts)


SMT_SCRIPTS = [
    "(declare-const x Int) (declare-const y Int) (assert (= (+ x y) 10)) (assert (> x 7))",
    "(declare-const x Int) (assert (= (* 2 x) 1))", "(declare-const p Bool) (assert p)",
    "(declare-const r Real) (assert (= (* r r) 2.0))", "(declare-const x Int) (assert (= x y))",
    "(declare-const x Int)" + "(assert " * 100 + "true" + ")" * 100,
    "(declare-const x Int) (assert (> x " + "9" * 300 + "))", "(push 1)", "(", ")", "",
    "(declare-const x Int) (assert (= x (^ 2 100000000)))",
    "(declare-fun f (Int) Int) (assert (= (f 1) 2))",
]


def smt_tasks() -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {"smtlib": st.one_of(st.sampled_from(SMT_SCRIPTS), texts)},
        optional={"expected": st.sampled_from(["sat", "unsat", "maybe"]),
                  "solution": st.one_of(st.sampled_from(["x = 8, y = 2", "x = 1", "p = true"]),
                                        texts),
                  "difficulty": st.one_of(st.integers(-2, 8), texts)},
    )


def lean_tasks() -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {"statement": st.one_of(st.sampled_from(["theorem t : True", "example : 1 = 1",
                                                 "def x := 1", "lemma l (n : Nat) : n = n"]),
                                texts)},
        optional={"header": texts},
    )


TASKS = {"countdown": countdown_tasks, "math": math_tasks, "code": code_tasks, "smt": smt_tasks,
         "lean": lean_tasks}


# -- JSONL files -----------------------------------------------------------------------------


@st.composite
def jsonl_line(draw, env: str, pairs: bool = True) -> bytes:
    """One line (no b"\\n" inside): a well-formed pair or task, or something hostile."""
    task = TASKS[env]()
    kind = draw(st.integers(0, 11))
    if kind <= 3:  # well-formed, with random content
        row = {"task": draw(task), "completion": draw(completions)} if pairs else draw(task)
        return json.dumps(row, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == 4:  # wrong types
        row = draw(st.dictionaries(st.sampled_from(["task", "completion", "numbers", "target",
                                                    "answer", "io", "tests"]), json_values()))
        return json.dumps(row).encode()
    if kind == 5:
        depth = draw(st.integers(10, 6000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        return (opener * depth + "1" + closer * depth).encode()
    if kind == 6:  # a good line cut short
        row = {"task": draw(task), "completion": draw(completions)} if pairs else draw(task)
        data = json.dumps(row).encode()
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == 7:  # raw bytes: invalid UTF-8, NUL, encoded surrogates, CR
        return draw(st.binary(max_size=60)).replace(b"\n", b"")
    if kind == 8:
        return draw(st.sampled_from([b"", b"   ", b"\r", b"\x00", b"\xff\xfe", BOM, b"\xed\xa0\x80",
                                     b"#comment", b"null", b"[]", b"1e999999", b"9" * 6000,
                                     b'"\\ud800"', b'{"task": {}, "completion": "\\udfff"}']))
    if kind == 9:  # any JSON value
        return json.dumps(draw(json_values())).encode()
    if kind == 10:  # huge strings and numbers in a well-formed row
        row = {"task": draw(task), "completion": "y" * draw(st.integers(0, 300_000))} if pairs else draw(task)
        return json.dumps(row).replace("1", "1" * draw(st.integers(1, 50)), 1).encode()
    row = {"task": draw(task), "completion": draw(completions)} if pairs else draw(task)
    return (json.dumps(row) + "\r").encode()  # CRLF


@st.composite
def jsonl_file(draw, env: str, pairs: bool = True, max_lines: int = 8) -> bytes:
    lines = draw(st.lists(jsonl_line(env, pairs), max_size=max_lines))
    data = b"\n".join(lines)
    if lines and draw(st.booleans()):
        data += b"\n"
    if draw(st.integers(0, 5)) == 0:
        data = BOM + data
    return data


def line_count(data: bytes) -> int:
    """Lines as assay counts them: split on \\n, after a leading BOM, no line after the last \\n."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


# -- env options -----------------------------------------------------------------------------

OPTION_NAMES = {
    "countdown": ["min_numbers", "max_numbers", "min_value", "max_value", "min_target",
                  "max_target", "format_score", "prompt_style", "vote_key"],
    "math": ["kinds", "max_operand", "max_terms", "max_denominator", "max_root", "time_limit"],
    "code": ["all_or_nothing", "timeout", "memory_mb", "backend", "workers", "compare"],
    "smt": ["kinds", "min_difficulty", "max_difficulty", "max_value", "prompt_style",
            "time_limit", "memory_mb"],
    "lean": ["time_limit", "memory_mb", "header", "allowed_axioms"],
}
option_values = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1", "2", "0.5", "1e308", "10**9", "",
                     "true", "none", "tinyzero", "compact", "value", "lines", "exact", "local",
                     "arithmetic,fraction", "quadratic", "nosuch", "linear,parity", "smtlib", "99999999999999999999"]),
    st.integers(-(10**12), 10**12).map(str),
    st.floats().map(repr),
    st.text(max_size=8),
)


def env_options(env: str) -> st.SearchStrategy:
    names = st.one_of(st.sampled_from(OPTION_NAMES[env]), st.text(min_size=1, max_size=6))
    return st.dictionaries(names, option_values, max_size=3)


# -- checks ------------------------------------------------------------------------------------

_NAMED_LINE = re.compile(r":(\d+): ")


def check_verdicts(rows: list[dict], expected: int, name: str | None = None) -> None:
    """Exactly one verdict per line, each well-formed; a verdict naming a line names its own."""
    assert len(rows) == expected, (len(rows), expected)
    for index, row in enumerate(rows, start=1):
        assert set(row) == {"score", "status", "detail"}, row
        assert row["status"] in STATUSES, row
        score = row["score"]
        assert isinstance(score, float) and math.isfinite(score) and 0.0 <= score <= 1.0, row
        assert isinstance(row["detail"], str)
        if name is not None and row["detail"].startswith(name + ":"):
            found = _NAMED_LINE.match(row["detail"][len(name):])
            assert found and int(found.group(1)) == index, (index, row)


def check_verdict_objects(verdicts: list, expected: int) -> None:
    check_verdicts([v.to_dict() for v in verdicts], expected)


def check_one_line_error(stderr: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("assay: error: "), stderr
    assert "Traceback" not in stderr


def children() -> set[int]:
    """Pids of every live descendant of this process."""
    out = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def check_nothing_left(before: set[int], wait: float = 5.0) -> None:
    """No process started since `before` is still running (killed ones may take a moment)."""
    deadline = time.monotonic() + wait
    while True:
        left = children() - before
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, [psutil.Process(p).cmdline() for p in left if psutil.pid_exists(p)]
