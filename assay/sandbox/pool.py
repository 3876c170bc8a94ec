"""Long-lived jailed workers and the dispatcher that spreads runs across them.

A worker is one fork server (see forkserver.py) behind a `Transport`: a byte
stream to it and from it. Backends differ only in how they start one (bubblewrap
with pipes, a Docker container with an attached socket); the pool starts them,
feeds them requests, collects replies in input order, and replaces a worker that
dies or stops answering, without the caller noticing beyond that one run.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from assay.sandbox import forkserver
from assay.sandbox.execution import (
    Execution,
    Limits,
    RunRequest,
    SandboxError,
    execution_from_reply,
    sandbox_failure,
)

#: How long a new worker has to say it is ready.
START_TIMEOUT = 30.0
#: Slack on top of a run's own timeout before the host gives up on its worker; the
#: fork server enforces the run's limit itself, so this only fires if the server hangs.
GRACE = 5.0


class Transport(Protocol):
    """A started fork server: send it bytes, read its frames, kill it."""

    def send(self, parts: Sequence[bytes | memoryview]) -> None: ...

    def fileno(self) -> int: ...

    def read_frame(self) -> tuple[dict, list[bytes]]: ...

    def kill(self) -> None: ...

    def diagnostics(self) -> str: ...


class Backend(Protocol):
    name: str

    def spawn(self) -> Transport: ...

    def hello(self) -> dict: ...

    def close(self) -> None: ...


class _Worker:
    def __init__(self, transport: Transport, info: dict) -> None:
        self.transport = transport
        self.info = info


class WorkerPool:
    """`size` warm workers of one backend; `run_many` dispatches requests across them."""

    def __init__(self, backend: Backend, size: int, limits: Limits) -> None:
        if size < 1:
            raise ValueError(f"workers must be at least 1, got {size}")
        self.backend = backend
        self.size = size
        self.limits = limits
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    # -- starting and stopping ------------------------------------------------------

    def _start(self, count: int) -> list[_Worker]:
        """Start `count` workers in parallel and wait for each one's ready message."""
        transports = []
        try:
            for _ in range(count):
                transports.append(self.backend.spawn())
            hello = forkserver.encode_frame(self.backend.hello())
            for transport in transports:
                transport.send(hello)
            return [_Worker(t, self._await_ready(t)) for t in transports]
        except BaseException:
            for transport in transports:
                transport.kill()
            raise

    def _await_ready(self, transport: Transport) -> dict:
        ready, _, _ = select.select([transport], [], [], START_TIMEOUT)
        problem = f"did not start within {START_TIMEOUT:g}s"
        if ready:
            try:
                info, _ = transport.read_frame()
                if info.get("ready"):
                    return info
                problem = f"sent {info!r:.200} instead of its ready message"
            except (EOFError, OSError, ValueError) as exc:
                problem = f"exited during start-up ({type(exc).__name__})"
        detail = transport.diagnostics() or "no output"
        transport.kill()
        raise SandboxError(f"the {self.backend.name} sandbox worker {problem}: {detail}")

    def _ensure_workers(self) -> None:
        if os.getpid() != self._pid:  # forked: those workers belong to the parent process
            self._workers, self._pid = [], os.getpid()
        missing = self.size - len(self._workers)
        if missing > 0:
            self._workers.extend(self._start(missing))

    def _replace(self, worker: _Worker) -> _Worker | None:
        worker.transport.kill()
        index = self._workers.index(worker)
        try:
            (fresh,) = self._start(1)
        except SandboxError:
            del self._workers[index]  # try again on the next call
            return None
        self._workers[index] = fresh
        return fresh

    def close(self) -> None:
        with self._lock:
            if os.getpid() == self._pid:
                for worker in self._workers:
                    worker.transport.kill()
            self._workers = []

    def worker_info(self) -> list[dict]:
        """The ready messages of the live workers (pid inside the jail, uid, python version)."""
        with self._lock:
            self._ensure_workers()
            return [dict(w.info) for w in self._workers]

    # -- running --------------------------------------------------------------------

    def run_many(
        self,
        requests: Sequence[RunRequest],
        on_result: Callable[[int, Execution], None] | None = None,
    ) -> list[Execution]:
        """Run every request on some worker; results in input order."""
        results: list[Execution | None] = [None] * len(requests)
        if not requests:
            return []
        with self._lock:
            self._ensure_workers()
            pending = deque((i, 0) for i in range(len(requests)))  # (index, failed sends)
            busy: dict[int, tuple[_Worker, int, float, float]] = {}

            def finish(index: int, execution: Execution) -> None:
                results[index] = execution
                if on_result is not None:
                    on_result(index, execution)

            while pending or busy:
                if not self._workers:
                    self._ensure_workers()  # every worker died and could not be replaced
                idle = [w for w in self._workers if all(b[0] is not w for b in busy.values())]
                for worker in idle:
                    if not pending:
                        break
                    index, failures = pending.popleft()
                    request = requests[index]
                    header, blobs = request.wire(self.limits)
                    try:
                        worker.transport.send(forkserver.encode_frame(header, *blobs))
                    except OSError as exc:  # the worker died between runs: replace, retry once
                        self._replace(worker)
                        if failures >= 1:
                            finish(index, sandbox_failure(f"sandbox worker unavailable: {exc}"))
                        else:
                            pending.appendleft((index, failures + 1))
                        break  # the idle list is stale now
                    started = time.monotonic()
                    deadline = started + request.timeout + GRACE
                    busy[worker.transport.fileno()] = (worker, index, deadline, started)
                if not busy:
                    continue
                wait = max(0.0, min(b[2] for b in busy.values()) - time.monotonic())
                readable, _, _ = select.select(list(busy), [], [], wait)
                for fd in readable:
                    worker, index, _, started = busy.pop(fd)
                    request = requests[index]
                    try:
                        reply, blobs = worker.transport.read_frame()
                        finish(index, execution_from_reply(reply, blobs[0], blobs[1], request.timeout))
                    except (EOFError, OSError, ValueError, IndexError) as exc:
                        detail = worker.transport.diagnostics()
                        finish(
                            index,
                            sandbox_failure(
                                f"sandbox worker died during the run ({type(exc).__name__}): {detail}",
                                time.monotonic() - started,
                            ),
                        )
                        self._replace(worker)
                now = time.monotonic()
                for fd, (worker, index, deadline, started) in list(busy.items()):
                    if deadline <= now:
                        del busy[fd]
                        finish(
                            index,
                            Execution(
                                "timeout", None, "", "", now - started,
                                detail="the sandbox worker stopped answering and was replaced",
                            ),
                        )
                        self._replace(worker)
        return results  # type: ignore[return-value]
