"""Hard wall-clock limits for verification, from any thread and any process.

Signal-based timeouts (SIGALRM, as math-verify uses) only work on the main
thread of the main interpreter; elsewhere they silently do nothing or raise,
which is how other trainers ended up with all-zero rewards. Here the work runs
in a forked worker process that the caller kills when its deadline passes, so
the limit holds no matter what the verifier does (a C extension that never
returns, a regex that backtracks forever, a sympy simplification that explodes).

`BoundedPool` keeps warm workers (forked once, reused for every call) so the
limit costs one pipe round-trip per call, not a process start. A worker killed at
its limit is replaced by a fork of the pool's zygote, which was forked with the first
workers: never by a fork of the owner as it is later (a trainer, by then, holds a model).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, NamedTuple


class TimedOut(Exception):
    """Raised by `call_with_timeout` when the call ran past its limit (the worker was killed)."""


class WorkerError(Exception):
    """Raised by `call_with_timeout` when the call raised, or its worker process died."""


class Failure(NamedTuple):
    """What `BoundedPool.map` returns in place of a value that could not be computed.

    kind is "timeout" (killed at the deadline) or "error" (raised, or the worker died).
    """

    kind: str
    detail: str


def _worker_main(conn: Connection, parent: int) -> None:
    fn: Callable[..., Any] | None = None
    while True:
        try:
            # Wake once a second to notice a parent that died without closing the pool
            # (crashed, killed, a multiprocessing.Pool worker terminated): the pipe does
            # not report it, since this worker and its siblings inherited copies of the
            # parent's end at fork.
            while not conn.poll(1.0):
                if os.getppid() != parent:
                    return
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        tag, payload = msg
        if tag == "fn":
            fn = payload
            continue
        # A chunk of jobs, answered one by one as each finishes: the parent restarts
        # the deadline at every answer, so each job keeps its own time limit.
        for index, args in payload:
            try:
                reply = (index, True, fn(*args))  # type: ignore[misc]
            except BaseException as exc:  # the caller decides what an exception means
                reply = (index, False, f"{type(exc).__name__}: {exc}"[:2000])
            try:
                conn.send(reply)
            except Exception as exc:  # an unpicklable result
                detail = f"result could not be sent back: {type(exc).__name__}: {exc}"
                conn.send((index, False, detail))


class _Zygote:
    """A process forked when the pool's first workers are, whose one job is to fork the
    workers that replace them later (after a timeout or a crash).

    Forked from the pool's owner as it is at that later moment, a replacement would keep
    its own copy of every page the owner writes from then on: a trainer holding a model
    writes gigabytes a step. Forked from this process instead, it shares only the owner's
    memory as it was when the pool started. The owner sends a byte per worker; the zygote
    answers with the worker's pid and, through the socket, the owner's end of its pipe.
    """

    def __init__(self) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        owner = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the zygote (coverage does not follow forks)
            self.channel.close()
            _zygote_main(theirs, owner)
        theirs.close()

    def spawn(self) -> tuple[Connection, _Adopted]:
        """A fresh worker: the owner's end of its pipe and a handle on its process."""
        self.channel.sendall(b"w")
        message, fds, _, _ = socket.recv_fds(self.channel, 8, 1)
        if len(message) != 8 or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise OSError("the zygote did not answer with a worker")
        return Connection(fds[0]), _Adopted(int.from_bytes(message, "big"))

    def close(self) -> None:
        """Tell the zygote to exit, and reap it. Not by closing the socket alone: any process
        forked from the owner since (another pool's workers) holds a copy of its end."""
        try:
            self.channel.sendall(b"q")
        except OSError:
            pass
        self.channel.close()
        deadline = time.monotonic() + 5
        try:
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    return
                time.sleep(0.001)
        except (ChildProcessError, ProcessLookupError):
            pass


def _zygote_main(channel: socket.socket, owner: int) -> None:  # pragma: no cover - in the zygote
    """Fork a worker per `w` received; exit on anything else, or once the owner is gone
    (checked every second, as the workers do: the socket may not report it)."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the workers
    try:
        while True:
            if not select.select([channel], [], [], 1.0)[0]:
                if os.getppid() != owner:
                    return
                continue
            if channel.recv(1) != b"w":
                return
            owners_end, workers_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            pid = os.fork()
            if pid == 0:
                channel.close()
                owners_end.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                try:
                    _worker_main(Connection(workers_end.detach()), os.getppid())
                finally:
                    os._exit(0)
            workers_end.close()
            socket.send_fds(channel, [pid.to_bytes(8, "big")], [owners_end.fileno()])
            owners_end.close()
    finally:
        os._exit(0)


class _Adopted:
    """A worker forked by the zygote, seen from the owner: not its child, so no exit code
    comes back; the zygote's kernel-reaped children leave no zombie to mistake for alive."""

    exitcode = None

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def is_alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except (ProcessLookupError, PermissionError):  # gone (or the pid reused by another user)
            return False
        return True

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def join(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)


