"""Long-lived jailed workers and the dispatcher that spreads runs across them.

A worker is one fork server (see forkserver.py) behind a `Transport`: a byte
stream to it and from it. Backends differ only in how they start one (bubblewrap
with pipes, a Docker container with an attached socket); the pool starts them,
feeds them requests, collects results in input order, and replaces a worker that
dies or stops answering, without the caller noticing beyond that one run.

Each worker has up to `PIPELINE_DEPTH` requests in flight: while it runs one, the
next already waits in its input, so the server starts it the moment it has sent
a result instead of waiting for the host to read that result and answer. Writes
never block (what does not fit stays in the worker's outbox), so a large request
queued behind a long run holds up nothing else, and the host always keeps reading
results (a server blocked on a full output pipe would never read its input).
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
#: Requests sent to one worker ahead of its results (1: no pipelining).
PIPELINE_DEPTH = 2


class Transport(Protocol):
    """A started fork server: bytes to it, bytes from it, and a way to kill it."""

    def fileno(self) -> int:
        """Readable when the server sent something (or its output ended)."""

    def write_fileno(self) -> int:
        """Writable when `write_some` can take more."""

    def write_some(self, data: memoryview) -> int:
        """Write what fits without blocking; the number of bytes taken (OSError if dead)."""

    def recv(self) -> bytes:
        """Bytes from the server (after `fileno` was readable); EOFError at the end."""

    def kill(self) -> None: ...

    def diagnostics(self) -> str: ...


class Backend(Protocol):
    name: str

    def spawn(self) -> Transport: ...

    def hello(self) -> dict: ...

    def close(self) -> None: ...


@dataclass
class _InFlight:
    index: int  #: position in the caller's list
    failures: int  #: earlier tries that a dying worker lost
    started: float = 0.0  #: when the server began it (0: still queued behind another)
    deadline: float = float("inf")


class _Worker:
    """One fork server as the pool sees it: what is sent, what came back."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.info: dict = {}
        self.inbox = bytearray()  # received, not yet parsed
        self.outbox: deque[memoryview] = deque()  # to send, as soon as it fits
        self.inflight: deque[_InFlight] = deque()  # sent; the oldest is the one running

    def submit(self, parts: Sequence[bytes]) -> None:
        self.outbox.extend(memoryview(part) for part in parts if len(part))
        self.flush()

    def flush(self) -> None:
        """Send what fits now; OSError if the worker is gone."""
        while self.outbox:
            view = self.outbox[0]
            written = self.transport.write_some(view)
            if written < len(view):
                self.outbox[0] = view[written:]
                return
            self.outbox.popleft()

    def receive(self) -> None:
        self.inbox += self.transport.recv()


class WorkerPool:
    """`size` warm workers of one backend; `run_many` dispatches requests across them."""

    def __init__(self, backend: Backend, size: int, limits: Limits, programs: Sequence[str] = ()) -> None:
        if size < 1:
            raise ValueError(f"workers must be at least 1, got {size}")
        self.backend = backend
        self.size = size
        self.limits = limits
        self.programs = list(programs)
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    # -- starting and stopping ------------------------------------------------------

    def _start(self, count: int) -> list[_Worker]:
        """Start `count` workers in parallel and wait for each one's ready message."""
        workers: list[_Worker] = []
        try:
            for _ in range(count):
                workers.append(_Worker(self.backend.spawn()))
            hello = forkserver.encode_frame(
                dict(self.backend.hello(), limits=self.limits.to_wire(), programs=self.programs)
            )
            for worker in workers:
                worker.submit([hello])
            for worker in workers:
                worker.info = self._await_ready(worker)
            return workers
        except BaseException:
            for worker in workers:
                worker.transport.kill()
            raise

    def _await_ready(self, worker: _Worker) -> dict:
        transport = worker.transport
        deadline = time.monotonic() + START_TIMEOUT
        problem = f"did not start within {START_TIMEOUT:g}s"
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                writing = [transport.write_fileno()] if worker.outbox else []
                readable, writable, _ = select.select([transport.fileno()], writing, [], left)
                if writable:
                    worker.flush()
                if readable:
                    worker.receive()
                    info = forkserver.parse_frame(worker.inbox)
                    if info is not None:
                        if info.get("ready"):
                            return info
                        problem = f"sent {info!r:.200} instead of its ready message"
                        break
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

    def _replace(self, worker: _Worker) -> None:
        worker.transport.kill()
        index = self._workers.index(worker)
        try:
            (fresh,) = self._start(1)
        except SandboxError:
            del self._workers[index]  # try again on the next call
            return
        self._workers[index] = fresh

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
        if not requests:
            return []
        with self._lock:
            self._ensure_workers()
            try:
                return _Batch(self, requests, on_result).run()
            except BaseException:  # e.g. on_result raised: drop workers still busy for this call
                for worker in list(self._workers):
                    if worker.inflight or worker.outbox or worker.inbox:
                        worker.transport.kill()
                        self._workers.remove(worker)  # restarted on the next call
                raise


