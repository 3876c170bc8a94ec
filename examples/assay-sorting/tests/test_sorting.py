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


def test_the_audit_runs_the_envs_own_probes_and_none_passes(tmp_path):
    import json

    out = tmp_path / "audit.json"
    subprocess.run([str(Path(sys.executable).parent / "assay"), "audit", "sorting", "-n", "8",
                    "-o", str(out)], capture_output=True, text=True, check=True)
    result = json.loads(out.read_text())
    assert result["reference"]["accepted"] == result["reference"]["tried"] == 8
    probes = {p["name"]: p for p in result["probes"]}
    for own in ("unsorted", "one_dropped"):
        assert probes[own]["tried"] >= 7 and probes[own]["false_positives"] == 0
    assert probes["multiple_answers"]["tried"] > 0  # the generic ones, in the env's answer format
    assert probes["reasoning_only"]["tried"] > 0 and probes["reasoning_only"]["false_positives"] == 0
