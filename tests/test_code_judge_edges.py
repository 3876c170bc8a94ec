"""The code judge's edges, each found by a mutation run (docs/development.md): looped asserts,
the result channel, inherited descriptors, dumpability, SystemExit, early stops, dead
solutions and the judge's own deadline."""

from __future__ import annotations

import os
import time

import pytest

from assay.envs import code_judge
from assay.envs.code import CodeEnv

FORGED = 'ASSAY-JUDGE {"outcomes":{"0":true,"1":true,"2":true},"problem":null,"timed_out":false}\n'
ADD_TESTS = "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(5, 5) == 10\n"


@pytest.fixture(scope="module")
def env(code_env):
    return code_env  # conftest.py: sandboxed, 3 s per program


def verify(env, tests: str, solution: str, entry_point: str = "add"):
    task = env.make_task({"entry_point": entry_point, "tests": tests}, id=entry_point)
    return env.verify(task, f"```python\n{solution}\n```\n")


def test_an_assert_in_a_loop_passes_only_if_every_iteration_passes(env):
    tests = "for x in range(3):\n    assert add(x, 0) == x\n"
    last_only = verify(env, tests, "def add(a, b):\n    return a + b if a == 2 else -1\n")
    assert last_only.status == "incorrect" and last_only.score == 0.0, last_only
    first_only = verify(env, tests, "def add(a, b):\n    return a + b if a == 0 else -1\n")
    assert first_only.score == 0.0, first_only
    assert verify(env, tests, "def add(a, b):\n    return a + b\n").correct


@pytest.mark.parametrize(
    "channel",
    [
        "os.write(1, LINE.encode())",  # the candidate's stdout must not be the result channel
        "[os.write(fd, LINE.encode()) for fd in range(5, 256) if can(fd)]",  # nor an inherited fd
    ],
)
def test_a_forged_result_line_then_killing_the_judge_scores_zero(env, channel):
    solution = (
        "import os, signal\n"
        f"LINE = {FORGED!r}\n"
        "def can(fd):\n"
        "    try:\n        os.fstat(fd)\n        return True\n    except OSError:\n        return False\n"
        f"{channel}\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n"
        "def add(a, b):\n    return None\n"
    )
    verdict = verify(env, ADD_TESTS, solution)
    assert verdict.score == 0.0 and not verdict.correct, verdict


def test_the_candidate_holds_no_descriptor_beyond_its_two_pipes(env):
    solution = (
        "import os\n"
        "def add(a, b):\n"
        "    open_fds = []\n"
        "    for fd in range(5, 1024):\n"
        "        try:\n            os.fstat(fd)\n            open_fds.append(fd)\n"
        "        except OSError:\n            pass\n"
        "    return a + b if not open_fds else open_fds\n"
    )
    verdict = verify(env, ADD_TESTS, solution)
    assert verdict.correct, verdict


def test_the_judge_and_so_the_candidate_are_not_dumpable(env):
    solution = "import ctypes\ndef dumpable():\n    return ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)\n"
    verdict = verify(env, "assert dumpable() == 0\n", solution, entry_point="dumpable")
    assert verdict.correct, verdict  # PR_GET_DUMPABLE: 0 means /proc/<judge> is closed to us


def test_system_exit_inside_one_call_fails_that_assert_only(env):
    solution = "def add(a, b):\n    if a == 0:\n        raise SystemExit(0)\n    return a + b\n"
    verdict = verify(env, ADD_TESTS, solution)
    assert verdict.status == "incorrect" and verdict.score == pytest.approx(2 / 3), verdict
    assert "#2" in verdict.detail


def test_tests_that_stop_early_keep_the_credit_so_far_and_say_why(env):
    tests = "assert add(1, 2) == 3\nboom = add(0, 0) + 'text'\nassert add(2, 2) == 4\n"
    verdict = verify(env, tests, "def add(a, b):\n    return a + b\n")
    assert verdict.status == "incorrect" and verdict.score == pytest.approx(1 / 2), verdict
    assert "1/2 tests passed" in verdict.detail
    assert "the tests stopped early: TypeError" in verdict.detail and "#2" in verdict.detail