class _Batch:
    """One `run_many` call: which request is where, and what came back."""

    def __init__(
        self,
        pool: WorkerPool,
        requests: Sequence[RunRequest],
        on_result: Callable[[int, Execution], None] | None,
    ) -> None:
        self.pool = pool
        self.requests = requests
        self.on_result = on_result
        self.results: list[Execution | None] = [None] * len(requests)
        self.pending: deque[_InFlight] = deque(_InFlight(i, 0) for i in range(len(requests)))

    def run(self) -> list[Execution]:
        pool = self.pool
        while self.pending or any(w.inflight for w in pool._workers):
            if not pool._workers:
                pool._ensure_workers()  # every worker died and could not be replaced
            self._dispatch()
            self._wait()
        return self.results  # type: ignore[return-value]

    def _finish(self, index: int, execution: Execution) -> None:
        self.results[index] = execution
        if self.on_result is not None:
            self.on_result(index, execution)

    def _dispatch(self) -> None:
        """Give each worker one request, then a second one to queue, and so on."""
        for depth in range(1, PIPELINE_DEPTH + 1):
            for worker in list(self.pool._workers):
                if not self.pending:
                    return
                if worker not in self.pool._workers:
                    continue  # lost (and replaced) earlier in this loop
                if len(worker.inflight) >= depth or worker.outbox:
                    continue
                entry = self.pending.popleft()
                request = self.requests[entry.index]
                if not worker.inflight:
                    self._begin(entry)
                worker.inflight.append(entry)
                header, blobs = request.wire(self.pool.limits)
                try:
                    worker.submit(forkserver.encode_run(header, blobs))
                except OSError:  # the worker died: what it was given never started
                    self._lose(worker, "", head_failed=False)

    def _begin(self, entry: _InFlight) -> None:
        entry.started = time.monotonic()
        entry.deadline = entry.started + self.requests[entry.index].timeout + GRACE

    def _wait(self) -> None:
        """Wait for results (or room to write), take them in, enforce the host's deadlines."""
        busy = [w for w in self.pool._workers if w.inflight]
        if not busy:
            return
        readers = {w.transport.fileno(): w for w in busy}
        writers = {w.transport.write_fileno(): w for w in busy if w.outbox}
        wait = max(0.0, min(w.inflight[0].deadline for w in busy) - time.monotonic())
        readable, writable, _ = select.select(list(readers), list(writers), [], wait)
        for fd in writable:
            worker = writers[fd]
            try:
                worker.flush()
            except OSError:
                self._lose(worker, "", head_failed=False)
        for fd in readable:
            worker = readers[fd]
            if worker not in self.pool._workers:
                continue  # replaced above
            try:
                worker.receive()
                self._take_results(worker)
            except (EOFError, OSError, ValueError) as exc:
                self._lose(worker, f"sandbox worker died during the run ({type(exc).__name__})")
        now = time.monotonic()
        for worker in list(self.pool._workers):
            if worker.inflight and worker.inflight[0].deadline <= now:
                self._lose(worker, "the sandbox worker stopped answering and was replaced", timed_out=True)

    def _take_results(self, worker: _Worker) -> None:
        while True:
            parsed = forkserver.parse_result(worker.inbox)
            if parsed is None:
                return
            if not worker.inflight:
                raise ValueError("a result nobody asked for")
            report, stdout, stderr = parsed
            entry = worker.inflight.popleft()
            if worker.inflight:
                self._begin(worker.inflight[0])  # the server went straight on to it
            request = self.requests[entry.index]
            self._finish(entry.index, execution_from_reply(report, stdout, stderr, request.timeout))

    def _lose(self, worker: _Worker, detail: str, *, head_failed: bool = True, timed_out: bool = False) -> None:
        """Replace a worker that died or hung. The run it was serving gets `detail` (as a
        timeout when it hung); the requests queued behind it never started and go back
        to the front of the line (once: a request that loses two workers fails)."""
        now = time.monotonic()
        lost = list(worker.inflight)
        worker.inflight.clear()
        if head_failed and lost:
            head = lost.pop(0)
            elapsed = now - head.started if head.started else 0.0
            if timed_out:
                self._finish(head.index, Execution("timeout", None, "", "", elapsed, detail=detail))
            else:
                diagnostics = worker.transport.diagnostics()
                self._finish(head.index, sandbox_failure(f"{detail}: {diagnostics}", elapsed))
        retry = []
        for entry in lost:
            if entry.failures >= 1:
                self._finish(entry.index, sandbox_failure("sandbox worker unavailable (it died twice)"))
            else:
                retry.append(_InFlight(entry.index, entry.failures + 1))
        self.pending.extendleft(reversed(retry))
        self.pool._replace(worker)
