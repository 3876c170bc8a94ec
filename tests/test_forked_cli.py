"""The tests' forked console-script runs (tests/forked_cli.py) end as a fresh process ends:
the same output, exit code and signal, for a script run both ways."""

from __future__ import annotations

import os
import subprocess
import sys

import forked_cli
import pytest

SCRIPT = """\
import atexit, os, sys, threading, time
mode = sys.argv[1]
print("argv", sys.argv[1:], "cwd", os.getcwd(), "var", os.environ.get("FORKED_CLI_VAR"),
      "stdin", repr(sys.stdin.read()))
if mode == "code":
    sys.exit(3)
if mode == "message":
    sys.exit("stopped: bad input")
if mode == "raise":
    raise ValueError("boom")
if mode == "signal":
    sys.stdout.flush()
    os.kill(os.getpid(), 15)
if mode == "thread":
    threading.Thread(target=lambda: (time.sleep(0.2), print("the thread ended"))).start()
if mode == "atexit":
    atexit.register(print, "atexit ran")
if mode == "big":
    sys.stdout.write("x" * 3_000_000)
    sys.stderr.write("y" * 3_000_000)
if mode == "cycle":
    class Cycle:
        def __del__(self):
            print("collected")
    a = Cycle()
    a.me = a
    del a
if mode == "closed":  # Python leaves a closed stream alone as it ends
    sys.stdout.close()
if mode == "full":  # Python fails to flush it as it ends
    sys.stdout = open("/dev/full", "w")
if mode == "pid":
    print(os.getpid(), flush=True)
    time.sleep(60)
if mode != "closed":
    print("the end", end="")
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    return str(path)


def fresh(script: str, args: list[str], **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          **options)


@pytest.mark.parametrize("mode", ["plain", "code", "message", "raise", "signal", "thread",
                                  "atexit", "big", "cycle", "closed", "full"])
def test_a_forked_run_ends_as_a_fresh_process_ends(script, tmp_path, mode):
    env = {**os.environ, "FORKED_CLI_VAR": "set for this run"}
    options = {"input": "from stdin\n", "env": env, "cwd": tmp_path, "timeout": 60}
    forked = forked_cli.run([mode, "two words"], script=script, **options)
    expected = fresh(script, [mode, "two words"], **options)
    assert forked.returncode == expected.returncode
    assert forked.stdout == expected.stdout
    if mode == "raise":  # the traceback's frames differ (runpy's); its last line does not
        assert forked.stderr.splitlines()[-1] == expected.stderr.splitlines()[-1] == "ValueError: boom"
    else:
        assert forked.stderr == expected.stderr


def test_a_run_is_forked_where_the_environment_allows_and_fresh_where_not(tmp_path, monkeypatch):
    probe = tmp_path / "probe.py"
    probe.write_text("import os, sys\nprint('torch' in sys.modules, os.getppid())\n")
    forked = forked_cli.run([], script=str(probe)).stdout.split()
    assert forked[0] == "True" and int(forked[1]) != os.getpid()  # the server's child
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # read as Python starts: fresh
    started = forked_cli.run([], script=str(probe), env=env).stdout.split()
    assert started == ["False", str(os.getpid())]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # read as torch is imported: fresh
    assert forked_cli.run([], script=str(probe)).stdout.split() == started
    monkeypatch.undo()
    assert forked_cli.run([], script=str(probe)).stdout.split() == forked  # the same server


def test_a_run_past_its_timeout_is_killed(script, tmp_path):
    with pytest.raises(subprocess.TimeoutExpired) as timed_out:
        forked_cli.run(["pid"], script=script, input="", timeout=3)
    pid = int(timed_out.value.stdout.splitlines()[-1])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone: killed and reaped, not left running
