"""The lab: `assay compare` (smoke preset) end to end, `assay report`, resume, usage errors,
and the collapse criteria and failure-mode classifier on synthetic metric series."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import forked_cli
import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.lab import collapse, failure  # noqa: E402
from assay.lab.compare import missing_requirement  # noqa: E402
from assay.lab.summary import FIELDS  # noqa: E402

SMOKE_REWARDS = ("verifier", "majority_vote")
PNGS = ("accuracy", "reward_accuracy", "entropy", "length", "kl")


def assay(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return forked_cli.run([*args], timeout=timeout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, worker_id):
    """One smoke comparison for the whole run, made by whichever worker needs it first (its
    tests only read it): `make test`'s workers split whatever module falls at the middle
    of the suite, and when that was this one the comparison (20 s) was made twice."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # the run's, not one worker's
    out = shared / "lab-smoke" / "smoke"
    with FileLock(str(shared / "lab-smoke.lock")):
        if not (out / "summary.json").is_file():  # none yet, or one that failed half-way
            shutil.rmtree(out.parent, ignore_errors=True)
            proc = assay("compare", "--preset", "smoke", "--out", str(out), "--quiet")
            assert proc.returncode == 0, proc.stderr
    return out


# -- the smoke preset, end to end --------------------------------------------------------


def test_smoke_summary_has_every_field(smoke):
    summary = json.loads((smoke / "summary.json").read_text())
    assert summary["settings"]["preset"] == "smoke"
    assert list(summary["runs"]) == list(SMOKE_REWARDS)
    assert summary["runs"]["verifier"]["kind"] == "external"
    assert summary["runs"]["majority_vote"]["kind"] == "intrinsic"
    for entry in summary["runs"].values():
        assert set(entry["seeds"]) == {"0"}
        for level in (entry, entry["seeds"]["0"]):
            for field in FIELDS:
                assert field in level, field
            for key in ("initial_val_accuracy", "peak_val_accuracy", "final_val_accuracy",
                        "initial_greedy_accuracy", "final_greedy_accuracy"):
                assert 0.0 <= level[key] <= 1.0, key
            assert level["peak_val_accuracy"] >= max(level["initial_val_accuracy"],
                                                     level["final_val_accuracy"])
            assert isinstance(level["peak_step"], int) and level["peak_step"] in (1, 5)  # validation before steps 1 and 5 (eval_every 4)
            assert level["collapse_step"] is None or 1 <= level["collapse_step"] <= 8
            assert level["failure_mode"] in failure.MODES
            assert level["final_kl"] >= 0 and level["final_entropy"] > 0
            assert 1 <= level["final_completion_length"] <= 12
            assert level["tokens"] > 0 and level["wall_time"] > 0
            assert level["steps"] == 8
        assert set(entry["collapse_steps"]) == set(collapse.CRITERIA)
        # the top level is the mean over seeds: with one seed, the seed's own figures
        assert entry["final_val_accuracy"] == entry["seeds"]["0"]["final_val_accuracy"]
        # every accuracy carries its 95% interval, and the interval holds the figure
        for level in (entry, entry["seeds"]["0"]):
            for key in ("initial_val_accuracy", "peak_val_accuracy", "final_val_accuracy",
                        "initial_greedy_accuracy", "final_greedy_accuracy", "val_change"):
                low, high = level["intervals"][key]
                assert low - 1e-9 <= level[key] <= high + 1e-9, key


def test_smoke_validation_rows_carry_the_per_task_figures_behind_their_means(smoke):
    for reward in SMOKE_REWARDS:
        metrics = smoke / "runs" / f"{reward}-seed0" / "metrics.jsonl"
        evals = [r for r in map(json.loads, metrics.read_text().splitlines())
                 if r.get("val_accuracy") is not None]
        assert len(evals) == 2
        for row in evals:
            tasks, greedy = row["val_task_accuracy"], row["val_task_greedy"]
            assert len(tasks) == len(greedy) == 16  # the smoke preset's val_size
            assert sum(tasks) / len(tasks) == pytest.approx(row["val_accuracy"], abs=1e-6)
            assert sum(greedy) / len(greedy) == pytest.approx(row["val_greedy_accuracy"])
            assert set(greedy) <= {0, 1}


