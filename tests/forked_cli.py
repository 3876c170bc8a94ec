"""The `assay` console script for the tests, each run in a process of its own that is forked
from one which has imported torch already.

Why: `import torch` costs about 3 CPU-seconds, and the suite runs the console script some
180 times, 40-odd of them for commands that import torch (2026-12-07, 2 cores). Forking
from a process that paid for it once keeps every run a real, separate process (its own
pid, file descriptors, environment, working directory, exit code and signals) while
skipping that import.

What a forked run shares with its server, and a fresh process would not:
- the modules the server imported: torch and what torch imports (numpy among them), and
  their import-time reading of the environment. A run whose environment differs in any
  variable those read (`PYTHON*`, `OMP_*`, `MKL_*`, `OPENBLAS_*`, `KMP_*`, `GOMP_*`,
  `TORCH_*`, `PYTORCH_*`, `CUDA_*`, `LD_*`) from the test process's own as this module
  was imported (a test's `PYTHONPATH`, say) is started fresh instead;
- Python's hash seed (every forked run has the server's). `random` reseeds itself in a
  forked child, `tempfile` names too;
- the end: a run ends as Python does (threads joined, atexit functions, a last garbage
  collection, output flushed) but for tearing down every module, as multiprocessing's
  forked children end (see `_end`).
assay's own modules are imported by each run afresh, as in a new process. A test about
the process itself (signals, Ctrl-C, what a command imports, its workers' lives) starts
its own with `subprocess`, not through here.

Set `ASSAY_TEST_FRESH_PROCESSES=1` to run every command in a fresh process instead.

The server is this file run as a script: one per test process, started at the first run
and ended when that process ends (its stdin then reads end-of-file).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ASSAY = str(Path(sys.executable).parent / "assay")

#: variables read when torch, numpy or Python itself start: a run that changes one starts fresh
_READ_AT_START = ("PYTHON", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "GOMP_", "TORCH_", "PYTORCH_",
                  "CUDA_", "LD_")


def run(args: list[str], *, input: str | None = None, timeout: float | None = 120,
        env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
        script: str = ASSAY) -> subprocess.CompletedProcess:
    """`subprocess.run([ASSAY, *args], capture_output=True, text=True, ...)`, forked from the
    server where the environment allows it. Raises `subprocess.TimeoutExpired` as
    `subprocess.run` does, after killing the run. `script`: another Python script to run
    the same way (this module's own tests)."""
    env = dict(os.environ if env is None else env)
    server = _server(env)
    if server is None:
        command = [script, *args] if script == ASSAY else [sys.executable, script, *args]
        return subprocess.run(command, capture_output=True, text=True, input=input,
                              timeout=timeout, env=env, cwd=cwd)
    return server.run([script, *args], input=input, timeout=timeout, env=env,
                      cwd=os.path.abspath(cwd or os.getcwd()))


def _server(env: dict[str, str]) -> _Server | None:
    """The server, started at the first run, where `env` agrees with it."""
    global _the_server
    if os.environ.get("ASSAY_TEST_FRESH_PROCESSES") == "1" or _read_at_start(env) != _BASELINE:
        return None
    if _the_server is None or _the_server.pid_of_client != os.getpid():
        _the_server = _Server()
    return _the_server


def _read_at_start(env: dict[str, str]) -> dict[str, str]:
    # PYTHONBREAKPOINT is read by each `breakpoint()` call (and Ray's driver sets it)
    return {k: v for k, v in env.items()
            if k.startswith(_READ_AT_START) and k != "PYTHONBREAKPOINT"}


#: the test process's own, as this module is imported (before any test sets a variable)
_BASELINE = _read_at_start(os.environ)


class _Server:
    """The client's side: starts the server, sends it one request per run."""

    def __init__(self) -> None:
        self.pid_of_client = os.getpid()
        # what a test has set for itself (a `PYTHONPATH`, say) is not the server's
        env = {k: v for k, v in os.environ.items() if not k.startswith(_READ_AT_START)}
        self.env = {**env, **_BASELINE}
        self.folder = tempfile.mkdtemp(prefix="assay-forked-cli-")
        self.address = os.path.join(self.folder, "socket")
        # stdin stays a pipe from this process: the server ends when it reads end-of-file
        self.process = subprocess.Popen([sys.executable, __file__, self.address],
                                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env=self.env)
        atexit.register(self.close)
        deadline = time.monotonic() + 120
        while not os.path.exists(self.address):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the forked-CLI server did not start (exit {self.process.poll()})")
            time.sleep(0.02)

    def close(self) -> None:
        """Ends the server (it reads end-of-file) and removes its socket's folder."""
        if os.getpid() == self.pid_of_client:
            self.process.stdin.close()
            self.process.wait()
            shutil.rmtree(self.folder, ignore_errors=True)

    def run(self, argv: list[str], *, input: str | None, timeout: float | None,
            env: dict[str, str], cwd: str) -> subprocess.CompletedProcess:
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        request = json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.address)
            conn.sendall(len(request).to_bytes(8, "big"))
            socket.send_fds(conn, [request], [stdin_read, stdout_write, stderr_write])
            for fd in (stdin_read, stdout_write, stderr_write):
                os.close(fd)
            replies = _Lines(conn)
            pid = int(replies.next(None))
            out, err = _Transfer(stdout_read), _Transfer(stderr_read)
            _feed(stdin_write, (input or "").encode())
            deadline = None if timeout is None else time.monotonic() + timeout
            status = _read_status(replies, deadline)
            if status is None:  # past its time: killed, as subprocess.run kills it
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # it ended (and was reaped) just now
                    pass
                _read_status(replies, None)
                out.join(), err.join()
                raise subprocess.TimeoutExpired(argv, timeout, _text(out.data), _text(err.data))
            out.join(), err.join()
        return subprocess.CompletedProcess(argv, os.waitstatus_to_exitcode(status),
                                           _text(out.data), _text(err.data))