class _Worker:
    def __init__(self, ctx: Any, zygote: _Zygote | None = None) -> None:
        self.fn: Any = None
        self.jobs: deque[tuple[int, Sequence[Any]]] = deque()  # sent, not yet answered; in order
        self.deadline = 0.0  # for the first of `jobs`
        if zygote is not None:
            self.conn, self.process = zygote.spawn()
            return
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, os.getpid()), daemon=True)
        # multiprocessing refuses to start a child from a daemonic process (a
        # multiprocessing.Pool worker, say). Ours exit by themselves when their parent
        # dies (see _worker_main), so the flag is lifted just for the start.
        config = mp.current_process()._config
        daemonic = config.get("daemon", False)
        if daemonic:
            config["daemon"] = False
        try:
            self.process.start()
        finally:
            if daemonic:
                config["daemon"] = daemonic
        child.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class BoundedPool:
    """A pool of forked worker processes that run calls under a hard wall-clock limit.

    >>> with BoundedPool(workers=2, timeout=1.0) as pool:
    ...     pool.map(pow, [(2, 10), (3, 3)])
    [1024, 27]

    A call that passes its deadline is killed with its worker (a fresh worker takes
    its place) and yields `Failure("timeout", ...)`; one that raises, or whose worker
    dies, yields `Failure("error", ...)`. The pool itself never raises for a job.
    """

    def __init__(self, workers: int = 1, timeout: float = 5.0) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.size = workers
        self.timeout = timeout
        self._ctx = mp.get_context("fork")
        self._workers: list[_Worker] = []
        self._zygote: _Zygote | None = None  # forks the replacements (see _Zygote)
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __enter__(self) -> BoundedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
            worker.kill()
        self._workers = []
        if self._zygote is not None and self._pid == os.getpid():
            self._zygote.close()
        self._zygote = None

    def start(self) -> None:
        """Start the workers now rather than at the first call (see `Environment.start_workers`)."""
        with self._lock:
            self._ensure_workers()

    def _ensure_workers(self) -> None:
        if os.getpid() != self._pid:  # we were forked: the workers belong to our parent
            self._workers, self._zygote, self._pid = [], None, os.getpid()
        if self._zygote is None:  # the first workers, then the zygote: forked as we are now
            self._workers = [w for w in self._workers if w.process.is_alive()]
            while len(self._workers) < self.size:
                self._workers.append(_Worker(self._ctx))
            self._zygote = _Zygote()
            return
        for worker in [w for w in self._workers if not w.process.is_alive()]:
            self._replace(worker)

    def _fresh_worker(self) -> _Worker:
        """A worker forked by the zygote; by this process if the zygote is gone."""
        if self._zygote is not None:
            try:
                return _Worker(self._ctx, self._zygote)
            except OSError:  # the zygote died (killed, Ctrl-C): fork from here, as before
                self._zygote = None
        return _Worker(self._ctx)

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        fresh = self._fresh_worker()
        self._workers[self._workers.index(worker)] = fresh
        return fresh

    def map(
        self,
        fn: Callable[..., Any],
        items: Iterable[Sequence[Any]],
        *,
        timeout: float | None = None,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        """Call `fn(*item)` for every item, in parallel; results come back in input order.

        `fn` must be picklable (a module-level function or a bound method of a picklable
        object). `on_result(index, result)` is called as each result arrives (progress bars).
        """
        limit = self.timeout if timeout is None else timeout
        jobs = deque(enumerate(items))
        results: list[Any] = [None] * len(jobs)
        # Cheap calls are sent in chunks, so that one pipe message carries many of them;
        # small enough chunks that every worker stays busy until the end.
        chunk = max(1, min(64, len(jobs) // (self.size * 8)))
        with self._lock:
            self._ensure_workers()
            busy: dict[Connection, _Worker] = {}

            def finish(worker: _Worker, value: Any) -> None:
                index, _ = worker.jobs.popleft()
                results[index] = value
                if on_result is not None:
                    on_result(index, value)
                worker.deadline = time.monotonic() + limit

            def retire(worker: _Worker, failure: Failure) -> None:
                """The worker's current job failed and the worker is gone: requeue the rest."""
                del busy[worker.conn]
                finish(worker, failure)
                jobs.extendleft(reversed(worker.jobs))
                self._replace(worker)

            while jobs or busy:
                for worker in list(self._workers):
                    if worker.jobs or not jobs:
                        continue
                    batch = [jobs.popleft() for _ in range(min(chunk, len(jobs)))]
                    try:
                        if worker.fn is not fn:
                            worker.conn.send(("fn", fn))
                            worker.fn = fn
                        worker.conn.send(("jobs", [(i, tuple(args)) for i, args in batch]))
                    except (OSError, ValueError):  # the worker died between jobs
                        jobs.extendleft(reversed(batch))
                        self._replace(worker)
                        continue
                    worker.jobs.extend(batch)
                    worker.deadline = time.monotonic() + limit
                    busy[worker.conn] = worker
                if not busy:
                    continue
                now = time.monotonic()
                next_deadline = min(w.deadline for w in busy.values())
                for conn in wait(list(busy), timeout=max(0.0, next_deadline - now)):
                    worker = busy[conn]
                    try:
                        while worker.jobs and conn.poll():
                            _, ok, value = conn.recv()
                            finish(worker, value if ok else Failure("error", value))
                    except (EOFError, OSError):
                        worker.process.join(timeout=1)  # reap it, so the exit code is known
                        code = worker.process.exitcode  # None for a worker the zygote forked
                        how = "" if code is None else f" (exit code {code})"
                        retire(worker, Failure("error", f"verifier process died{how}"))
                        continue
                    if not worker.jobs:
                        del busy[conn]
                now = time.monotonic()
                for worker in list(busy.values()):
                    if worker.deadline <= now:
                        retire(worker, Failure("timeout", f"killed after the {limit:g} s limit"))
        return results


_local = threading.local()


def call_with_timeout(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """Run `fn(*args)` in this thread's warm worker process with a hard `timeout` in seconds.

    Works from any thread and inside worker processes. Raises `TimedOut` when the
    limit passed (the worker is killed and replaced) and `WorkerError` when `fn`
    raised or its process died.
    """
    pool = getattr(_local, "pool", None)
    if pool is None or pool._pid != os.getpid():
        pool = _local.pool = BoundedPool(workers=1, timeout=timeout)
    (result,) = pool.map(fn, [args], timeout=timeout)
    if isinstance(result, Failure):
        raise (TimedOut if result.kind == "timeout" else WorkerError)(result.detail)
    return result
