"""The fork server: a warm interpreter inside the jail that forks one child per run.

This file runs *inside* the sandbox (bubblewrap or a Docker container) under the
system interpreter, so it imports only the standard library and nothing of
assay. The host starts it with `python3 -I -c <this source>`; it is also imported
on the host for the framing helpers and constants.

Why it is shaped like this:

- It is PID 1 of its own PID namespace (bwrap --as-pid-1, or a container's init).
  The kernel never delivers a signal to PID 1 from inside its namespace unless
  PID 1 installed a handler, so untrusted code cannot kill the server; and after
  every run `kill(-1, SIGKILL)` removes every other process in the namespace
  (threads, orphans, daemons, fork bombs), whose zombies the server then reaps.
- It is not dumpable, so code in the namespace cannot open /proc/1/fd, /proc/1/mem
  or ptrace it (seccomp blocks ptrace anyway).
- Payloads (code, stdin, files) are spliced from the control pipe into memfds
  without passing through this process's memory: a later run, forked from this
  interpreter, cannot find an earlier run's stdin (a grader's expected values)
  in freed heap memory. Output buffers are reused and zeroed after each run.
- Limits come from outside the untrusted interpreter: rlimits set before the
  user's code starts, a wall-clock kill by this process, and the seccomp filter
  the host sends in the hello message (installed once, inherited by every run).

Protocol on the control pipe (host -> server on fd 0, server -> host on fd 1):
a frame is a 4-byte big-endian length, a JSON header of that length, then the raw
blobs the header announces (`blobs`: a list of lengths).
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import sys
import time

WORK_DIR = "/work"
#: Directories emptied after every run (tmpfs mounts, private to the jail).
SCRATCH_DIRS = ("/work", "/tmp", "/dev/shm")
_HEADER = struct.Struct(">I")
MAX_HEADER = 1 << 20

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

#: Modules imported once in the server so that every run starts warm.
PRELOAD = (
    "abc", "array", "bisect", "collections", "copy", "dataclasses", "datetime", "decimal",
    "enum", "fractions", "functools", "hashlib", "heapq", "io", "itertools", "json", "math",
    "operator", "random", "re", "statistics", "string", "textwrap", "traceback", "typing",
    "linecache", "threading", "atexit", "types", "ctypes", "resource", "unicodedata",
)


# -- framing (used on both sides) -----------------------------------------------------


def read_exact(fd: int, n: int) -> bytes:
    """Read exactly n bytes from fd; EOFError if the stream ends first."""
    chunks = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("control stream closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def encode_frame(header: dict, *blobs: bytes | memoryview) -> list[bytes | memoryview]:
    header = dict(header, blobs=[len(b) for b in blobs])
    raw = json.dumps(header, separators=(",", ":")).encode()
    return [_HEADER.pack(len(raw)) + raw, *blobs]


def write_frame(fd: int, header: dict, *blobs: bytes | memoryview) -> None:
    for part in encode_frame(header, *blobs):
        write_all(fd, part)


def read_header(fd: int) -> dict:
    (size,) = _HEADER.unpack(read_exact(fd, _HEADER.size))
    if size > MAX_HEADER:
        raise ValueError(f"frame header of {size} bytes is too large")
    return json.loads(read_exact(fd, size))


def read_frame(fd: int) -> tuple[dict, list[bytes]]:
    header = read_header(fd)
    return header, [read_exact(fd, n) for n in header.get("blobs", [])]


# -- the server -----------------------------------------------------------------------


_libc = None


def _prctl(option: int, arg: int = 0, arg3: int = 0) -> None:
    global _libc
    import ctypes

    if _libc is None:  # loaded once in the server; every run inherits it
        _libc = ctypes.CDLL(None, use_errno=True)
    ulong = ctypes.c_ulong
    if _libc.prctl(ctypes.c_int(option), ulong(arg), ulong(arg3), ulong(0), ulong(0)) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def install_seccomp(program: bytes) -> None:
    """Load a classic-BPF seccomp filter (the host builds it; see assay/sandbox/seccomp.py)."""
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buffer = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))


def _splice_to_memfd(src: int, size: int, name: str) -> int:
    """Move `size` bytes from the control pipe into a new memfd, bypassing our memory."""
    fd = os.memfd_create(name, 0)
    left = size
    while left > 0:
        moved = os.splice(src, fd, left)
        if moved == 0:
            raise EOFError("control stream closed inside a payload")
        left -= moved
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _empty_dir(path: str) -> None:
    """Remove everything under path (fixing permissions a run may have taken away)."""
    try:
        os.chmod(path, 0o777 if path != WORK_DIR else 0o755)
    except OSError:
        pass
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _empty_dir(entry.path)
            os.rmdir(entry.path)
        else:
            os.unlink(entry.path)


def _kill_everything_else() -> int:
    """SIGKILL every process in the namespace but us (we are PID 1), then reap them all."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    reaped = 0
    while True:
        try:
            os.waitpid(-1, 0)
            reaped += 1
        except ChildProcessError:
            return reaped
        except InterruptedError:  # pragma: no cover - no handlers are installed
            continue


