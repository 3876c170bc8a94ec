"""Work spread over a Ray cluster: one actor per slot, each holding a local worker.

`RayPool` is what `Sandbox(backend="ray")` runs on (each actor holds a one-worker local
bubblewrap sandbox), and what `assay verify --ray` runs on (each actor holds an env).
Both give it a *factory*: a picklable callable that builds, inside the actor, an object
with `work(items) -> results` and `close()`. The pool hands out chunks of items, keeps
every actor busy, and puts the results back in input order.

Failures:
- an actor whose factory fails (no bubblewrap on that node, a missing package) reports
  why once, on the driver's stderr, and gets no work; if no actor can start, a
  `SandboxError` says why;
- an actor that dies mid-chunk is restarted by Ray and the chunk retried on it
  (`max_restarts`, `max_task_retries`); a chunk that still fails is not lost: each of
  its items gets `on_lost(item, detail)` (an `Execution` or `Verdict` saying so).

Ray is imported lazily; without it, one line says how to install it.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from assay.sandbox.execution import SandboxError

#: items per task: small enough to spread a batch, large enough to amortise a round trip
CHUNK = 8
#: tasks in flight per actor (one running, one queued behind it)
DEPTH = 2
#: how many times Ray restarts a dead actor, and retries its task
RESTARTS = 2


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SandboxError("the Ray backend needs ray: pip install 'assay[ray]'") from None
    return ray


#: seconds to wait for a cluster's port to answer before saying it cannot be reached
PROBE_TIMEOUT = 5.0


def probe(address: str) -> None:
    """Refuse in one line a `host:port` or `ray://host:port` address where nothing answers:
    Ray itself would retry for minutes, printing each try."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "auto", or a form Ray reads its own way
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT):
            pass
    except OSError as exc:
        reason = (f"no answer within {PROBE_TIMEOUT:g} s" if isinstance(exc, TimeoutError)
                  else exc.strerror or exc)
        raise SandboxError(f"cannot reach Ray at {address}: {reason}") from None


