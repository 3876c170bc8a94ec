"""`Sandbox`: the one entry point for running untrusted Python source."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from assay.sandbox import forkserver
from assay.sandbox.execution import Execution, Limits, RunRequest, SandboxError
from assay.sandbox.pool import Backend, WorkerPool

BACKENDS = ("local", "docker", "ray")
_LIMIT_NAMES = {f.name for f in dataclasses.fields(Limits)}


def make_backend(name: str, limits: Limits, options: Mapping[str, Any]) -> Backend:
    """Build a backend by name; missing tools raise `SandboxError` naming them."""
    if name == "local":
        from assay.sandbox.local import LocalBackend

        return LocalBackend(limits=limits, **options)
    if name == "docker":
        from assay.sandbox.docker_backend import DockerBackend

        return DockerBackend(limits=limits, **options)
    raise SandboxError(f"unknown sandbox backend {name!r} (choose from {', '.join(BACKENDS)})")


def _checked_programs(programs: Sequence[str]) -> list[str]:
    """The warm programs, refused here (not as a worker that cannot start) when they are not
    text or do not fit the hello message that carries them."""
    if isinstance(programs, str):
        raise TypeError("programs is a list of Python sources, not one string")
    programs = list(programs)
    if not all(isinstance(source, str) for source in programs):
        raise TypeError("programs must be Python source strings")
    size = sum(len(json.dumps(source)) for source in programs)
    most = forkserver.MAX_HEADER - (64 << 10)  # the rest of the hello needs room too
    if size > most:
        raise ValueError(f"programs must total under {most:,} bytes as JSON, got {size:,}")
    return programs


class Sandbox:
    """Runs untrusted Python source in isolated, resource-limited workers.

    >>> with Sandbox() as box:                       # doctest: +SKIP
    ...     box.run("print(input()[::-1])", stdin="abc").stdout
    'cba\\n'

    backend: "local" (bubblewrap, the default), "docker", or "ray" (jobs spread over a
             Ray cluster's nodes, each running the local bubblewrap sandbox; `address=`
             joins a cluster, default a local Ray instance; see docs/sandbox.md).
    workers: parallel workers (default: the number of cores; with "ray", the cluster's
             CPUs). They start on first use and live until `close()`; a worker that
             dies is replaced.
    programs: trusted programs this sandbox will run again and again (a grader):
             each worker compiles them once when it starts, and a run whose code
             is exactly one of them skips the compile. They hold no run's data, so
             no run can learn anything from them; see docs/sandbox.md.
    backend_options: `limits=Limits(...)` or any `Limits` field by name
             (`output_bytes=`, `processes=`, ...), plus the backend's own options
             (local: `python`, `ro_binds`, `seccomp`; docker: `image`, `cpus`, ...).

    Hostile code never makes `run` raise; it gets an `Execution` whose status says
    what happened. A sandbox that cannot work raises `SandboxError`.
    """

    def __init__(
        self,
        backend: str = "local",
        workers: int | None = None,
        *,
        programs: Sequence[str] = (),
        **backend_options: Any,
    ) -> None:
        programs = _checked_programs(programs)
        limits = backend_options.pop("limits", None) or Limits()
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a Limits, got {type(limits).__name__} "
                            "(or give each limit as its own keyword, e.g. output_bytes=...)")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise ValueError(f"workers must be a whole number of at least 1, got {workers!r:.40}")
        overrides = {k: backend_options.pop(k) for k in list(backend_options) if k in _LIMIT_NAMES}
        self.limits = dataclasses.replace(limits, **overrides)
        self.backend_name = backend
        if backend == "ray":
            from assay.sandbox.ray_pool import RayRuns

            address = backend_options.pop("address", None)
            self._pool: WorkerPool | RayRuns | None = RayRuns(
                self.limits, dict(backend_options, programs=list(programs)), workers=workers, address=address
            )
            self.workers = len(self._pool.pool.actors)
            return
        self.workers = workers or os.cpu_count() or 1
        self._backend = make_backend(backend, self.limits, backend_options)
        self._pool = WorkerPool(self._backend, self.workers, self.limits, programs)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
            if self.backend_name != "ray":
                self._backend.close()

    def __del__(self) -> None:  # a forgotten sandbox must not leave jails behind
        try:
            self.close()
        except Exception:
            pass

    def _active_pool(self) -> Any:
        if self._pool is None:
            raise SandboxError("this Sandbox is closed")
        return self._pool

    def start(self) -> list[dict]:
        """Start the workers now (they otherwise start on the first run); their ready messages."""
        return self._active_pool().worker_info()

    def jail_processes(self) -> list[list[int]]:
        """Per worker, the host pids of the processes in its jail, its fork server first
        (local backend only): how tests check from outside that no run left anything."""
        pool = self._active_pool()
        if not isinstance(pool, WorkerPool):  # Ray: the jails live on the cluster's nodes
            return []
        with pool._lock:
            return [w.transport.jail_pids() for w in pool._workers if hasattr(w.transport, "jail_pids")]

    def run(
        self,
        code: str,
        *,
        stdin: str | bytes = "",
        files: Mapping[str, str | bytes] | None = None,
        timeout: float = 5.0,
        memory_mb: int = 512,
    ) -> Execution:
        """Run Python source with the given stdin and work-directory files, under limits."""
        request = RunRequest.build(code, stdin=stdin, files=files, timeout=timeout, memory_mb=memory_mb)
        (result,) = self._active_pool().run_many([request])
        return result

    def run_many(
        self,
        jobs: Iterable[Mapping[str, Any]],
        *,
        on_result: Callable[[int, Execution], None] | None = None,
    ) -> list[Execution]:
        """Run many jobs (dicts of `run`'s keyword arguments, with `code`) across the workers.

        Results come back in input order; `on_result(index, execution)` is called as each
        one finishes.
        """
        requests = [RunRequest.from_job(job) for job in jobs]
        return self._active_pool().run_many(requests, on_result=on_result)