class _Capture:
    """One output stream of a run, read into a reused buffer capped at `cap` bytes."""

    def __init__(self, cap: int) -> None:
        self.buffer = bytearray(cap)
        self.cap = cap
        self.size = 0
        self.truncated = False
        self.fd = -1

    def start(self, fd: int, cap: int) -> None:
        if cap > len(self.buffer):
            self.buffer = bytearray(cap)
        self.fd, self.cap, self.size, self.truncated = fd, cap, 0, False

    def read_some(self) -> bool:
        """Read what is available; False at end of stream."""
        if self.size < self.cap:
            view = memoryview(self.buffer)[self.size : self.cap]
            n = os.readv(self.fd, [view])
            self.size += n
            return n > 0
        data = os.read(self.fd, 1 << 16)  # past the cap: keep draining, keep nothing
        if data:
            self.truncated = True
        return bool(data)

    def drain(self) -> None:
        os.set_blocking(self.fd, False)
        try:
            while self.read_some():
                pass
        except BlockingIOError:
            pass

    def finish(self) -> memoryview:
        os.close(self.fd)
        self.fd = -1
        return memoryview(self.buffer)[: self.size]

    def wipe(self) -> None:
        self.buffer[: self.size] = bytes(self.size)


def _exit_code_of(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:
        pass
    return 1


def _child(request: dict, code_fd: int, stdin_fd: int, file_fds: list[int], out_w: int, err_w: int) -> None:
    """The forked child: become the run's process, set limits, run the code. Never returns."""
    exit_code = 125
    try:
        import resource

        os.setsid()
        code = os.pread(code_fd, request["code_len"], 0)
        files = [(name, os.pread(fd, size, 0)) for (name, size), fd in zip(request["files"], file_fds, strict=True)]
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 1 << 16)
        os.chdir(WORK_DIR)
        for name, data in files:
            path = os.path.join(WORK_DIR, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(data)
        del files

        limits = request["limits"]
        cpu = max(1, int(request["timeout"] + 1.999))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        memory = int(request["memory_mb"]) << 20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size"], limits["file_size"]))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"], limits["open_files"]))
        # The count covers every process of the jail's uid in this user namespace,
        # including this server: allow `processes` on top of it.
        nproc = limits["processes"] + 1
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_STACK, (limits["stack"], limits["stack"]))

        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Non-dumpable is inherited from the server; a normal process is dumpable (its
        # /proc/self/fd and /proc/self/mem are its own to read).
        _prctl(PR_SET_DUMPABLE, 1)
        _run_user_code(code.decode("utf-8", errors="replace"))
    except SystemExit as exc:
        exit_code = _exit_code_of(exc)
    except BaseException as exc:  # a failure of the set-up itself
        try:
            os.write(2, f"sandbox: run set-up failed: {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    os._exit(exit_code)


def _run_user_code(source: str) -> None:
    """Run source as `__main__` the way `python main.py` would, then exit like it would."""
    import atexit
    import linecache
    import threading
    import traceback
    import types

    # `random` reseeds itself in a forked child (os.register_at_fork), as a fresh
    # interpreter would seed itself; nothing to do here.
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", errors="replace", closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = sys.__stderr__ = open(
        2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1
    )
    sys.argv = ["main.py"]
    sys.path[0:1] = [WORK_DIR]
    main = types.ModuleType("__main__")
    main.__file__ = os.path.join(WORK_DIR, "main.py")
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    lines = source.splitlines(keepends=True)
    linecache.cache["main.py"] = (len(source), None, lines, "main.py")
    exit_code = 0
    try:
        exec(compile(source, "main.py", "exec"), main.__dict__)
    except SystemExit as exc:
        exit_code = _exit_code_of(exc)
    except BaseException as exc:  # print it as `python main.py` would, without our frame
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        exit_code = 1
    try:
        threading._shutdown()  # join non-daemon threads, as interpreter shutdown does
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            exit_code = exit_code or 120
    os._exit(exit_code)


def run_one(request: dict, ctrl_in: int, out: _Capture, err: _Capture) -> dict:
    """Receive one run's payloads, fork its child, supervise it, clean up; return the header."""
    code_fd = _splice_to_memfd(ctrl_in, request["code_len"], "code")
    stdin_fd = _splice_to_memfd(ctrl_in, request["stdin_len"], "stdin")
    file_fds = [_splice_to_memfd(ctrl_in, size, "file") for _, size in request["files"]]
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(request, code_fd, stdin_fd, file_fds, out_w, err_w)
    for fd in (out_w, err_w, code_fd, stdin_fd, *file_fds):
        os.close(fd)
    cap = request["limits"]["output"]
    out.start(out_r, cap)
    err.start(err_r, cap)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    streams = {out_r: out, err_r: err}
    for fd in (out_r, err_r, pidfd):
        poller.register(fd, select.POLLIN)
    deadline = started + request["timeout"]
    timed_out = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        events = poller.poll(max(1, int(left * 1000)))
        exited = False
        for fd, _ in events:
            if fd == pidfd:
                exited = True
            elif not streams[fd].read_some():
                poller.unregister(fd)
        if exited:
            break
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    wall = time.monotonic() - started
    os.close(pidfd)
    leftovers = _kill_everything_else()
    out.drain()
    err.drain()
    for name in SCRATCH_DIRS:
        _empty_dir(name)
    return {
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "timed_out": timed_out,
        "wall_time": wall,
        "stdout_truncated": out.truncated,
        "stderr_truncated": err.truncated,
        "leftover_processes": leftovers,
    }


def serve() -> None:
    """The server's main loop: hello, then one request -> one reply until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # PID 1 must have no handlers to abuse
    ctrl_in, ctrl_out = os.dup(0), os.dup(1)
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    _prctl(PR_SET_DUMPABLE, 0)
    hello, _ = read_frame(ctrl_in)
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    seccomp = bytes.fromhex(hello.get("seccomp", ""))
    if seccomp:
        install_seccomp(seccomp)
    write_frame(
        ctrl_out,
        {"ready": True, "pid": os.getpid(), "uid": os.getuid(), "python": sys.version.split()[0],
         "seccomp": bool(seccomp)},
    )
    cap = 1 << 20
    out, err = _Capture(cap), _Capture(cap)
    while True:
        try:
            request = read_header(ctrl_in)
        except EOFError:
            return
        reply = run_one(request, ctrl_in, out, err)
        stdout, stderr = out.finish(), err.finish()
        write_frame(ctrl_out, reply, stdout, stderr)
        stdout.release()
        stderr.release()
        out.wipe()
        err.wipe()


if __name__ == "__main__":
    serve()
