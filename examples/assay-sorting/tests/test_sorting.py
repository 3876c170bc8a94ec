"""The example environment's own tests: through assay's registry, as a user would."""

import subprocess
import sys
from pathlib import Path

from assay import get_env


def test_found_through_the_entry_point():
    env = get_env("sorting")
    (task,) = env.generate(1, seed=0)
    good = ", ".join(map(str, sorted(task["values"])))
    assert env.verify(task, f"<answer>{good}</answer>").status == "correct"
    assert env.verify(task, "<answer>1, 2</answer>").status == "incorrect"
    assert env.verify(task, "<answer>sorted!</answer>").status == "invalid"
    assert env.verify(task, "no tags").status == "invalid"


def test_options_from_the_command_line():
    out = subprocess.run(
        [str(Path(sys.executable).parent / "assay"), "sample", "sorting", "-n", "2", "--set", "descending=true"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.count("\n") == 2 and "descending" in out
