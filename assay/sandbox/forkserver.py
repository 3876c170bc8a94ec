"""The fork server: a warm interpreter inside the jail that forks one child per run.

This file runs *inside* the sandbox (bubblewrap or a Docker container) under the
system interpreter, so it imports only the standard library and nothing of
assay. The host starts it with `python3 -I -c <this source>`; it is also imported
on the host for the wire format (the framing helpers and structs below). That is
why it is one file, longer than most: it is shipped into the jail whole.

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
  in freed heap memory. Output is read into buffers that are not even mapped in
  a forked child (MADV_DONTFORK), and zeroed after each run.
- Limits come from outside the untrusted interpreter: rlimits set before the
  user's code starts, a wall-clock kill by this process, and the seccomp filter
  the host sends in the hello message (installed once, inherited by every run).

Why it is fast: a run costs one fork of this process and the child's exit. After
a fork every page of the server is copy-on-write in both processes, so each page
either of them writes costs a page fault (a few microseconds, most of a trivial
run's cost); the child therefore gets everything prepared (its standard streams,
its `__main__` module, its rlimits) and does as little as it can, and the server
keeps its per-run work small: a fixed binary header instead of JSON, and one
`stat` per scratch directory when a run left it untouched.

Wire format, host -> server on fd 0, server -> host on fd 1:
- control frames (the hello and the ready message): a 4-byte big-endian length,
  then that many bytes of JSON;
- a run: the `RUN` struct, then the file manifest (JSON `[[name, size], ...]`,
  only when there are files), then the code, the stdin and each file's bytes;
- a result: the `RESULT` struct, then the stdout and stderr bytes.
"""

from __future__ import annotations

import _signal
import atexit
import gc
import json
import linecache
import mmap
import os
import resource
import select
import signal
import stat
import struct
import sys
import time
import traceback
import types

WORK_DIR = "/work"
#: Directories emptied after every run (tmpfs mounts, private to the jail).
SCRATCH_DIRS = ("/work", "/tmp", "/dev/shm")
MAX_HEADER = 1 << 20

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

#: Modules imported once in the server so that every run starts warm. Not `threading`:
#: once imported, its at-fork hook runs in every forked child (about 120 page faults,
#: a fifth of a trivial run's cost); a run that uses threads imports it itself, as a
#: fresh interpreter would.
PRELOAD = (
    "abc", "array", "bisect", "collections", "copy", "dataclasses", "datetime", "decimal",
    "enum", "fractions", "functools", "hashlib", "heapq", "io", "itertools", "json", "math",
    "operator", "random", "re", "statistics", "string", "textwrap", "traceback", "typing",
    "linecache", "atexit", "types", "ctypes", "resource", "unicodedata",
)


# -- wire format (used on both sides) -------------------------------------------------

_LENGTH = struct.Struct(">I")
#: magic, code bytes, stdin bytes, timeout (s), memory (MiB), file manifest bytes
RUN = struct.Struct(">4sIIdII")
RUN_MAGIC = b"RUN1"
#: magic, exit status (-1: none), signal (0: none), flags, leftover processes,
#: wall time (s), stdout bytes, stderr bytes
RESULT = struct.Struct(">4siiBIdII")
RESULT_MAGIC = b"DONE"
_TIMED_OUT, _STDOUT_TRUNCATED, _STDERR_TRUNCATED = 1, 2, 4


def read_exact(fd: int, n: int) -> bytes:
    """Read exactly n bytes from fd; EOFError if the stream ends first."""
    data = os.read(fd, n)
    if len(data) == n:
        return data
    if not data:
        raise EOFError("control stream closed")
    chunks = [data]
    n -= len(data)
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


