"""`assay scale`: the same training on training sets of several sizes."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

import forked_cli
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from assay.lab import scale  # noqa: E402
from assay.lab.experiment import LabError  # noqa: E402
from assay.training import collapse_rules  # noqa: E402
from assay.training.config import read_yaml  # noqa: E402


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return forked_cli.run(["scale", *args],
                          timeout=timeout)


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("scale") / "out"
    proc = _cli("--preset", "smoke", "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((out / "scale.json").read_text()), proc.stdout


def test_smoke_writes_one_run_per_size(smoke):
    out, result, stdout = smoke
    sizes = [str(s) for s in scale.PRESETS["smoke"]["sizes"]]
    assert sorted(result["sizes"], key=int) == sizes
    for s in sizes:
        assert {"collapse_step", "collapsed", "peak_val_accuracy", "final_val_accuracy",
                "final_kl"} <= set(result["sizes"][s])
        assert (out / "runs" / f"size-{s}" / "summary.json").exists()
    assert (out / "report.html").exists() and (out / "scale.png").stat().st_size > 0
    assert "Training-set size" in stdout


def test_the_figures_are_those_of_the_run_folders(smoke):
    """Recomputed from each run's metrics.jsonl: the label-free rule, peak and final
    validation accuracy, the mean KL of the last 5 steps."""
    out, result, _ = smoke
    configs = {}
    for s, entry in result["sizes"].items():
        folder = out / "runs" / f"size-{s}"
        rows = _rows(folder)
        configs[s] = read_yaml(str(folder / "config.yaml"))
        assert configs[s]["train_size"] == int(s)
        assert len(rows) == result["steps"] == configs[s]["steps"]  # never stopped early
        fired = collapse_rules.label_free(rows, w=collapse_rules.window(result["steps"]))
        assert entry["collapsed"] == (fired is not None)
        assert entry["collapse_step"] == (fired.step if fired else None)
        evals = [r["val_accuracy"] for r in rows if r.get("val_accuracy") is not None]
        assert entry["peak_val_accuracy"] == max(evals)
        assert entry["final_val_accuracy"] == evals[-1]
        assert entry["initial_val_accuracy"] == evals[0]
        assert entry["final_kl"] == pytest.approx(np.mean([r["kl"] for r in rows][-5:]))
        assert entry["tokens"] == sum(r["tokens"] for r in rows)
    # the same training apart from the size: model, reward, seed, steps, validation set
    for s, config in configs.items():
        first = next(iter(configs.values()))
        differ = {k for k in set(config) | set(first) if config.get(k) != first.get(k)}
        assert differ <= {"train_size", "out"}, (s, differ)


def test_a_second_run_reuses_the_finished_runs(smoke):
    out, result, _ = smoke
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.jsonl")}
    proc = _cli("--preset", "smoke", "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "scale.json").read_text())["sizes"] == result["sizes"]


def test_other_settings_into_the_same_folder_are_refused(smoke):
    out, _, _ = smoke
    proc = _cli("--preset", "smoke", "--quiet", "--reward", "self_certainty", "--out", str(out))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "other settings" in proc.stderr


def test_parse_sizes():
    assert scale.parse_sizes("32,128, 512") == [32, 128, 512]
    for bad in ("", "0", "-4", "a,b", "32,,64", "1.5", "32,32"):
        with pytest.raises(LabError):
            scale.parse_sizes(bad)


@pytest.mark.parametrize("args", [["--sizes", "0"], ["--sizes", "32,x"], ["--sizes", ""],
                                  ["--sizes", "8,8"], ["--preset", "nope"],
                                  ["--reward", "no_such_reward"], ["--steps", "0"],
                                  ["--set", "learning_rate=fast"]])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args):
    out = tmp_path / "bad"
    proc = _cli(*args, "--quiet", "--out", str(out), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


def test_reading_names_what_collapsed():
    entry = {"collapsed": False, "collapse_step": None, "peak_val_accuracy": 0.3,
             "final_val_accuracy": 0.3, "final_kl": 0.01}
    result = {"reward": "majority_vote", "model": "organism", "steps": 201,
              "sizes": {"32": entry, "128": entry,
                        "512": {**entry, "collapsed": True, "collapse_step": 60,
                                "final_kl": 0.5},
                        "2048": {**entry, "collapsed": True, "collapse_step": 50,
                                 "final_kl": 0.6}}}
    lines = scale.reading(result)
    assert "stable (no label-free collapse) at 32, 128" in lines[0]
    assert "512 (step 60)" in lines[0]
    assert lines[-1].startswith("As the study found")
    result["sizes"]["32"] = {**entry, "collapsed": True, "collapse_step": 90}
    assert scale.reading(result)[-1].startswith("Unlike the study")


def test_measure_on_rows_that_collapse():
    """Synthetic rows: entropy falls at step 40, validation accuracy falls from 0.3 to 0.1,
    KL rises; the figures are the label-free rule's and the rows' own."""
    rows = [{"step": s, "entropy": 1.0 if s < 40 else 0.1, "completion_length": 6.0,
             "repetition_rate": 0.0, "kl": s / 100, "tokens": 10, "step_time": 0.1,
             "reward_accuracy": 0.5,
             **({"val_accuracy": 0.3 if s < 50 else 0.1} if s % 10 == 1 else {})}
            for s in range(1, 101)]
    entry = scale.measure(rows, size=32, steps=100, prompts_per_step=16)
    fired = collapse_rules.label_free(rows)
    assert fired is not None and entry["collapsed"] and entry["collapse_step"] == fired.step
    assert entry["collapse_signal"] == "entropy" and 40 < entry["collapse_step"] < 50
    assert entry["peak_val_accuracy"] == 0.3 and entry["final_val_accuracy"] == 0.1
    assert entry["final_kl"] == pytest.approx(np.mean([0.96, 0.97, 0.98, 0.99, 1.0]))
    assert entry["declined"] and entry["study_collapse_step"] is None
    assert entry["passes_over_data"] == 50.0 and entry["tokens"] == 1000