def test_smoke_run_folders_are_assay_train_folders(smoke):
    for reward in SMOKE_REWARDS:
        run = smoke / "runs" / f"{reward}-seed0"
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == list(range(1, 9))
        assert "reward_precision" in rows[0]
        # every run monitors the external verifier and two intrinsic signals
        for name in ("verifier", "majority_vote"):
            assert all(0.0 <= r[f"monitor/{name}"] <= 1.0 for r in rows), name
        assert all(math.isfinite(r["monitor/self_certainty"]) for r in rows)
        if reward == "verifier":  # a monitor of the trained reward is that reward
            assert all(r["monitor/verifier"] == pytest.approx(r["reward"]) for r in rows)
        assert (run / "config.yaml").exists()
        assert json.loads((run / "summary.json").read_text())["steps"] == 8


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_smoke_pngs_are_valid_images(smoke):
    for name in PNGS:
        width, height = _png_size(smoke / f"{name}.png")
        assert width >= 400 and height >= 300


def test_smoke_report_is_self_contained(smoke):
    page = (smoke / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page.lower() and "@import" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(PNGS)
    for reward in SMOKE_REWARDS:
        assert reward in page
    for label in collapse.LABELS.values():
        assert label.split(":")[0] in page
    assert "Reading" in page and "Settings" in page


# -- resume ----------------------------------------------------------------------------


def test_resume_does_not_redo_finished_runs(smoke, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(smoke, out)
    kept = out / "runs" / "verifier-seed0" / "metrics.jsonl"
    before = kept.stat().st_mtime_ns
    (out / "runs" / "majority_vote-seed0" / "summary.json").unlink()  # as if interrupted
    again = assay("compare", "--preset", "smoke", "--out", str(out))
    assert again.returncode == 2 and "--resume" in again.stderr  # never overwrites silently
    proc = assay("compare", "--preset", "smoke", "--out", str(out), "--resume", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert kept.stat().st_mtime_ns == before
    meta = json.loads((out / "lab.json").read_text())
    assert meta["kept"] == ["verifier#0"]
    assert (out / "runs" / "majority_vote-seed0" / "summary.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["runs"]) == list(SMOKE_REWARDS)


# -- assay report on runs made with assay train -----------------------------------------


def test_report_rerenders_from_assay_train_folders(smoke, tmp_path):
    mine = tmp_path / "mine"
    sets = ["--set", "prompts_per_step=4", "--set", "group_size=4", "--set", "val_size=8",
            "--set", "val_samples=2", "--set", "eval_every=2", "--set", "train_size=64"]
    proc = assay("train", "--model", "organism:tiny", "--reward", "self_certainty", "--steps",
                 "4", "--out", str(mine / "sc"), "--quiet", *sets)
    assert proc.returncode == 0, proc.stderr
    shutil.copytree(smoke / "runs" / "verifier-seed0", mine / "v")
    proc = assay("report", str(mine))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((mine / "summary.json").read_text())
    assert set(summary["runs"]) == {"verifier", "self_certainty"}
    assert summary["runs"]["self_certainty"]["steps"] == 4
    assert summary["settings"]["model"] == "organism:tiny"
    page = (mine / "report.html").read_text()
    assert "self_certainty" in page and "verifier" in page
    for name in PNGS:
        _png_size(mine / f"{name}.png")
    # the reading reaches the terminal as plain text, one sentence per reward
    said = proc.stdout.splitlines()
    assert any(line.startswith("verifier (external)") for line in said), proc.stdout
    assert any(line.startswith("self_certainty (intrinsic)") for line in said), proc.stdout
    assert "<b>" not in proc.stdout


@pytest.mark.parametrize("name", ["quick", "default"])
def test_presets_validate_after_their_last_update(name):
    """A preset's last evaluation measures the trained policy: with validation before steps
    1, 1+k, 1+2k, ..., `steps` must be 1 + a multiple of `eval_every`, or the figures the
    report calls "final" would miss the last updates."""
    from assay.lab.presets import PRESETS

    preset = PRESETS[name]
    every = int(preset["sets"]["eval_every"])
    assert (preset["steps"] - 1) % every == 0 and preset["steps"] > every


def test_report_keeps_every_run_of_the_same_reward_and_seed(smoke, tmp_path):
    """Three folders named alike under different parents (a/r, b/r, c/r): three entries,
    none dropped or averaged with another."""
    mine = tmp_path / "mine"
    for parent in ("a", "b", "c"):
        shutil.copytree(smoke / "runs" / "verifier-seed0", mine / parent / "r")
    (mine / "x").mkdir()
    shutil.copytree(smoke / "runs" / "verifier-seed0", mine / "x" / "a" / "r")  # x/a/r too
    proc = assay("report", str(mine))
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((mine / "summary.json").read_text())["runs"]
    assert len(runs) == 4 and all(label.startswith("verifier") for label in runs)
    assert all(len(entry["seeds"]) == 1 for entry in runs.values())


def test_report_refuses_a_run_folder_and_leaves_its_summary_alone(smoke):
    """`assay report RUN` would write the lab's summary.json over the trainer's own."""
    run = smoke / "runs" / "verifier-seed0"
    before = (run / "summary.json").read_bytes()
    proc = assay("report", str(run))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "is a run folder" in proc.stderr
    assert (run / "summary.json").read_bytes() == before
    assert not (run / "report.html").exists()


def test_report_without_runs_is_a_usage_error(tmp_path):
    proc = assay("report", str(tmp_path))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "no run folders" in proc.stderr


# -- usage errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (("--rewards", "verifier,nonsense"), "nonsense"),
        (("--env", "nonsense"), "nonsense"),
        (("--model", "/nonexistent/model"), "/nonexistent/model"),
        (("--preset", "huge"), "huge"),
        (("--seeds", "a,b"), "--seeds"),
        (("--set", "train_file=/nonexistent.jsonl"), "/nonexistent.jsonl"),
        (("--set", "learning_rat=1"), "learning_rat"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    proc = assay("compare", "--preset", "smoke", "--out", str(tmp_path / "x"), *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("assay: error:") and words in lines[0]
    assert not (tmp_path / "x" / "runs").exists()


def test_self_verify_is_skipped_on_an_env_without_verification():
    from assay.envs import get_env

    reason = missing_requirement("self_verify", get_env("math"))
    assert reason and "verification_prompt" in reason and "math" in reason
    assert missing_requirement("0.5*verifier + 0.5*self_verify", get_env("math"))
    assert missing_requirement("self_verify", get_env("countdown")) is None
    assert missing_requirement("majority_vote", get_env("math")) is None


# -- collapse criteria and failure modes on synthetic series ----------------------------


def rows(n=100, *, val=None, entropy=1.0, length=6.0, repetition=0.0, racc=0.5, prec=0.5):
    """Synthetic metrics: each argument is a constant or a function of the step (1..n)."""

    def at(value, step):
        return value(step) if callable(value) else value

    out = []
    for step in range(1, n + 1):
        row = {"step": step, "entropy": at(entropy, step), "completion_length": at(length, step),
               "repetition_rate": at(repetition, step), "reward_accuracy": at(racc, step),
               "reward_precision": at(prec, step)}
        if (step - 1) % 10 == 0:
            row["val_accuracy"] = at(val, step) if val is not None else 0.3
        out.append(row)
    return out


def falling(start, end, n=100):
    return lambda step: start + (end - start) * (step - 1) / (n - 1)


def test_healthy_run_has_no_failure_and_no_collapse():
    series = rows(val=falling(0.3, 0.45), entropy=falling(1.0, 0.8))
    assert failure.classify(series) is None
    assert all(v is None for v in collapse.criteria(series).values())


def test_gradual_decline():
    assert failure.classify(rows(val=falling(0.3, 0.15))) == "gradual"


def test_small_dip_is_not_a_failure():
    assert failure.classify(rows(val=falling(0.3, 0.27))) is None


def test_length_collapse_either_way():
    assert failure.classify(rows(val=falling(0.3, 0.1), length=falling(6.0, 2.0))) == "length"
    assert failure.classify(rows(val=falling(0.3, 0.0), length=falling(6.0, 9.0))) == "length"


def test_repetition_collapse_wins_over_length():
    series = rows(val=falling(0.3, 0.0), length=falling(6, 12), repetition=falling(0.0, 0.5))
    assert failure.classify(series) == "repetition"


def test_study_criterion_fires_at_first_step_below_one_percent():
    series = rows(racc=lambda s: 0.5 if s < 40 else 0.005)
    fired = collapse.criteria(series)
    assert fired["reward_accuracy"].step == 40
    assert fired["reward_precision"] is None and fired["label_free"] is None


def test_precision_criterion_and_missing_metric():
    series = rows(prec=lambda s: 0.4 if s < 60 else 0.0)
    assert collapse.criteria(series)["reward_precision"].step == 60 + collapse.WINDOW - 1
    blip = rows(prec=lambda s: 0.0 if s == 30 else 0.4)  # one unlucky step is not a collapse
    assert collapse.criteria(blip)["reward_precision"] is None
    for row in series:
        del row["reward_precision"]  # runs from before the metric existed
    assert collapse.criteria(series)["reward_precision"] is None


def test_label_free_criterion_names_its_signal():
    fired = collapse.label_free(rows(entropy=lambda s: 1.0 if s < 50 else 0.1))
    assert fired.signal == "entropy" and 50 <= fired.step <= 50 + collapse.WINDOW
    fired = collapse.label_free(rows(length=lambda s: 6.0 if s < 30 else 9.0))
    assert fired.signal == "completion_length" and 30 <= fired.step <= 30 + collapse.WINDOW
    fired = collapse.label_free(rows(repetition=lambda s: 0.0 if s < 70 else 0.4))
    assert fired.signal == "repetition_rate" and 70 <= fired.step <= 70 + collapse.WINDOW
    assert collapse.label_free(rows(length=falling(6.0, 7.0))) is None  # +17%: within bounds


def test_reward_precision_is_zero_when_every_completion_is_wrong():
    from assay.training.diagnostics import reward_accuracy, reward_precision

    wrong = [[False] * 4]
    rewards = [[0.9, 0.1, 0.2, 0.8]]  # a continuous reward on an all-wrong group
    assert reward_accuracy(rewards, wrong, binary=False) == 0.5  # the study's: half "agree"
    assert reward_precision(rewards, wrong, binary=False) == 0.0
    truth = [[True, False, False, True], [True, False, True, False]]
    assert reward_precision([[1, 1, 0, 1], [0, 0, 1, 1]], truth, binary=True) == (2 / 3 + 0.5) / 2
    assert reward_precision([[3, 3, 3, 3]], [[True] * 4], binary=False) is None  # promotes none


def test_compare_any_local_model_folder(tmp_path):
    """A randomly initialised GPT-2 (a real architecture, not the organism's Llama) with the
    organism's tokenizer and settings file: `--model PATH` runs like the organism."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from assay.training.policy import resolve_model_path

    tiny = Path(resolve_model_path("organism:tiny", quiet=True))
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1,
                                       n_head=2, n_positions=64))
    folder = tmp_path / "gpt2-random"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.copy(tiny / "assay.json", folder / "assay.json")
    out = tmp_path / "cmp"
    proc = assay("compare", "--preset", "smoke", "--model", str(folder), "--steps", "3",
                 "--rewards", "verifier,self_certainty", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["model"] == str(folder)
    assert summary["settings"]["jobs"] == 1  # not the organism: one run at a time
    assert {k: v["steps"] for k, v in summary["runs"].items()} == {"verifier": 3,
                                                                    "self_certainty": 3}


def test_a_comparison_whose_runs_all_fail_says_why_and_exits_1(tmp_path):
    """The plan accepts a model folder whose config loads; its runs then fail (no weights):
    each run's error on stderr, one closing error line, exit status 1 (not a usage error),
    and `assay report` on the folder is one usage line."""
    from assay.training.policy import resolve_model_path

    tiny = Path(resolve_model_path("organism:tiny", quiet=True))
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    out = tmp_path / "cmp"
    proc = assay("compare", "--preset", "smoke", "--model", str(folder), "--steps", "2",
                 "--out", str(out), "--quiet")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == f"assay: error: no run produced metrics; see {out}/lab.json"
    assert {line.split(":")[0] for line in lines[:-1]} == {"verifier#0", "majority_vote#0"}
    assert proc.stdout == "" and not (out / "report.html").exists()
    report = assay("report", str(out))
    assert report.returncode == 2 and "no run folders with metrics" in report.stderr


@pytest.mark.parametrize("interrupted_in", ["plan", "runs"])
def test_ctrl_c_in_compare_says_resume_only_when_there_is_something_to_resume(
        interrupted_in, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from assay.cli import cli
    from assay.lab import compare, display

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if interrupted_in == "plan":  # nothing written: --resume would be refused
        monkeypatch.setattr(compare, "plan", interrupt)
    else:  # the plan saved in lab.json, then Ctrl-C as the runs' board is drawn
        monkeypatch.setattr(display, "Board", interrupt)
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["compare", "--preset", "smoke", "--rewards", "verifier",
                                      "--steps", "1", "--out", str(out), "--quiet"])
    assert result.exit_code == 130, result.output
    if interrupted_in == "plan":
        assert "nothing was written yet: run the same command again" in result.output
        assert "--resume" not in result.output
    else:
        assert (out / "lab.json").is_file()
        assert f"assay compare --out {out} --resume" in result.output


def test_a_new_comparison_refuses_a_folder_holding_other_files(tmp_path):
    from click.testing import CliRunner

    from assay.cli import cli

    out = tmp_path / "cmp"
    out.mkdir()
    (out / "summary.json").write_text("mine")
    result = CliRunner().invoke(cli, ["compare", "--preset", "smoke", "--rewards", "verifier",
                                      "--steps", "1", "--out", str(out), "--quiet"])
    assert result.exit_code == 2 and "is not empty (summary.json)" in result.output, result.output
    assert (out / "summary.json").read_text() == "mine"


def test_report_names_the_planned_runs_it_cannot_find(smoke, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(smoke, out)
    (out / "runs" / "verifier-seed0" / "config.yaml").unlink()  # no longer a run folder
    proc = assay("report", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Planned but not found (left out of this report): verifier seed 0." in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing"] == ["verifier seed 0"] and "verifier" not in summary["runs"]
    assert "Planned runs not found (left out): verifier seed 0." in (out / "report.html").read_text()
    assert json.loads((smoke / "summary.json").read_text()).get("missing") in (None, [])


@pytest.mark.parametrize("command", ["collapse-step", "sharpen", "scale", "theory", "ttt", "zoo"])
def test_an_experiment_never_writes_over_a_report_it_did_not_write(command, tmp_path):
    from click.testing import CliRunner

    from assay.cli import cli

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("mine")
    result = CliRunner().invoke(cli, [command, "--preset", "smoke", "--out", str(out), "--quiet"])
    assert result.exit_code == 2 and "holds a report.html that assay" in result.output, result.output
    assert (out / "report.html").read_text() == "mine"


def test_report_and_detector_eval_on_a_file_say_it_is_a_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = assay("report", str(afile))
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr, proc.stderr
    proc = assay("detector-eval", str(afile), "--choose-seeds", "0", "--report-seeds", "1")
    assert proc.returncode == 2 and "a file, not a folder" in proc.stderr, proc.stderr
    proc = assay("report", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "is no folder" in proc.stderr, proc.stderr


def test_resume_of_a_finished_comparison_keeps_its_record(smoke, tmp_path):
    """It rewrote lab.json: wall time 0 s, and the resume's jobs and threads as the runs'."""
    out = tmp_path / "copy"
    shutil.copytree(smoke, out)
    before = (out / "lab.json").read_text()
    proc = assay("compare", "--preset", "smoke", "--out", str(out), "--resume", "--quiet", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    assert (out / "lab.json").read_text() == before
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["wall_time"] == json.loads(before)["settings"]["wall_time"]
