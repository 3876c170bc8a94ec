"""Where `make test`'s time goes: a pytest plugin that logs each test's wall and CPU time,
and a summary of what it logged.

    ASSAY_SUITE_PROFILE=/tmp/prof PYTHONPATH=scripts \\
        .venv/bin/pytest -p suite_profile -n auto --dist worksteal -m "not browser and not prior_rebuild"
    .venv/bin/python scripts/suite_profile.py /tmp/prof

Each worker writes `<folder>/<worker>.tsv`: one line per test with its start, its wall
time, the worker's own CPU time during it and that of the processes it started and
waited for (`getrusage`: a process the test left running, or one killed before it was
waited for, is not counted), the console script's runs forked by tests/forked_cli.py
included. The summary prints when each worker finished (their gap is
time one core idled), where the CPU went, and the tests and files that took the most.
"""

from __future__ import annotations

import collections
import os
import resource
import sys
import time
from pathlib import Path

_started: dict[str, tuple[float, float, float]] = {}
_log = None
_on = True


def pytest_configure(config) -> None:
    """Off in pytest-xdist's controller: it relays every worker's tests to the same hooks."""
    global _on
    _on = hasattr(config, "workerinput") or getattr(config.option, "dist", "no") == "no"


def _cpu() -> tuple[float, float]:
    """This process's CPU time and its children's: those it waited for, and the console
    script's runs forked for it by tests/forked_cli.py (another process's children)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    forked = getattr(sys.modules.get("forked_cli"), "cpu_seconds", 0.0)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime + forked


def _write(line: str) -> None:
    global _log
    folder = os.environ.get("ASSAY_SUITE_PROFILE")
    if not folder or not _on:
        return
    if _log is None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        _log = open(Path(folder) / f"{worker}.tsv", "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    _log.write(line + "\n")


def pytest_collection_finish(session) -> None:
    own, children = _cpu()
    _write(f"{time.time():.3f}\t0\t{own:.3f}\t{children:.3f}\tCOLLECTED")


def pytest_runtest_logstart(nodeid: str, location) -> None:
    _started[nodeid] = (time.time(), *_cpu())


def pytest_runtest_logfinish(nodeid: str, location) -> None:
    start, own, children = _started.pop(nodeid)
    own_now, children_now = _cpu()
    _write(f"{start:.3f}\t{time.time() - start:.3f}\t{own_now - own:.3f}\t"
           f"{children_now - children:.3f}\t{nodeid}")


def summarize(folder: Path, top: int = 15) -> None:
    """Print what the plugin logged in `folder`."""
    rows, ends, collected = [], {}, {}
    for path in sorted(folder.glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            start, wall, own, children, test = line.split("\t")
            if test == "COLLECTED":
                collected[path.stem] = float(start)
                continue
            rows.append((float(wall), float(own), float(children), test))
            ends[path.stem] = max(ends.get(path.stem, 0.0), float(start) + float(wall))
    if not rows:
        sys.exit(f"{folder}: nothing logged (was ASSAY_SUITE_PROFILE set for the run?)")
    first = min(collected.values(), default=min(ends.values()))
    print(f"{len(rows)} tests, {sum(r[0] for r in rows):.0f} worker-seconds; CPU "
          f"{sum(r[1] for r in rows):.0f} s in the workers, {sum(r[2] for r in rows):.0f} s "
          "in the processes the tests started")
    print("workers ended (s after the first finished collecting): "
          + ", ".join(f"{w} {end - first:.0f}" for w, end in sorted(ends.items())))
    files: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for wall, own, children, test in rows:
        files[test.split("::")[0]][0] += wall
        files[test.split("::")[0]][1] += own + children
    print("\nslowest files (CPU s, wall s):")
    for name, (wall, cpu) in sorted(files.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {cpu:6.1f} {wall:6.1f}  {name}")
    print("\nslowest tests (CPU s = workers' + started processes', wall s):")
    for wall, own, children, test in sorted(rows, key=lambda r: -(r[1] + r[2]))[:top]:
        print(f"  {own + children:6.1f} = {own:5.1f} + {children:5.1f}  {wall:6.1f}  {test}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: suite_profile.py FOLDER   (the ASSAY_SUITE_PROFILE folder of a run)")
    summarize(Path(sys.argv[1]))
