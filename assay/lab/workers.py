"""The lab's one job runner: `run_all` trains an experiment's runs `jobs` at a time in
worker processes that die with their parent (`assay compare --jobs N`, sharpen, ttt).

On CPU with the organism, one process per core (at most 4), each with cores/jobs torch
threads, was measured faster than one process using every core (docs/lab.md, "Measured").

A plain `ProcessPoolExecutor` outlives its parent: `kill -9` of `assay compare --jobs 2`
left both workers training with parent 1, and a `--resume` started at once wrote into the
same files. Here each worker watches its parent and exits as soon as it is gone (whatever
signal ended it), and a parent that stops on an exception or Ctrl-C kills its workers
instead of waiting for their runs to finish.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

#: how often a worker looks for its parent (seconds): the most an orphan lives on
PARENT_POLL = 0.5
#: how often the parent wakes while its runs train (seconds): the most a Ctrl-C waits
WAKE = 0.5


@contextmanager
def worker_pool(jobs: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of `jobs` spawned workers, each ending with this process; leaving the block
    by an exception (Ctrl-C included) kills the workers at once."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_watch_parent, initargs=(os.getpid(),)
    )
    try:
        yield pool
    except BaseException:
        processes = list((pool._processes or {}).values())  # noqa: SLF001 - no public handle
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()
        for process in processes:
            process.join(timeout=10)
        raise
    pool.shutdown(wait=True)


def _watch_parent(parent: int) -> None:
    """In each worker: exit when `parent` is gone (the worker is then re-parented)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL)
        os._exit(1)  # no cleanup: the parent that would read our results is gone

    threading.Thread(target=watch, name="assay-parent-watch", daemon=True).start()


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def jobs_for(model: str, device: str = "auto") -> int:
    """Runs at once when `--jobs` is not given: on CPU with the organism, one process per
    core (at most 4; measured faster than one process with all threads, docs/lab.md);
    otherwise 1 (a GPU, or a model of unknown size whose copies might not fit in memory)."""
    import torch

    on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if on_gpu or not (model == "organism" or model.startswith("organism:")):
        return 1
    return max(1, min(cores(), 4))


def _call(fn: Callable[..., Any], kwargs: dict[str, Any], threads: int) -> Any:
    import torch

    if threads:
        torch.set_num_threads(threads)
    return fn(**kwargs)


def run_all(
    fn: Callable[..., Any],
    calls: list[dict[str, Any]],
    *,
    jobs: int,
    started: Callable[[int], None] | None = None,
    done: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """`fn(**kwargs)` for each of `calls`, `jobs` at a time; the results in call order.

    With one job the calls run here, one after another, on torch's threads as they are;
    with several, each worker gets cores/jobs threads. `fn` must be a module-level
    function (workers import it by name). `started(i)` is called as call i is handed out
    and `done(i, result)` as it finishes. An exception in any call is raised here (the
    calls already finished keep what they wrote).
    """
    jobs = max(1, min(jobs, len(calls) or 1))
    results: list[Any] = [None] * len(calls)
    if jobs == 1:
        for i, kwargs in enumerate(calls):
            if started is not None:
                started(i)
            results[i] = fn(**kwargs)
            if done is not None:
                done(i, results[i])
        return results
    threads = max(1, cores() // jobs)
    with worker_pool(jobs) as pool:  # an exception or Ctrl-C here kills the workers
        futures = {}
        for i, kwargs in enumerate(calls):
            futures[pool.submit(_call, fn, kwargs, threads)] = i
            if started is not None:
                started(i)
        pending = set(futures)
        while pending:
            # A timed wait, never an endless one: a signal the kernel hands to one of the
            # pool's threads does not wake a main thread blocked on a lock, so an endless
            # wait would see a Ctrl-C only when the next run ended (tens of seconds later);
            # waking every WAKE seconds, Python runs the handler here.
            finished, pending = wait(pending, timeout=WAKE, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=futures.__getitem__):
                i = futures[future]
                results[i] = future.result()
                if done is not None:
                    done(i, results[i])
    return results