def encode_frame(header: dict) -> bytes:
    """A control frame: the hello and the ready message."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    return _LENGTH.pack(len(raw)) + raw


def read_frame(fd: int) -> dict:
    (size,) = _LENGTH.unpack(read_exact(fd, _LENGTH.size))
    if size > MAX_HEADER:
        raise ValueError(f"control frame of {size} bytes is too large")
    return json.loads(read_exact(fd, size))


def parse_frame(buffer: bytearray) -> dict | None:
    """A control frame at the start of buffer (consumed), or None until all of it arrived."""
    if len(buffer) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack_from(buffer)
    if size > MAX_HEADER:
        raise ValueError(f"control frame of {size} bytes is too large")
    end = _LENGTH.size + size
    if len(buffer) < end:
        return None
    header = json.loads(bytes(buffer[_LENGTH.size : end]))
    del buffer[:end]
    return header


def encode_run(header: dict, blobs: list[bytes]) -> list[bytes]:
    """The parts of one run request, in the order the server reads them, from the
    header and payloads of `RunRequest.wire` (its limits went in the hello)."""
    files = header["files"]
    manifest = json.dumps(files).encode() if files else b""
    head = RUN.pack(
        RUN_MAGIC, header["code_len"], header["stdin_len"], header["timeout"], header["memory_mb"], len(manifest)
    )
    return [head + manifest, *blobs]


def parse_result(buffer: bytearray) -> tuple[dict, bytes, bytes] | None:
    """A run's result at the start of buffer (consumed): (report, stdout, stderr), or
    None until all of it arrived. ValueError if the bytes are not a result."""
    if len(buffer) < RESULT.size:
        return None
    magic, code, sig, flags, leftovers, wall, out_len, err_len = RESULT.unpack_from(buffer)
    if magic != RESULT_MAGIC:
        raise ValueError(f"expected a run result, got {bytes(buffer[:16])!r}")
    end = RESULT.size + out_len + err_len
    if len(buffer) < end:
        return None
    stdout = bytes(buffer[RESULT.size : RESULT.size + out_len])
    stderr = bytes(buffer[RESULT.size + out_len : end])
    del buffer[:end]
    report = {
        "exit_code": None if code < 0 else code,
        "signal": sig or None,
        "timed_out": bool(flags & _TIMED_OUT),
        "wall_time": wall,
        "stdout_truncated": bool(flags & _STDOUT_TRUNCATED),
        "stderr_truncated": bool(flags & _STDERR_TRUNCATED),
        "leftover_processes": leftovers,
    }
    return report, stdout, stderr


# -- the server: set-up ---------------------------------------------------------------


_prctl_function = None


def _prctl(option: int, arg: int = 0, arg3: int = 0) -> None:
    global _prctl_function
    if _prctl_function is None:  # built once in the server; every run inherits it ready
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).prctl
        function.argtypes = (ctypes.c_int, *[ctypes.c_ulong] * 4)
        function.restype = ctypes.c_int
        _prctl_function = function
    if _prctl_function(option, arg, arg3, 0, 0) != 0:
        import ctypes

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


class _Scratch:
    """The run-writable directories, and putting them back as they were after a run.

    A run usually leaves them untouched, and one `stat` per directory proves it: on
    tmpfs a directory's size counts its entries (so a stored size means it is empty),
    a run's chmod or utime shows in the mode and times, and the seccomp filter
    refuses extended attributes, the one change that shows only in ctime (whose
    granularity may hide it). Without that filter, or where the size does not count
    entries, every run is cleaned in full.
    """

    def __init__(self, paths: tuple[str, ...], xattrs_blocked: bool) -> None:
        self.paths = paths
        self.clean = {path: self._state(path) for path in paths}
        self.trust_stat = xattrs_blocked and all(self._size_counts_entries(p) for p in paths)

    @staticmethod
    def _state(path: str) -> tuple:
        st = os.stat(path)
        return (st.st_size, st.st_nlink, st.st_mode, st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns)

    def _size_counts_entries(self, path: str) -> bool:
        probe = os.path.join(path, ".assay-probe")
        try:
            empty = os.stat(path).st_size
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            with_entry = os.stat(path).st_size
            os.unlink(probe)
        except OSError:
            return False
        self._restore(path)
        self.clean[path] = self._state(path)  # where times cannot be restored (not ours)
        return with_entry != empty

    def reset(self) -> None:
        for path in self.paths:
            if self.trust_stat and self._state(path) == self.clean[path]:
                continue
            _empty_dir(path)
            self._restore(path)
            self.clean[path] = self._state(path)

    def _restore(self, path: str) -> None:
        """Mode, extended attributes and times as they were before the first run (where
        we may: in a container the mount points belong to root, and then no run could
        change them either)."""
        size, nlink, mode, uid, gid, atime, mtime = self.clean[path]
        try:
            os.chmod(path, stat.S_IMODE(mode))
        except OSError:
            pass
        try:
            for name in os.listxattr(path):
                os.removexattr(path, name)
        except OSError:
            pass
        try:
            os.utime(path, ns=(atime, mtime))
        except OSError:
            pass


def _empty_dir(path: str) -> None:
    """Remove everything under path (fixing permissions a run may have taken away)."""
    try:
        os.chmod(path, 0o700)
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


class _Capture:
    """One output stream of a run, read into a buffer capped at `cap` bytes.

    The buffer is an anonymous mapping marked MADV_DONTFORK: no child ever has it
    (nor copies its page tables at every fork), and it is zeroed after each run.
    """

    def __init__(self, cap: int) -> None:
        self.buffer = mmap.mmap(-1, max(cap, 1))
        self.buffer.madvise(mmap.MADV_DONTFORK)
        self.view = memoryview(self.buffer)
        self.cap = cap
        self.size = 0
        self.truncated = False
        self.open = False
        self.fd = -1

    def start(self, fd: int) -> None:
        self.fd, self.size, self.truncated, self.open = fd, 0, False, True

    def read_some(self) -> None:
        """Read what is available (poll said so); notes the end of the stream."""
        if self.size < self.cap:
            n = os.readv(self.fd, [self.view[self.size : self.cap]])
            self.size += n
        else:  # past the cap: keep draining, keep nothing
            n = len(os.read(self.fd, 1 << 16))
            self.truncated = self.truncated or n > 0
        if n == 0:
            self.open = False

    def finish(self) -> memoryview:
        os.close(self.fd)
        self.fd = -1
        return self.view[: self.size]

    def wipe(self) -> None:
        self.view[: self.size] = bytes(self.size)


def _drain(poller: select.poll, streams: dict[int, _Capture]) -> None:
    """Read what is left in the output pipes once every process of the run is dead.

    Normally each pipe is at its end. A write end can outlive every process (passed
    in a unix-socket message that nobody received), so never wait: read only what
    poll says is there now.
    """
    while streams:
        events = poller.poll(0)
        if not events:
            return
        for fd, _ in events:
            stream = streams[fd]
            stream.read_some()
            if not stream.open:
                poller.unregister(fd)
                del streams[fd]


def _kill_everything_else() -> int:
    """SIGKILL every process in the namespace but us (we are PID 1), then reap them all.

    kill(-1) fails with ESRCH only when no other process, live or zombie, exists in the
    namespace: then there is nothing to reap either.
    """
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        return 0
    reaped = 0
    while True:
        try:
            os.waitpid(-1, 0)
            reaped += 1
        except ChildProcessError:
            return reaped
        except InterruptedError:  # pragma: no cover - no handlers are installed
            continue


def _splice_to_memfd(src: int, size: int, name: str) -> int:
    """Move `size` bytes from the control pipe into a new memfd, bypassing our memory."""
    fd = os.memfd_create(name, 0)
    left = size
    while left > 0:
        moved = os.splice(src, fd, left)
        if moved == 0:
            raise EOFError("control stream closed inside a payload")
        left -= moved
    if size:
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


# -- the server: one run --------------------------------------------------------------


class _RunTemplate:
    """What every run's child starts from, made once: its standard streams and `__main__`.

    The server never uses these objects, so each child gets pristine copies of them
    (copy-on-write) without paying to build them: built in the child, they cost about
    a hundred page faults (the io and codec machinery touched for the first time in
    that address space). The streams wrap fds 0-2, which the server points at the
    run's stdin memfd and output pipes for the moment of each fork; they are made
    while 0-2 are a memfd and pipes, so what they cache (seekable, block size) holds.
    """

    def __init__(self, devnull: int, diagnostics: int) -> None:
        stdin = os.memfd_create("stdin", 0)
        pipe_r, pipe_w = os.pipe()
        os.dup2(stdin, 0)
        os.dup2(pipe_w, 1)
        os.dup2(pipe_w, 2)
        self.streams = (
            open(0, encoding="utf-8", errors="replace", closefd=False),
            open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False),
            open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1),
        )
        for fd, target in ((0, devnull), (1, devnull), (2, diagnostics)):
            os.dup2(target, fd)
        for fd in (stdin, pipe_r, pipe_w):
            os.close(fd)
        self.main = types.ModuleType("__main__")
        self.main.__file__ = WORK_DIR + "/main.py"
        self.main.__builtins__ = __builtins__
        #: source bytes -> (code object, lines): the hello's trusted programs, compiled
        #: once here so that a run of one of them skips the compile (see `warm_programs`).
        self.programs: dict[bytes, tuple[types.CodeType, list[str]]] = {}


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


def _child(
    code_fd: int, code_len: int, files: list, file_fds: list[int], rlimits: tuple, template: _RunTemplate
) -> None:
    """The forked child: become the run's process, set limits, run the code. Never returns.

    Every object this touches costs a copy-on-write page fault, so it uses what the
    server prepared, and C functions rather than their Python wrappers.
    """
    exit_code = 125
    try:
        os.setsid()
        code = os.pread(code_fd, code_len, 0)
        contents: list[bytes] = []
        if files:  # (a comprehension, even over nothing, costs a dozen page faults)
            contents = [os.pread(fd, size, 0) for (_, size), fd in zip(files, file_fds, strict=True)]
        os.closerange(3, 1 << 16)  # fds 0-2 are the run's already (see run_one)
        os.chdir(WORK_DIR)
        if files:
            _write_files(files, contents)
        del contents
        setrlimit = resource.setrlimit
        for which, value in rlimits:
            setrlimit(which, value)
        # As a fresh interpreter does (the C function: signal.signal's enum wrapping
        # touches many objects).
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        # Non-dumpable is inherited from the server; a normal process is dumpable (its
        # /proc/self/fd and /proc/self/mem are its own to read).
        _prctl(PR_SET_DUMPABLE, 1)
        _run_user_code(code, template)
    except SystemExit as exc:
        exit_code = _exit_code_of(exc)
    except BaseException as exc:  # a failure of the set-up itself
        try:
            os.write(2, f"sandbox: run set-up failed: {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    os._exit(exit_code)


def _write_files(files: list, contents: list[bytes]) -> None:
    for (name, _), data in zip(files, contents, strict=True):
        path = os.path.join(WORK_DIR, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)


def _run_user_code(code: bytes, template: _RunTemplate) -> None:
    """Run the code as `__main__` the way `python main.py` would, then exit like it would."""
    # `random` reseeds itself in a forked child (os.register_at_fork), as a fresh
    # interpreter would seed itself; nothing to do here.
    sys.stdin, sys.stdout, sys.stderr = template.streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = template.streams
    sys.argv = ["main.py"]
    sys.path[0:1] = [WORK_DIR]
    main = template.main
    sys.modules["__main__"] = main
    exit_code = 0
    try:
        warm = template.programs.get(code)
        if warm is None:  # compiled here, not in a helper: a SyntaxError shows no frame of ours
            source = code.decode("utf-8", errors="replace")
            linecache.cache["main.py"] = (len(source), None, source.splitlines(keepends=True), "main.py")
            program = compile(source, "main.py", "exec", dont_inherit=True)
        else:
            program, lines = warm
            linecache.cache["main.py"] = (len(code), None, lines, "main.py")
        exec(program, main.__dict__)
    except SystemExit as exc:
        exit_code = _exit_code_of(exc)
    except BaseException as exc:  # print it as `python main.py` would, without our frame
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        exit_code = 1
    try:
        threading = sys.modules.get("threading")
        if threading is not None:  # only a run that imported it can have started threads
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


class _Server:
    """The server's fixed state: control pipe, its own fds 0-2, limits, output buffers."""

    def __init__(self, ctrl_in: int, ctrl_out: int, limits: dict, scratch: _Scratch) -> None:
        self.ctrl_in, self.ctrl_out = ctrl_in, ctrl_out
        self.devnull = os.open("/dev/null", os.O_RDWR)
        self.diagnostics = os.dup(2)  # where the server's own errors go (the host reads it)
        self.template = _RunTemplate(self.devnull, self.diagnostics)
        self.scratch = scratch
        self.out, self.err = _Capture(limits["output"]), _Capture(limits["output"])
        # The count covers every process of the jail's uid in this user namespace,
        # including this server: allow `processes` on top of it.
        nproc = limits["processes"] + 1
        self.fixed_rlimits = (
            (resource.RLIMIT_FSIZE, (limits["file_size"], limits["file_size"])),
            (resource.RLIMIT_NOFILE, (limits["open_files"], limits["open_files"])),
            (resource.RLIMIT_NPROC, (nproc, nproc)),
            (resource.RLIMIT_CORE, (0, 0)),
            (resource.RLIMIT_STACK, (limits["stack"], limits["stack"])),
        )

    def run_one(self, head: bytes) -> None:
        """Receive one run's payloads, fork its child, supervise it, clean up, reply."""
        magic, code_len, stdin_len, timeout, memory_mb, manifest_len = RUN.unpack(head)
        if magic != RUN_MAGIC:
            raise ValueError(f"expected a run request, got {head[:16]!r}")
        ctrl_in = self.ctrl_in
        files = json.loads(read_exact(ctrl_in, manifest_len)) if manifest_len else []
        code_fd = _splice_to_memfd(ctrl_in, code_len, "code")
        stdin_fd = _splice_to_memfd(ctrl_in, stdin_len, "stdin")
        file_fds = [_splice_to_memfd(ctrl_in, size, "file") for _, size in files]
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        cpu = max(1, int(timeout + 1.999))
        memory = memory_mb << 20
        rlimits = ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (memory, memory)))
        rlimits += self.fixed_rlimits
        os.dup2(stdin_fd, 0)  # the run's standard fds, for the moment of the fork
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(code_fd, code_len, files, file_fds, rlimits, self.template)
        os.dup2(self.devnull, 0)
        os.dup2(self.devnull, 1)
        os.dup2(self.diagnostics, 2)
        for fd in (out_w, err_w, code_fd, stdin_fd, *file_fds):
            os.close(fd)
        out, err = self.out, self.err
        out.start(out_r)
        err.start(err_r)
        streams = {out_r: out, err_r: err}
        poller = select.poll()
        for fd in streams:
            poller.register(fd, select.POLLIN)
        timed_out = self._supervise(pid, started + timeout, poller, streams)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        wall = time.monotonic() - started
        leftovers = _kill_everything_else()
        _drain(poller, streams)
        self.scratch.reset()
        flags = (
            (_TIMED_OUT if timed_out else 0)
            | (_STDOUT_TRUNCATED if out.truncated else 0)
            | (_STDERR_TRUNCATED if err.truncated else 0)
        )
        stdout, stderr = out.finish(), err.finish()
        report = RESULT.pack(
            RESULT_MAGIC,
            os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1,
            os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
            flags, leftovers, wall, len(stdout), len(stderr),
        )
        parts = [report, stdout, stderr]
        while parts:  # usually one writev
            written = os.writev(self.ctrl_out, parts)
            while parts and written >= len(parts[0]):
                written -= len(parts.pop(0))
            if parts and written:
                parts[0] = memoryview(parts[0])[written:]
        stdout.release()
        stderr.release()
        out.wipe()
        err.wipe()

    @staticmethod
    def _supervise(pid: int, deadline: float, poller: select.poll, streams: dict[int, _Capture]) -> bool:
        """Read the run's output until its process exits; True if the deadline came first.

        It waits for the process (its pidfd), never for the end of the pipes, which an
        orphan could hold open. Streams that end are dropped from `poller` and `streams`.
        """
        pidfd = os.pidfd_open(pid)
        poller.register(pidfd, select.POLLIN)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                exited = False
                for fd, _ in poller.poll(max(1, int(left * 1000))):
                    if fd == pidfd:
                        exited = True
                        continue
                    stream = streams[fd]
                    stream.read_some()
                    if not stream.open:
                        poller.unregister(fd)
                        del streams[fd]
                if exited:
                    return False
        finally:
            poller.unregister(pidfd)
            os.close(pidfd)


