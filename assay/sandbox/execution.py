"""What a sandbox run takes (`RunRequest`, `Limits`) and what it gives back (`Execution`)."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from assay.errors import AssayError

#: Every status an `Execution` may carry.
STATUSES = ("ok", "error", "timeout", "memory", "killed", "sandbox_error")

_SIGXCPU = 24
_SIGKILL = 9


class SandboxError(AssayError, RuntimeError):
    """The sandbox itself cannot work (a missing tool, a daemon that does not answer).

    Untrusted code never causes this; the message names what is missing and how to get it.
    """


@dataclass(frozen=True)
class Execution:
    """The outcome of one run.

    status:    ok (exit status 0), error (non-zero exit), timeout (killed at the wall-clock
               or CPU limit), memory (ran out of its address-space limit), killed (died from
               a signal, e.g. a segfault), sandbox_error (the sandbox failed; detail says how).
    exit_code: the exit status, or minus the signal number when a signal ended the run
               (as `subprocess` reports it); None when the sandbox could not tell.
    stdout, stderr: decoded as UTF-8 (invalid bytes replaced), capped per stream; a capped
               stream has `stdout_truncated` / `stderr_truncated` set.
    wall_time: seconds from the start of the run to its end, measured by the sandbox.
    """

    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    wall_time: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    detail: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Execution status must be one of {STATUSES}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def truncated(self) -> bool:
        return self.stdout_truncated or self.stderr_truncated

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Limits:
    """Per-run limits beyond a run's own timeout and memory (the same for every run of a sandbox)."""

    output_bytes: int = 1 << 20  #: kept per stream (stdout, stderr); the rest is drained and dropped
    file_size: int = 16 << 20  #: largest file a run may write (RLIMIT_FSIZE)
    open_files: int = 256  #: RLIMIT_NOFILE
    processes: int = 64  #: processes and threads a run may have at once (RLIMIT_NPROC)
    stack: int = 8 << 20  #: RLIMIT_STACK: deep recursion ends in a segfault (`killed`), not a hang
    work_mb: int = 64  #: size of the private /work tmpfs
    tmp_mb: int = 64  #: size of the private /tmp tmpfs
    shm_mb: int = 16  #: size of the private /dev/shm tmpfs

    def __post_init__(self) -> None:
        # checked here, where the field can be named: a bad one otherwise fails inside the
        # fork server or bubblewrap, or drops every byte of output (output_bytes=-1)
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"sandbox limit {f.name} must be a whole number, got {value!r:.40}")
            if value < 1:
                raise ValueError(f"sandbox limit {f.name} must be at least 1, got {value}")

    def to_wire(self) -> dict[str, int]:
        return {
            "output": self.output_bytes,
            "file_size": self.file_size,
            "open_files": self.open_files,
            "processes": self.processes,
            "stack": self.stack,
        }


MAX_TIMEOUT = 3600.0