@pytest.mark.parametrize(
    "solution",
    [
        "import os\ndef f():\n    os._exit(0)\n",  # dies during the call
        "import os\nos._exit(0)\ndef f():\n    return None\n",  # dies while loading
        "import sys\nsys.exit(0)\ndef f():\n    return None\n",  # exits while loading
    ],
)
def test_a_dead_solution_does_not_read_as_returning_none(env, solution):
    verdict = verify(env, "assert f() is None\nassert f() == None\n", solution, entry_point="f")
    assert verdict.score == 0.0 and not verdict.correct, verdict


def test_the_judge_reports_before_its_deadline_with_the_asserts_that_passed(env):
    # the hanging call must fail its assert, not read as returning None
    tests = "assert add(1, 2) == 3\nassert add(0, 0) is None\n"
    solution = "def add(a, b):\n    while a == 0:\n        pass\n    return a + b\n"
    verdict = verify(env, tests, solution)
    # the judge's own deadline fires before the sandbox's kill, so its report arrives; the
    # partial-credit rule (docs/sandbox.md): the fraction passed, `timeout` only when none did
    assert verdict.status == "incorrect" and verdict.score == 0.5, verdict
    assert verdict.detail.startswith("1/2 tests passed; the 3 s time limit cut the rest off"), verdict


def test_bytes_cross_between_the_processes_as_bytes(env):
    verdict = verify(env, "assert f(b'ab') == b'ab!'\nassert type(f(b'')) is bytes\n", "def f(data):\n    return data + b'!'\n", entry_point="f")
    assert verdict.correct, verdict


def test_a_solution_without_the_entry_point_is_named_in_the_verdict(env):
    tests = "assert f() == 1\nvalue = f()\n"
    verdict = verify(env, tests, "def g():\n    return 1\n", entry_point="f")
    assert verdict.score == 0.0 and "the solution defines no function 'f'" in verdict.detail, verdict


def test_a_call_the_candidate_never_reads_times_out_at_the_judges_deadline(env):
    # The solution hangs while loading, so it never reads the call; an argument larger than a
    # pipe's buffer makes sending it block, and the judge's deadline must still fire.
    solution = "while True:\n    pass\ndef f(text):\n    return 1\n"
    verdict = verify(env, "assert f('x' * 300000) == 1\n", solution, entry_point="f")
    assert verdict.status == "timeout" and verdict.detail == "0/1 tests passed before the 3 s time limit", verdict


def test_output_comparison_modes():
    from assay.envs.code_harness import outputs_match

    assert outputs_match("3\n", "3\n", "exact") and not outputs_match("3 \n", "3\n", "exact")
    assert not outputs_match("3", "3\n", "exact")
    assert outputs_match("3 \r\n\n", "3", "lines") and not outputs_match("3 4", "3\n4", "lines")


def test_values_nested_150_deep_cross_both_ways(env):
    tests = (
        "deep_list, deep_tuple, deep_dict, deep_set = [], (), {}, frozenset()\n"
        "for _ in range(150):\n"
        "    deep_list, deep_tuple = [deep_list], (deep_tuple,)\n"
        "    deep_dict, deep_set = {'k': deep_dict}, frozenset([deep_set])\n"
        "assert echo(deep_list) == deep_list\n"
        "assert echo(deep_tuple) == deep_tuple\n"
        "assert echo(deep_dict) == deep_dict\n"
        "assert echo(deep_set) == deep_set\n"
    )
    verdict = verify(env, tests, "def echo(value):\n    return value\n", entry_point="echo")
    assert verdict.correct, verdict


def test_a_slow_call_that_ends_inside_the_budget_counts(env):
    # timeout 3 s gives the judge a 2.4 s budget: a 1.6 s call ends with under a second left,
    # and its reply must still be read in full
    solution = "import time\ndef add(a, b):\n    time.sleep(1.6)\n    return a + b\n"
    verdict = verify(env, "assert add(1, 2) == 3\n", solution)
    assert verdict.correct, verdict


