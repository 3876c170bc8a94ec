"""`make demo`: the lab's quick comparison on the built-in organism, then the report's path.

Runs `assay compare --preset quick --out runs/demo`: the external `verifier` and
`self_verify` beside five intrinsic rewards, one GRPO run each from the same prior, tasks
and seed (about 3 minutes on 2 CPU cores, from the organism's prior that ships with
assay: nothing is built). A second `make demo` keeps the finished runs (`--resume`)
and only re-renders the report. The verification demo that `make demo` ran before the
lab existed is `scripts/verify_demo.py`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ASSAY = str(Path(sys.executable).parent / "assay")
OUT = Path("runs/demo")


def main() -> None:
    command = [ASSAY, "compare", "--preset", "quick", "--out", str(OUT)]
    if (OUT / "lab.json").exists():
        command.append("--resume")  # finished runs are kept; unfinished ones complete
    print("$ " + " ".join(["assay", *command[1:]]), flush=True)
    code = subprocess.call(command)
    if code != 0:
        sys.exit(f"demo: `assay compare` failed with exit status {code}")
    report = OUT / "report.html"
    if not report.exists():
        sys.exit(f"demo: {report} was not written")
    print(f"\nreport: {report.resolve()}")


if __name__ == "__main__":
    main()
