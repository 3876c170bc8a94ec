"""The example environment's own tests: through assay's registry, as a user would."""

import subprocess
import sys
from pathlib import Path

import pytest

from assay import get_env
from assay.options import OptionError


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


@pytest.mark.parametrize(
    "options, message",
    [
        ({"min_length": 5, "max_length": 1}, "min_length (5) must not exceed max_length (1)"),
        ({"min_length": -3, "max_length": -1}, "min_length must be at least 1, got -3"),
        ({"min_length": 0, "max_length": 0}, "min_length must be at least 1, got 0"),
        ({"max_length": 2}, "min_length (3) must not exceed max_length (2)"),
        ({"max_value": -5}, "max_value must be at least 0"),
    ],
)
def test_options_out_of_range_are_refused_naming_them(options, message):
    with pytest.raises(OptionError) as caught:
        get_env("sorting", **options)
    assert str(caught.value).startswith("env 'sorting': ") and message in str(caught.value)


def test_bad_options_on_the_command_line_are_one_line():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "assay"), "sample", "sorting", "-n", "1",
         "--set", "min_length=-3", "--set", "max_length=-1"],
        capture_output=True, text=True,
    )
    assert done.returncode == 2 and done.stdout == ""  # no task with an empty list
    assert done.stderr == "assay: error: env 'sorting': min_length must be at least 1, got -3\n"


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
