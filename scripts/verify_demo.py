"""Sample tasks and verify completions with the real `assay` command (`make demo` before
the lab; run it with `.venv/bin/python scripts/verify_demo.py`).

Shows the external verifiers at work: 1,000 countdown tasks with their constructive
solutions (all correct), the same with perturbed targets (none correct), hostile
answers (invalid, never evaluated) and a malformed input line (an `error` naming it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ASSAY = str(Path(sys.executable).parent / "assay")
OUT = Path("runs/verify-demo")


def run(*args: str) -> subprocess.CompletedProcess:
    print(f"$ assay {' '.join(args)}", flush=True)
    proc = subprocess.run([ASSAY, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"demo: `assay {' '.join(args)}` failed:\n{proc.stderr}")
    return proc


def verify(name: str, rows: list[dict | str]) -> list[dict]:
    path = OUT / f"{name}.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    proc = run("verify", "countdown", str(path), "-o", str(OUT / f"{name}.verdicts.jsonl"))
    print("  " + proc.stderr.strip())
    return [json.loads(line) for line in (OUT / f"{name}.verdicts.jsonl").read_text().splitlines()]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    print(run("envs").stdout)
    tasks = [json.loads(line) for line in run("sample", "countdown", "-n", "1000", "--seed", "0",
                                              "--set", "max_numbers=6").stdout.splitlines()]
    print(f"  sampled {len(tasks)} tasks, e.g. {tasks[0]['numbers']} -> {tasks[0]['target']}\n")

    solved = verify("solutions", [{"task": t, "completion": f"<answer>{t['solution']}</answer>"}
                                  for t in tasks])
    perturbed = verify("perturbed", [{"task": {**t, "target": t["target"] + 1},
                                      "completion": f"<answer>{t['solution']}</answer>"}
                                     for t in tasks])
    hostile_answers = ["9**9**9", "__import__('os').system('id')", "().__class__.__mro__",
                       "(" * 5000 + "1" + ")" * 5000]
    hostile = verify("hostile", [{"task": tasks[0], "completion": f"<answer>{h}</answer>"}
                                 for h in hostile_answers] + ["{not json"])

    print("\nsummary")
    print(f"  constructive solutions: {Counter(v['status'] for v in solved)}")
    print(f"  perturbed targets:      {Counter(v['status'] for v in perturbed)}")
    for answer, v in zip(hostile_answers + ["(malformed line)"], hostile, strict=True):
        print(f"  {answer[:40]!r:44} -> {v['status']}: {v['detail'][:70]}")
    print(f"\nfiles are in {OUT}/")
    ok = (all(v["status"] == "correct" for v in solved)
          and not any(v["status"] == "correct" for v in perturbed)
          and [v["status"] for v in hostile] == ["invalid"] * len(hostile_answers) + ["error"])
    if not ok:
        sys.exit("demo: a verdict was not what it should be")


if __name__ == "__main__":
    main()
