"""Worker processes that die with their parent: the one process pool of the lab
(`assay compare --jobs N`, the experiments' `run_all`).

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
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

#: how often a worker looks for its parent (seconds): the most an orphan lives on
PARENT_POLL = 0.5


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
