"""A client for the Lean 4 REPL's JSON protocol (leanprover-community/repl).

The REPL reads commands as JSON objects, each followed by a blank line:
`{"cmd": "theorem t : 1 + 1 = 2 := by decide", "env": 0}`, and answers each with one
JSON object: `{"env": 1, "messages": [{"severity": "error", "data": "..."}],
"sorries": [...]}` (or `{"message": "..."}` when the command itself is refused).

`LeanRepl` keeps one REPL process warm and sends it commands under a deadline: a reply
that is late kills the process (the next command starts a fresh one). The process runs
under an address-space limit and dies with its parent (PR_SET_PDEATHSIG), so a verifier
worker killed at its own deadline never leaves a Lean process behind.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any


class ReplTimeout(Exception):
    """The REPL did not answer before the deadline (it has been killed)."""


class ReplError(Exception):
    """The REPL could not be started, died, or answered something that is not its protocol."""


#: Longest reply read (bytes): a reply bigger than this is not a verdict we need.
MAX_REPLY_BYTES = 4 << 20


def _limits(memory_mb: int) -> None:  # pragma: no cover - runs in the child before exec
    import ctypes
    import resource

    os.setsid()  # its own process group: a kill reaches everything it starts
    try:  # die with the verifier worker that started it
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if memory_mb > 0:
        size = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (size, size))


class LeanRepl:
    """One warm REPL process; `command` sends a command and returns its JSON reply."""

    def __init__(self, argv: Sequence[str], *, cwd: str | None = None, memory_mb: int = 0) -> None:
        self.argv, self.cwd, self.memory_mb = list(argv), cwd, memory_mb
        self.process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        #: header text -> the env id after running it, for this process
        self.headers: dict[str, int | None] = {}

    def start(self) -> None:
        try:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, preexec_fn=lambda: _limits(self.memory_mb),
            )
        except OSError as exc:
            raise ReplError(f"cannot start {self.argv[0]}: {exc.strerror or exc}") from None
        self._buffer = b""
        self.headers = {}

    def close(self) -> None:
        """Kill the process (and its group); the next command starts a fresh one."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.kill()
        process.wait(timeout=5)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()

    def command(self, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one request and read its reply before `deadline` (time.monotonic())."""
        if self.process is None or self.process.poll() is not None:
            self.close()
            self.start()
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n\n")
            self.process.stdin.flush()
        except OSError:
            self.close()
            raise ReplError("the REPL closed its input") from None
        return self._read(deadline)

    def _read(self, deadline: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while True:
            reply = self._parse_buffer()
            if reply is not None:
                return reply
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise ReplTimeout("the REPL did not answer in time")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = self.process.poll()
                self.close()
                raise ReplError(f"the REPL exited (status {code})")
            self._buffer += chunk
            if len(self._buffer) > MAX_REPLY_BYTES:
                self.close()
                raise ReplError("the REPL's reply is too long")

    def _parse_buffer(self) -> dict[str, Any] | None:
        # A reply is a JSON object followed by a blank line; it may span many lines.
        end = self._buffer.find(b"\n\n")
        if end < 0:
            return None
        text, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        if not text.strip():
            return self._parse_buffer()
        try:
            reply = json.loads(text)
        except ValueError:
            self.close()
            raise ReplError(f"the REPL answered something that is not JSON: {text[:80]!r}") from None
        if not isinstance(reply, dict):
            self.close()
            raise ReplError("the REPL answered JSON that is not an object")
        return reply