def warm_programs(sources: list) -> dict[bytes, tuple[types.CodeType, list[str]]]:
    """The hello's trusted programs (a grader the host runs again and again), compiled.

    Only what the host names in the hello is kept: the server never holds a run's
    code, so no run can find another's in memory. A program that does not compile is
    left out; its runs compile it and report the error as any run would.
    """
    programs = {}
    for source in sources:
        try:
            # dont_inherit: as `python main.py` would, without this file's __future__ flags
            program = compile(source, "main.py", "exec", dont_inherit=True)
            programs[source.encode("utf-8", errors="replace")] = (program, source.splitlines(keepends=True))
        except (SyntaxError, ValueError):
            pass
    return programs


def serve() -> None:
    """The server's main loop: hello, then one run request -> one result until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # PID 1 must have no handlers to abuse
    ctrl_in, ctrl_out = os.dup(0), os.dup(1)
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    _prctl(PR_SET_DUMPABLE, 0)
    hello = read_frame(ctrl_in)
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    programs = warm_programs(hello.get("programs", []))
    seccomp = bytes.fromhex(hello.get("seccomp", ""))
    if seccomp:
        install_seccomp(seccomp)
    # The filter refuses setxattr (see seccomp.py): the scratch check relies on that.
    server = _Server(ctrl_in, ctrl_out, hello["limits"], _Scratch(SCRATCH_DIRS, xattrs_blocked=bool(seccomp)))
    server.template.programs = programs
    # A child replaces these; held here, the originals are not freed in every child (a
    # deallocation writes to their pages: copy-on-write faults for nothing).
    keep = (sys.stdin, sys.stdout, sys.stderr, sys.argv, sys.modules["__main__"])
    # Everything loaded so far lives as long as the server: keep the collector away from
    # it, so that a collection in a run does not write to (and copy) all of its pages.
    gc.freeze()
    write_all(
        ctrl_out,
        encode_frame(
            {"ready": True, "pid": os.getpid(), "uid": os.getuid(), "python": sys.version.split()[0],
             "seccomp": bool(seccomp), "fast_scratch_check": server.scratch.trust_stat,
             "warm_programs": len(programs)}
        ),
    )
    while True:
        try:
            head = read_exact(ctrl_in, RUN.size)
        except EOFError:
            del keep
            return
        server.run_one(head)


if __name__ == "__main__":
    serve()