class _Lines:
    """The server's replies to one request, a line at a time."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.buffer = conn, b""

    def next(self, deadline: float | None) -> str | None:
        """The next line, or None if `deadline` passes first."""
        while b"\n" not in self.buffer:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and (left <= 0 or not select.select([self.conn], [], [], left)[0]):
                return None
            chunk = self.conn.recv(4096)
            if not chunk:
                raise RuntimeError("the forked-CLI server ended during a run")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def _read_status(replies: _Lines, deadline: float | None) -> int | None:
    """The run's wait status, or None if `deadline` passes first; adds the run's CPU time
    to `cpu_seconds`."""
    global cpu_seconds
    line = replies.next(deadline)
    if line is None:
        return None
    status, cpu = line.split()
    cpu_seconds += float(cpu)
    return int(status)


class _Transfer(threading.Thread):
    """Reads one pipe to its end, as `subprocess.run(capture_output=True)` does."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.data = fd, b""
        self.start()

    def run(self) -> None:
        chunks = []
        with open(self.fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                chunks.append(chunk)
        self.data = b"".join(chunks)


def _feed(fd: int, data: bytes) -> None:
    """Writes `data` to the run's stdin from a thread (a run that never reads it must not
    block the test), then closes it."""

    def write() -> None:
        with open(fd, "wb", buffering=0) as pipe:
            try:
                pipe.write(data)
            except BrokenPipeError:
                pass

    threading.Thread(target=write, daemon=True).start()


def _text(data: bytes) -> str:
    """Decoded as `subprocess.run(text=True)` decodes: the locale's encoding, universal newlines."""
    return io.TextIOWrapper(io.BytesIO(data)).read()


_the_server: _Server | None = None
#: CPU seconds of every forked run so far: they are not this process's children, so
#: `getrusage(RUSAGE_CHILDREN)` does not count them (scripts/suite_profile.py adds them)
cpu_seconds = 0.0


# -- the server -------------------------------------------------------------------------

def _serve(address: str) -> tuple[dict, list[int]]:
    """Accepts requests until stdin ends; forks a child per request. Returns only in a
    child: its request and its stdin, stdout and stderr."""
    import gc

    import torch  # noqa: F401  (the point of the server)

    gc.freeze()  # the imported objects: no collection in a run walks them again

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address + ".new")
    listener.listen(16)
    os.rename(address + ".new", address)  # the client waits for the name: bound and listening
    runs: dict[int, socket.socket] = {}
    while True:
        ready = select.select([listener, sys.stdin], [], [], 0.05)[0]
        while runs:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = runs.pop(pid)
            try:  # its CPU time too, its own processes' included (scripts/suite_profile.py)
                conn.sendall(f"{status} {usage.ru_utime + usage.ru_stime}\n".encode())
            except OSError:
                pass
            conn.close()
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1024):
            for pid in runs:
                os.kill(pid, signal.SIGKILL)
            os._exit(0)
        if listener in ready:
            conn, _ = listener.accept()
            size = int.from_bytes(_receive(conn, 8), "big")
            request, fds, _, _ = socket.recv_fds(conn, size, 3, socket.MSG_WAITALL)
            sys.stdout.flush(), sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                for other in (conn, *runs.values()):
                    other.close()
                return json.loads(request), fds
            for fd in fds:
                os.close(fd)
            conn.sendall(f"{pid}\n".encode())
            runs[pid] = conn


def _receive(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("the client left mid-request")
        data += chunk
    return data


def _become(request: dict, fds: list[int]) -> None:
    """In the forked child: take the run's descriptors, directory, environment and
    arguments, run the console script as Python would run it, then end as Python ends."""
    import runpy

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(sys.argv[0])  # as for the script itself, not this file
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")  # it ends in sys.exit(main())
        code = 0
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    _end(code)


def _exit_code(code: object) -> int:
    """What Python exits with for `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _end(code: int) -> None:
    """Python's shutdown, but for its last step: other threads joined, atexit functions run,
    garbage collected (its `__del__` methods run, and say if they fail), output flushed; then
    `os._exit`, as multiprocessing's forked children end. The step left out, tearing down
    every module, takes 0.3 s in a fork of a process that imported torch (each object freed
    copies its page) and shows nothing to a test."""
    import gc

    threading._shutdown()
    atexit._run_exitfuncs()
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        if stream is None or stream.closed:  # as Python: a stream the run closed is left
            continue
        try:
            stream.flush()
        except (OSError, ValueError) as error:  # said and exited as Python does
            import traceback

            message = f"Exception ignored in: {stream!r}\n{traceback.format_exception_only(error)[-1]}"
            try:
                sys.__stderr__.write(message)
                sys.__stderr__.flush()
            except (OSError, ValueError):
                pass
            code = code or 120
    os._exit(code)


if __name__ == "__main__":
    _become(*_serve(sys.argv[1]))