def test_a_solution_that_dies_is_seen_at_once_not_at_the_deadline(env):
    """The judge closes its copies of the candidate's pipe ends, so a death reads as end of
    file at once; holding them open would leave the judge waiting for its deadline and the
    verdict would blame the time limit."""
    verdict = verify(env, "assert f() == 1\nassert f() == 1\n", "import os\ndef f():\n    os._exit(0)\n", "f")
    assert verdict.status == "incorrect" and verdict.detail == (
        "0/2 tests passed; first failed assert: #1 (the solution's process ended or broke the protocol (EOFError))")


def test_a_large_call_to_a_solution_that_died_loading_fails_at_once(env):
    """With the judge's copy of the call pipe's read end closed, writing to a dead candidate
    fails at once (broken pipe); held open, a call larger than the pipe's buffer would wait
    for the deadline."""
    solution = "import os\nos._exit(0)\ndef f(x):\n    return 1\n"
    verdict = verify(env, "assert f('x' * 1_000_000) == 1\n", solution, "f")
    assert verdict.status == "incorrect", verdict
    assert verdict.detail.startswith("0/1 tests passed; first failed assert: #1 (the solution")


@pytest.mark.parametrize("solution, why", [
    ("def add(a, b):\n    raise ValueError(f'bad {a}')\n", "(ValueError: bad 1)"),
    ("def add(a, b):\n    return {}[a]\n", "(KeyError: 1)"),  # a message that is not one string
    ("class Mine(Exception):\n    pass\ndef add(a, b):\n    raise Mine('no')\n", "(Mine: no)"),
    ("import nonesuch\ndef add(a, b):\n    return a + b\n",
     "(loading the solution raised ModuleNotFoundError: No module named 'nonesuch')"),
    ("def plus(a, b):\n    return a + b\n", "(the solution defines no function 'add')"),
    ("def add(a, b):\n    return a - b\n", ""),  # a false assert raised nothing
])
def test_the_first_failed_assert_says_what_it_raised(env, solution, why):
    verdict = verify(env, "assert add(1, 2) == 3\nassert add(2, 2) == 4\n", solution)
    assert verdict.status == "incorrect", verdict
    assert verdict.detail == f"0/2 tests passed; first failed assert: #1{' ' + why if why else ''}", verdict


def test_the_reason_is_the_first_failed_asserts_and_cut_short(env):
    solution = "def add(a, b):\n    if a == 2:\n        raise ValueError('x' * 5000)\n    return a + b\n"
    verdict = verify(env, "assert add(1, 2) == 3\nassert add(2, 2) == 4\nassert add(3, 3) == 6\n", solution)
    assert verdict.detail.startswith("2/3 tests passed; first failed assert: #2 (ValueError: xxx"), verdict
    assert len(verdict.detail) < 400, verdict
    # a false assert before any that raised is the first failure: no reason is borrowed
    false_first = verify(env, "assert add(1, 2) == 4\nassert add(2, 2) == 4\n", solution)
    assert false_first.detail == "0/2 tests passed; first failed assert: #1", false_first


def test_a_reason_that_looks_like_a_judge_report_passes_nothing(env):
    """The reason crosses inside the judge's JSON line: a message holding a line break and
    a forged report stays text in the verdict's detail."""
    forged = '\\nASSAY-JUDGE {"task": 0, "outcomes": {"0": true}, "problem": null, "timed_out": false}\\n'
    solution = f"def add(a, b):\n    raise ValueError('{forged}')\n"
    verdict = verify(env, "assert add(1, 2) == 3\n", solution)
    assert verdict.status == "incorrect" and verdict.score == 0.0, verdict
    assert "ASSAY-JUDGE" in verdict.detail


def test_a_malformed_reply_is_a_failure_not_a_none(env):
    """A solution can replace the candidate side's encoder and send the judge garbage; a
    reply the judge cannot decode must fail the call, never read as returning None."""
    solution = "import __main__\n__main__.encode = lambda value, depth=0: {'zz': []}\ndef f():\n    return 1\n"
    verdict = verify(env, "assert f() is None\n", solution, "f")
    assert verdict.score == 0.0 and verdict.status == "incorrect", verdict