@dataclass
class RunRequest:
    """One validated run: Python source, stdin, files for the work directory, limits."""

    code: bytes
    stdin: bytes = b""
    files: list[tuple[str, bytes]] = field(default_factory=list)
    timeout: float = 5.0
    memory_mb: int = 512

    @classmethod
    def build(
        cls,
        code: str,
        *,
        stdin: str | bytes = "",
        files: Mapping[str, str | bytes] | None = None,
        timeout: float = 5.0,
        memory_mb: int = 512,
    ) -> RunRequest:
        """Validate `run`'s arguments; bad arguments (not bad code) raise TypeError/ValueError."""
        if not isinstance(code, str):
            raise TypeError(f"code must be a str of Python source, got {type(code).__name__}")
        if not isinstance(stdin, (str, bytes)):
            raise TypeError(f"stdin must be str or bytes, got {type(stdin).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}], got {timeout!r}")
        if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb < 32:
            raise ValueError(f"memory_mb must be an int of at least 32, got {memory_mb!r}")
        if files is not None and not isinstance(files, Mapping):
            raise TypeError(f"files must be a dict of name -> content, got {type(files).__name__}")
        blobs: list[tuple[str, bytes]] = []
        given: dict[str, str] = {}  # normalised name -> the name as given
        for name, content in (files or {}).items():
            normal = _check_file_name(name)
            _check_no_clash(normal, name, given)
            given[normal] = name
            blobs.append((normal, _as_bytes(content, f"files[{name!r}]")))
        return cls(
            code=code.encode("utf-8", errors="surrogateescape"),
            stdin=_as_bytes(stdin, "stdin"),
            files=blobs,
            timeout=float(timeout),
            memory_mb=memory_mb,
        )

    @classmethod
    def from_job(cls, job: Mapping[str, Any]) -> RunRequest:
        """A `run_many` job: a dict of `run`'s keyword arguments, with `code`."""
        if not isinstance(job, Mapping) or "code" not in job:
            raise TypeError(f"each job must be a dict with a 'code' key, got {job!r:.100}")
        unknown = set(job) - {"code", "stdin", "files", "timeout", "memory_mb"}
        if unknown:
            raise TypeError(f"unknown job keys {sorted(unknown)} (allowed: code, stdin, files, timeout, memory_mb)")
        return cls.build(**job)

    def wire(self, limits: Limits) -> tuple[dict[str, Any], list[bytes]]:
        """The request header and payload blobs the fork server expects, in order
        (`forkserver.encode_run` frames them; the limits also travel once, in the hello)."""
        header = {
            "code_len": len(self.code),
            "stdin_len": len(self.stdin),
            "files": [[name, len(data)] for name, data in self.files],
            "timeout": self.timeout,
            "memory_mb": self.memory_mb,
            "limits": limits.to_wire(),
        }
        return header, [self.code, self.stdin, *(data for _, data in self.files)]


def _as_bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogateescape")
    raise TypeError(f"{what} must be str or bytes, got {type(value).__name__}")


def _check_file_name(name: object) -> str:
    if not isinstance(name, str) or not name or "\0" in name:
        raise ValueError(f"file names must be non-empty strings, got {name!r}")
    normal = posixpath.normpath(name)
    if normal.startswith(("/", "..")) or normal == ".":
        raise ValueError(f"file name {name!r} must be a relative path inside the work directory")
    return normal


def _check_no_clash(normal: str, name: str, given: dict[str, str]) -> None:
    """Two names for one file (`a` and `./a`: the last would win in silence), or a file
    where another needs a folder (`a` and `a/b`: the run's set-up would fail, and the
    program be blamed), are the caller's mistake: a `ValueError` naming both."""
    for other, as_given in given.items():
        if other == normal:
            clash = "are the same file"
        elif other.startswith(normal + "/") or normal.startswith(other + "/"):
            clash = "need one name to be a file and a folder"
        else:
            continue
        raise ValueError(f"files {as_given!r} and {name!r} {clash}")


def execution_from_reply(
    reply: Mapping[str, Any], stdout: bytes, stderr: bytes, timeout: float
) -> Execution:
    """Turn the fork server's report on a run into an `Execution` (decided outside the run)."""
    out = stdout.decode("utf-8", errors="replace")
    err = stderr.decode("utf-8", errors="replace")
    code, signal = reply.get("exit_code"), reply.get("signal")
    exit_code = -signal if signal is not None else code
    if reply.get("timed_out"):
        status, detail = "timeout", f"killed at the {timeout:g} s wall-clock limit"
    elif signal == _SIGXCPU:
        status, detail = "timeout", "killed at the CPU-time limit"
    elif signal is not None:
        status, detail = "killed", f"killed by signal {signal}"
    elif code == 0:
        status, detail = "ok", ""
    elif _ends_in_memory_error(err):
        status, detail = "memory", "ran out of memory (address-space limit)"
    else:
        status, detail = "error", f"exit status {code}"
    return Execution(
        status=status,
        exit_code=exit_code,
        stdout=out,
        stderr=err,
        wall_time=float(reply.get("wall_time", 0.0)),
        stdout_truncated=bool(reply.get("stdout_truncated")),
        stderr_truncated=bool(reply.get("stderr_truncated")),
        detail=detail,
    )


def _ends_in_memory_error(stderr: str) -> bool:
    lines = [line for line in stderr[-4096:].splitlines() if line.strip()]
    return bool(lines) and lines[-1].startswith("MemoryError")


def sandbox_failure(detail: str, wall_time: float = 0.0) -> Execution:
    return Execution("sandbox_error", None, "", "", wall_time, detail=detail)