def connect(address: str | None) -> Any:
    """Join the cluster at `address` ("auto", "ray://host:10001", ...), or start a local
    Ray instance when None (and none is running)."""
    ray = require_ray()
    if not ray.is_initialized():
        if address is not None:
            probe(address)
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False, configure_logging=False)
        except Exception as exc:  # ConnectionError and friends: one line
            raise SandboxError(f"cannot reach Ray at {address or 'a new local instance'}: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return ray


class _Slot:
    """The actor body: builds the worker object from the factory; reports a failure."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.node = socket.gethostname()
        try:
            self.worker, self.problem = factory(), None
        except Exception as exc:
            self.worker, self.problem = None, f"{type(exc).__name__}: {exc}".splitlines()[0]

    def ready(self) -> dict[str, Any]:
        import os

        return {"node": self.node, "pid": os.getpid(), "problem": self.problem}

    def work(self, items: list[Any]) -> list[Any]:
        if self.worker is None:  # restarted on a node where it cannot work
            raise SandboxError(self.problem or "worker unavailable")
        return self.worker.work(items)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


class RayPool:
    """Actors over the cluster, each running `factory()`'s worker; `run` spreads items."""

    def __init__(
        self,
        factory: Callable[[], Any],
        *,
        slots: int | None = None,
        address: str | None = None,
        cpus_per_slot: float = 1.0,
        chunk: int = CHUNK,
    ) -> None:
        ray = connect(address)
        self.ray, self.chunk = ray, chunk
        if slots is None:
            slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_per_slot, 1e-9)))
        actor = ray.remote(_Slot).options(
            num_cpus=cpus_per_slot,
            max_restarts=RESTARTS,
            max_task_retries=RESTARTS,
            scheduling_strategy="SPREAD",
        )
        started = [actor.remote(factory) for _ in range(slots)]
        infos = ray.get([a.ready.remote() for a in started])
        reported: set[str] = set()
        self.actors, self.info = [], infos
        for handle, info in zip(started, infos, strict=True):
            if info["problem"] is None:
                self.actors.append(handle)
            elif info["problem"] not in reported:  # once per distinct reason, not per actor
                reported.add(info["problem"])
                print(f"assay: ray worker on {info['node']} cannot work: {info['problem']}",
                      file=sys.stderr)
        if not self.actors:
            raise SandboxError(f"no Ray worker could start: {infos[0]['problem']}")

    def pids(self) -> list[int]:
        """The actors' process ids (tests kill one to check that its work is retried)."""
        return [info["pid"] for info in self.ray.get([a.ready.remote() for a in self.actors])]

    def run(
        self,
        items: Sequence[Any],
        on_lost: Callable[[Any, str], Any],
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        """Results of `items`, in order; a chunk lost for good becomes `on_lost` results."""
        ray = self.ray
        chunks = [list(range(i, min(i + self.chunk, len(items))))
                  for i in range(0, len(items), self.chunk)]
        results: list[Any] = [None] * len(items)
        pending: dict[Any, tuple[int, list[int]]] = {}  # ref -> (actor index, item indexes)
        load = [0] * len(self.actors)
        queue = list(reversed(chunks))

        def fill() -> None:
            while queue:
                actor = min(range(len(self.actors)), key=load.__getitem__)
                if load[actor] >= DEPTH:
                    return
                indexes = queue.pop()
                ref = self.actors[actor].work.remote([items[i] for i in indexes])
                pending[ref] = (actor, indexes)
                load[actor] += 1

        fill()
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            actor, indexes = pending.pop(ref)
            load[actor] -= 1
            try:
                values = ray.get(ref)
            except Exception as exc:  # the actor died past its retries, or the worker raised
                detail = f"ray worker lost: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                values = [on_lost(items[i], detail[:500]) for i in indexes]
            for i, value in zip(indexes, values, strict=True):
                results[i] = value
                if on_result is not None:
                    on_result(i, value)
            fill()
        return results

    def close(self) -> None:
        """Close every worker and let the actors go (the cluster itself stays up)."""
        for handle in self.actors:
            try:
                self.ray.get(handle.close.remote(), timeout=30)
            except Exception:
                pass
            self.ray.kill(handle)
        self.actors = []


class LocalRunner:
    """The worker of `Sandbox(backend="ray")`: one local jail worker in the actor, the
    bubblewrap backend and its pool as `Sandbox("local", workers=1)` builds them."""

    def __init__(self, options: dict[str, Any]) -> None:
        from assay.sandbox.local import LocalBackend
        from assay.sandbox.pool import WorkerPool

        options = dict(options)
        limits = options.pop("limits")
        programs = options.pop("programs", ())
        self.backend = LocalBackend(limits=limits, **options)
        self.pool = WorkerPool(self.backend, 1, limits, programs)
        self.pool.worker_info()  # fail here (no bubblewrap) rather than on the first job

    def work(self, requests: list[Any]) -> list[Any]:
        return self.pool.run_many(requests)

    def close(self) -> None:
        self.pool.close()
        self.backend.close()


def local_runner(options: dict[str, Any]) -> Callable[[], LocalRunner]:
    """A picklable factory of `LocalRunner(options)`."""
    import functools

    return functools.partial(LocalRunner, options)


class RayRuns:
    """Stands where `WorkerPool` stands in a `Sandbox(backend="ray")`."""

    def __init__(self, limits: Any, options: dict[str, Any], *, workers: int | None,
                 address: str | None) -> None:
        self.pool = RayPool(local_runner({"limits": limits, **options}), slots=workers,
                            address=address)

    def run_many(self, requests: list[Any], on_result: Any = None) -> list[Any]:
        from assay.sandbox.execution import sandbox_failure

        return self.pool.run(requests, on_lost=lambda _req, detail: sandbox_failure(detail),
                             on_result=on_result)

    def worker_info(self) -> list[dict]:
        return list(self.pool.info)

    def close(self) -> None:
        self.pool.close()