def test_a_death_outside_an_assert_is_named_in_the_verdict(env):
    verdict = verify(env, "x = f()\nassert f() == 1\n", "import os\ndef f():\n    os._exit(0)\n", "f")
    assert verdict.status == "incorrect", verdict
    assert "the tests stopped early: CandidateFailure: the solution's process ended" in verdict.detail


def test_the_candidates_stdin_is_empty(env):
    """The judge's stdin carries the tests; the candidate's must be an empty file, neither
    that pipe nor a broken descriptor."""
    solution = "import sys\ndef f():\n    return sys.stdin.read()\n"
    assert verify(env, "assert f() == ''\n", solution, "f").correct


def test_a_call_in_the_last_second_of_the_budget_still_runs(env):
    """The 3 s limit gives the judge a 2.4 s budget; a quick call after 1.4 s of sleeping
    has under a second left, which is enough."""
    solution = "import time\ndef f(t):\n    time.sleep(t)\n    return 1\n"
    verdict = verify(env, "assert f(1.4) == 1\nassert f(0) == 1\n", solution, "f")
    assert verdict.correct, verdict


def test_why_the_tests_stopped_is_cut_to_500_characters(env):
    verdict = verify(env, "assert f() == 1\nraise ValueError('y' * 2000)\n", "def f():\n    return 1\n", "f")
    why = ("the tests stopped early: ValueError: " + "y" * 2000)[:500]
    assert verdict.detail == "1/1 tests passed; " + why, verdict.detail[:80]


def test_solution_setup_and_tests_run_without_the_judges_future_flags(env):
    # the judge's source has `from __future__ import annotations`; code it compiles must
    # not inherit it, or annotations are strings where `python` makes them objects
    solution = "def add(a: int, b: int) -> int:\n    return a + b if add.__annotations__['a'] is int else 0\n"
    tests = "def typed(x: int): pass\nassert typed.__annotations__['x'] is int\nassert add(1, 2) == 3\n"
    assert verify(env, tests, solution).correct


# -- several tasks per judge run: nothing of one candidate reaches the next -------------

LEAVES_THINGS_BEHIND = """
import os, time
for root in ("/tmp", "/work", "/dev/shm"):
    with open(root + "/left-behind", "w") as handle:
        handle.write("x")
os.mkdir("/tmp/locked")
os.chmod("/tmp/locked", 0)
if os.fork() == 0:  # a daemon: its own session if it can, then a grandchild that waits
    try:
        os.setsid()
    except OSError:
        pass
    if os.fork() == 0:
        time.sleep(60)
    os._exit(0)
os.utime("/tmp", (1, 1))
os.chmod("/work", 0o700)
def add(a, b):
    return a + b
"""

FINDS_THINGS_LEFT = """
import os
def parent(pid):
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])
ours = {1, os.getpid(), os.getppid(), parent(os.getppid())}  # server, us, spawner, judge
others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in ours]
found = os.listdir("/tmp") + os.listdir("/work") + os.listdir("/dev/shm")
times = os.stat("/tmp").st_mtime == 1 or os.stat("/work").st_mode & 0o777 == 0o700
def add(a, b):
    return a + b if not (others or found or times) else ("left", others, found, times)
"""


def test_nothing_of_a_candidate_outlives_its_task_in_a_batch(env):
    task = env.make_task({"entry_point": "add", "tests": ADD_TESTS}, id="add")
    pairs = [(task, f"```python\n{code}\n```\n") for code in (LEAVES_THINGS_BEHIND, FINDS_THINGS_LEFT)]
    started = time.monotonic()
    first, second = env.verify_many(pairs)
    assert first.correct, first
    assert second.correct, second  # no process, file, mode or time of the first was left
    # and in the same run: the spawner killed the daemon's whole group at once (had it
    # waited for the daemon, the judge would have given up on it after SPAWNER_WAIT and
    # the host would have run the second task again, alone)
    assert time.monotonic() - started < code_judge.SPAWNER_WAIT


