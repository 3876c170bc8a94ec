"""Hard time limits: they hold from any thread and survive hostile verifier code."""

from __future__ import annotations

import os
import threading
import time

import pytest
from conftest import survivors

from assay.verifiers.timelimit import (
    BoundedPool,
    Failure,
    TimedOut,
    WorkerError,
    call_with_timeout,
)


def square(x: int) -> int:
    return x * x


def sleep_then(x: float) -> float:
    time.sleep(x)
    return x


def busy_forever(_: int) -> None:
    while True:  # no sleep: a signal-free busy loop, as a runaway sympy call would be
        pass


def ignore_signals_forever(_: int) -> None:
    import signal

    for sig in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    busy_forever(0)


def boom(x: int) -> None:
    raise ValueError(f"bad {x}")


def die(_: int) -> None:
    os._exit(3)


def test_results_come_back_in_input_order():
    with BoundedPool(workers=2, timeout=5) as pool:
        assert pool.map(square, [(i,) for i in range(50)]) == [i * i for i in range(50)]


def test_a_runaway_call_is_killed_at_its_deadline_and_the_pool_recovers():
    with BoundedPool(workers=2, timeout=0.5) as pool:
        start = time.perf_counter()
        out = pool.map(busy_forever, [(0,), (1,)])
        assert time.perf_counter() - start < 3
        assert all(isinstance(r, Failure) and r.kind == "timeout" for r in out)
        assert pool.map(square, [(3,)]) == [9]  # fresh workers took their place


def test_ignoring_signals_does_not_escape_the_limit():
    with BoundedPool(workers=1, timeout=0.5) as pool:
        (result,) = pool.map(ignore_signals_forever, [(0,)])
    assert isinstance(result, Failure) and result.kind == "timeout"


def test_mixed_batch_keeps_good_results():
    with BoundedPool(workers=2, timeout=0.5) as pool:
        out = pool.map(sleep_then, [(0.0,), (10.0,), (0.01,)])
    assert out[0] == 0.0 and out[2] == 0.01
    assert isinstance(out[1], Failure) and out[1].kind == "timeout"


def test_exceptions_and_dead_workers_become_errors():
    with BoundedPool(workers=1, timeout=5) as pool:
        (raised,) = pool.map(boom, [(7,)])
        (died,) = pool.map(die, [(0,)])
        assert pool.map(square, [(2,)]) == [4]
    assert raised == Failure("error", "ValueError: bad 7")
    assert died.kind == "error" and "exit code 3" in died.detail


def test_call_with_timeout_works_off_the_main_thread():
    outcomes: dict[str, object] = {}

    def worker() -> None:
        outcomes["value"] = call_with_timeout(square, 6, timeout=2)
        try:
            call_with_timeout(busy_forever, 0, timeout=0.3)
        except TimedOut as exc:
            outcomes["timeout"] = str(exc)
        try:
            call_with_timeout(boom, 1, timeout=2)
        except WorkerError as exc:
            outcomes["error"] = str(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=20)
    assert outcomes["value"] == 36
    assert "0.3" in outcomes["timeout"]
    assert "ValueError" in outcomes["error"]


def test_progress_callback_sees_every_result():
    seen = []
    with BoundedPool(workers=2, timeout=5) as pool:
        pool.map(square, [(i,) for i in range(10)], on_result=lambda i, r: seen.append((i, r)))
    assert sorted(seen) == [(i, i * i) for i in range(10)]


def test_zero_workers_is_refused():
    with pytest.raises(ValueError, match="workers"):
        BoundedPool(workers=0)


def square_or_misbehave(x: int) -> int:
    if x == 5:
        busy_forever(0)
    if x == 17:
        os._exit(1)
    return x * x


def test_chunked_jobs_keep_per_job_deadlines_and_requeue_the_rest():
    # 64 jobs on one worker go out in chunks of 8: a hang and a crash in the middle of
    # chunks must cost only their own job.
    with BoundedPool(workers=1, timeout=0.5) as pool:
        out = pool.map(square_or_misbehave, [(i,) for i in range(64)])
    assert isinstance(out[5], Failure) and out[5].kind == "timeout"
    assert isinstance(out[17], Failure) and out[17].kind == "error"
    assert [r for i, r in enumerate(out) if i not in (5, 17)] == [
        i * i for i in range(64) if i not in (5, 17)
    ]


def _resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def test_a_replaced_worker_holds_nothing_written_after_the_pool_started():
    """A worker killed at its limit is replaced by a fork of the zygote, which was forked with
    the first workers: forked from the owner as it is later, it would map the owner's memory
    of then (a trainer's model, written every step) and keep a copy of each page it writes."""
    with BoundedPool(workers=1, timeout=0.5) as pool:
        pool.start()
        ballast = b"x" * (300 << 20)  # 300 MB the owner writes after the workers started
        (failure,) = pool.map(busy_forever, [(0,)])
        assert failure.kind == "timeout"
        (worker,) = pool._workers
        assert _parent_of(worker.process.pid) == pool._zygote.pid  # not forked from here
        assert _resident_mb(worker.process.pid) < _resident_mb(os.getpid()) - 200
        assert pool.map(square, [(3,)]) == [9]
        zygote, replacement = pool._zygote.pid, worker.process.pid
    del ballast
    assert survivors([zygote, replacement], within=10) == []  # close() ended both
    assert not os.path.exists(f"/proc/{zygote}")  # and reaped the zygote: no zombie left


def _replace_a_worker_then_die(sender) -> None:
    pool = BoundedPool(workers=1, timeout=0.3)
    pool.map(busy_forever, [(0,)])  # its worker is replaced by one the zygote forks
    sender.send([pool._workers[0].process.pid, pool._zygote.pid])
    os._exit(0)  # die without closing the pool


def test_a_replaced_worker_and_the_zygote_exit_when_the_owner_dies():
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    owner = ctx.Process(target=_replace_a_worker_then_die, args=(sender,))
    owner.start()
    assert receiver.poll(30)
    pids = receiver.recv()
    owner.join(timeout=10)
    left = survivors(pids, within=10)
    for pid in left:  # do not leave them behind if the test fails
        os.kill(pid, 9)
    assert not left, f"orphaned processes {left}"


def test_closing_a_pool_ends_its_zygote_while_another_pool_runs():
    """A pool started later holds a copy of the first pool's end of its zygote's socket (its
    processes were forked with it open): closing the first must still end its zygote."""
    first, second = BoundedPool(workers=1, timeout=5), BoundedPool(workers=1, timeout=5)
    try:
        first.start()
        second.start()
        zygote = first._zygote.pid
        started = time.monotonic()
        first.close()
        assert time.monotonic() - started < 2
        assert not os.path.exists(f"/proc/{zygote}")  # exited and reaped
        assert second.map(square, [(4,)]) == [16]
    finally:
        first.close()
        second.close()
