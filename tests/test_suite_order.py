"""The suite's own order: the tests marked `slow` run first in each worker's share
(tests/conftest.py), so that `make test`'s workers end together instead of one running
the long tests in turn while the others idle."""

from __future__ import annotations

from conftest import _shares, slow_first_in_each_share


class Item:
    def __init__(self, name: str, slow: bool) -> None:
        self.name, self.slow = name, slow

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "slow" and self.slow else None


def test_slow_tests_come_first_and_the_rest_keep_their_order():
    items = [Item("a", False), Item("b", True), Item("c", False), Item("d", True), Item("e", False)]
    assert [i.name for i in slow_first_in_each_share(items, 1)] == ["b", "d", "a", "c", "e"]


def test_each_workers_share_starts_with_its_turn_of_the_slow_tests():
    items = [Item(f"fast{i}", False) for i in range(10)] + [Item(f"slow{i}", True) for i in range(5)]
    order = slow_first_in_each_share(items, 3)
    assert sorted(i.name for i in order) == sorted(i.name for i in items)  # each once
    assert _shares(15, 3) == [5, 5, 5]
    shares = [[i.name for i in order[k:k + 5]] for k in (0, 5, 10)]
    assert shares == [["slow0", "slow3", "fast0", "fast1", "fast2"],
                      ["slow1", "slow4", "fast3", "fast4", "fast5"],
                      ["slow2", "fast6", "fast7", "fast8", "fast9"]]
    assert _shares(17, 3) == [5, 6, 6]  # as pytest-xdist cuts them: 17 // 3, then 12 // 2


def test_the_suite_profile_logs_each_test_once_and_sums_them(tmp_path):
    """scripts/suite_profile.py, which measured where `make test`'s time goes: one line per
    test with its CPU time, counted once under pytest-xdist (whose controller sees every
    worker's tests too), and a summary of them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "test_two.py").write_text(
        "import subprocess, sys\n"
        "def test_busy():\n    sum(i * i for i in range(300_000))\n"
        "def test_child():\n    subprocess.run([sys.executable, '-c', 'sum(range(3_000_000))'], check=True)\n"
    )
    logs = tmp_path / "profile"
    env = {**os.environ, "ASSAY_SUITE_PROFILE": str(logs), "PYTHONPATH": str(root / "scripts")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "suite_profile", "-n", "2", "-q",
                          "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [line.split("\t") for f in logs.glob("*.tsv") for line in f.read_text().splitlines()]
    tests = {fields[4].split("::")[1]: fields for fields in lines if fields[4] != "COLLECTED"}
    assert sorted(tests) == ["test_busy", "test_child"] and len(lines) == 2 + 2  # + each worker's collection
    assert float(tests["test_child"][3]) > 0 and float(tests["test_busy"][3]) == 0  # a child's CPU is the child's
    summary = subprocess.run([sys.executable, str(root / "scripts" / "suite_profile.py"), str(logs)],
                             capture_output=True, text=True, timeout=60)
    assert summary.returncode == 0 and summary.stdout.startswith("2 tests,"), summary.stdout + summary.stderr