def test_a_candidate_in_a_batch_cannot_leave_its_process_group(env):
    solution = (
        "import errno, os\n"
        "def add(a, b):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            os.setsid()\n"
        "            os._exit(0)\n"
        "        except OSError as exc:\n"
        "            os._exit(10 if exc.errno == errno.EPERM else 11)\n"
        "    return os.waitpid(pid, 0)[1] >> 8\n"
    )
    task = env.make_task({"entry_point": "add", "tests": "assert add(0, 0) == 10\n"}, id="add")
    # in a batch of two the filter is on; alone, the child may start a session of its own
    batched = env.verify_many([(task, f"```python\n{solution}\n```\n"), (task, f"```python\n{solution}# 2\n```\n")])
    assert all(v.correct for v in batched), batched
    alone = CodeEnv(timeout=3.0, backend=env.options.backend, judge_batch=1)
    try:
        assert not alone.verify(task, f"```python\n{solution}\n```\n").correct
    finally:
        alone.close()


def test_scratch_puts_a_directory_back_and_refuses_one_that_was_not_empty(tmp_path):
    clean, used = tmp_path / "clean", tmp_path / "used"
    clean.mkdir(mode=0o755)
    used.mkdir()
    (used / "left").write_text("from before")
    before = os.stat(clean)
    scratch = code_judge.Scratch((str(clean), str(used)))
    assert not scratch.reset()  # it cannot tell what was there before from what is new
    fresh = code_judge.Scratch((str(clean),))
    (clean / "sub").mkdir()
    (clean / "sub" / "file").write_text("x")
    os.chmod(clean / "sub", 0)
    os.chmod(clean, 0o700)
    os.utime(clean, (1, 1))
    assert fresh.reset()
    after = os.stat(clean)
    assert os.listdir(clean) == []
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)


def test_a_batch_stays_on_the_cpu_it_started_on(env):
    # stay_on_this_cpu: the judge and every candidate it starts run on one CPU (their
    # hand-overs cost a switch in place, not a wake-up on another CPU).
    tests = "import os\nassert len(os.sched_getaffinity(0)) == 1\nassert cpus() == 1\n"
    solution = "import os\ndef cpus():\n    return len(os.sched_getaffinity(0))\n"
    assert verify(env, tests, solution, entry_point="cpus").correct
    task = env.make_task({"entry_point": "cpus", "tests": tests}, id="cpus")
    verdicts = env.verify_many([(task, f"```python\n{solution}\n```\n# {n}\n") for n in range(3)])
    assert all(v.correct for v in verdicts), verdicts  # a batch of three: through the spawner


def test_a_batch_runs_as_sched_batch(env):
    # let_the_candidate_run_on: a candidate's answer wakes the judge without handing it the
    # CPU, so a candidate with a plan answers every call before the judge reads them
    tests = "import os\nassert os.sched_getscheduler(0) == os.SCHED_BATCH\nassert policy() == os.SCHED_BATCH\n"
    solution = "import os\ndef policy():\n    return os.sched_getscheduler(0)\n"
    task = env.make_task({"entry_point": "policy", "tests": tests}, id="policy")
    verdicts = env.verify_many([(task, f"```python\n{solution}\n```\n# {n}\n") for n in range(3)])
    assert all(v.correct for v in verdicts), verdicts


@pytest.mark.parametrize("where", ["/work", "/tmp", "/dev/shm"])
def test_a_module_the_solution_plants_in_scratch_is_never_imported_by_the_judge(env, where):
    """The tests run in the judge; a module the solution writes where the judge would look
    first must not run there (it would hold the judge's result pipe)."""
    solution = (
        f"open({where + '/zzplant.py'!r}, 'w').write("
        "'import sys; sys.stderr.write(\"PLANTED\"); raise RuntimeError(\"planted in the judge\")')\n"
        "import sys\n"
        f"sys.path.insert(0, {where!r})\n"  # the candidate's own path: the judge's is its own
        "def add(a, b):\n    return a + b\n"
    )
    tests = ADD_TESTS + "import zzplant\n"
    verdict = verify(env, tests, solution)
    assert "planted" not in verdict.detail, verdict
    assert "ModuleNotFoundError" in verdict.detail, verdict
