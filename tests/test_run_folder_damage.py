"""Run folders a resume must not make worse: a fresh run never adopts another run's files,
a refused command changes nothing on disk, damage that could lose a step stops the resume
in one line naming the file, checkpoints are only `step-<digits>` folders, and TensorBoard
shows each step once after a resume. Each test failed before its fix."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from test_hardening import one_line_exit_2, run  # noqa: E402 - the same CLI helpers

from assay.training import Trainer, checkpoint, folder_lock, resolve  # noqa: E402
from assay.training.rollout_store import FILENAME, read_rollouts  # noqa: E402
from assay.training.tracking import read_metrics  # noqa: E402
from assay.training.trainer import holds_a_run  # noqa: E402

SMALL = {"prompts_per_step": "2", "group_size": "2", "train_size": "8", "val_size": "2",
         "val_samples": "1", "eval_every": "0", "max_new_tokens": "8", "progress": "false",
         "save_every": "4", "tensorboard": "true"}
TRAIN = ["train", "--model", "organism:tiny", "--quiet", *(a for k, v in SMALL.items()
                                                            for a in ("--set", f"{k}={v}"))]


def config(out: Path, steps: int):
    return resolve(sets=SMALL, flags={"model": "organism:tiny", "out": str(out), "steps": steps})


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """A run of 6 steps that "died" after step 5: metrics, rollouts and TensorBoard events
    of steps 1-5, its checkpoint at step 4."""
    out = tmp_path_factory.mktemp("damage") / "run"
    trainer = Trainer(config(out, 6), quiet=True)
    for _ in range(5):
        trainer.step()
        if trainer.step_count == 4:
            trainer.save()
    trainer.log.close()  # what the kill left on disk, events included
    trainer.env.close()
    folder_lock.release(out)
    return out


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out, ignore=shutil.ignore_patterns(".assay-lock"))
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of `folder` (but the lock) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".assay-lock"}


def resume(out: Path, steps: int = 6, *extra: str):
    return run("train", "--out", str(out), "--resume", "--steps", str(steps), "--quiet", *extra)


def refused(out: Path, *extra: str, steps: int = 6) -> str:
    """The one line a refused --resume prints; the folder is checked to be unchanged."""
    before = snapshot(out)
    line = one_line_exit_2(resume(out, steps, *extra))
    assert snapshot(out) == before, "a refused resume changed the run folder"
    return line


def steps_of(out: Path) -> list[int]:
    return [row["step"] for row in read_metrics(out)]


# -- 1. a fresh run never starts in a folder holding another run's rollouts or events ----------


@pytest.mark.parametrize("name", [FILENAME, "tensorboard"])
def test_a_fresh_run_refuses_a_folder_holding_rollouts_or_events(tmp_path, name):
    out = tmp_path / "run"
    out.mkdir()
    if name == FILENAME:
        (out / name).write_bytes(gzip.compress(b'{"step": 1, "completion": "foreign"}\n'))
    else:
        (out / name).mkdir()
        (out / name / "events.out.tfevents.1.host").write_bytes(b"foreign")
    before = snapshot(out)
    line = one_line_exit_2(run(*TRAIN, "--out", str(out), "--steps", "1"))
    assert f"already holds {name} of another run" in line and "another --out" in line, line
    assert snapshot(out) == before and not (out / "config.yaml").exists()
    # nor is it a run to resume (which would cut the foreign file back to step 0): `assay
    # compare`, which resumes what holds a run, starts it fresh and is refused in one line
    assert not holds_a_run(out)
    assert "holds no run" in one_line_exit_2(run(*TRAIN, "--out", str(out), "--resume"))
    assert snapshot(out) == before


# -- 2. a refused --resume changes nothing ------------------------------------------------------


def test_resume_with_fewer_steps_than_the_checkpoint_changes_nothing(killed, tmp_path):
    out = copy_of(killed, tmp_path)
    line = refused(out, steps=3)  # metrics and rollouts of step 5 were cut before the check
    assert "done 4 steps already" in line and "--steps 4 or more" in line, line
    assert steps_of(out) == [1, 2, 3, 4, 5]


# -- 3 + 4. damage that could lose or falsify a step stops the resume, in one line ---------------


def rewrite_metrics(out: Path, edit) -> None:
    lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    (out / "metrics.jsonl").write_text("".join(edit(lines)))


def replace_line(n: int, text: str):
    return lambda lines: [text if i == n - 1 else line for i, line in enumerate(lines)]


@pytest.mark.parametrize("edit, where", [
    (replace_line(3, '{"step": 3, "loss": 0.1'), ":3:"),  # cut short, not the last line
    (replace_line(2, "5\n"), ":2:"),  # not an object
    (replace_line(2, '{"step": "2", "loss": 0.1}\n'), ":2:"),  # not a step number
    (replace_line(2, "{}\n"), ":2:"),  # no step
    (lambda lines: lines[:1] + lines[2:], ":2:"),  # step 2 missing: step 3 where it belongs
    (lambda lines: lines[:2] + lines[1:], ":3:"),  # step 2 twice
    (lambda lines: lines[:3] + [lines[3][:20]], ":4:"),  # the checkpoint's own step cut short
])
def test_a_damaged_metrics_line_up_to_the_checkpoint_stops_the_resume(killed, tmp_path, edit,
                                                                       where):
    out = copy_of(killed, tmp_path)
    rewrite_metrics(out, edit)
    line = refused(out)
    assert f"metrics.jsonl{where}" in line and "cannot resume from step 4" in line, line


def test_a_last_metrics_line_cut_by_a_kill_after_the_checkpoint_runs_again(killed, tmp_path):
    out = copy_of(killed, tmp_path)
    rewrite_metrics(out, lambda lines: lines[:4] + [lines[4][:30]])  # step 5, cut mid-write
    assert resume(out).exit_code == 0
    assert steps_of(out) == [1, 2, 3, 4, 5, 6]


def rewrite_rollouts(out: Path, whole: list[int], cut: int | None, keep: int) -> None:
    """The rollouts file as the steps `whole` (a member each) and then the first `keep`
    bytes of step `cut`'s member: a run killed while writing it."""
    rows = read_rollouts(out / FILENAME)

    def member(step: int) -> bytes:
        return gzip.compress("".join(json.dumps(r) + "\n" for r in rows if r["step"] == step)
                             .encode())

    data = b"".join(member(step) for step in whole)
    if cut is not None:
        data += member(cut)[:keep]
    (out / FILENAME).write_bytes(data)


@pytest.mark.parametrize("keep", [60, 6])  # cut in its data; in its header (step unknown)
def test_a_rollout_member_cut_short_up_to_the_checkpoint_stops_the_resume(killed, tmp_path, keep):
    out = copy_of(killed, tmp_path)
    rewrite_rollouts(out, [1, 2, 3], cut=4, keep=keep)
    line = refused(out)
    assert FILENAME in line and "cut short" in line and "member 4" in line, line


@pytest.mark.parametrize("keep", [60, 6])
def test_a_rollout_member_cut_short_after_the_checkpoint_runs_again(killed, tmp_path, keep):
    out = copy_of(killed, tmp_path)
    rewrite_rollouts(out, [1, 2, 3, 4], cut=5, keep=keep)
    assert resume(out).exit_code == 0
    assert sorted({r["step"] for r in read_rollouts(out / FILENAME)}) == [1, 2, 3, 4, 5, 6]
    assert len(read_rollouts(out / FILENAME)) == 6 * 4  # each step's 2 x 2 completions once


def test_a_damaged_trainer_state_is_one_line_naming_it(killed, tmp_path):
    out = copy_of(killed, tmp_path)
    state = out / "checkpoints" / "step-000004" / checkpoint.STATE_FILE
    state.write_bytes(state.read_bytes()[:1000])
    line = refused(out)
    assert str(state) in line and "cannot be read" in line, line
    import torch

    torch.save({"something": "else"}, state)
    line = refused(out)
    assert str(state) in line and "not a trainer state" in line, line


# -- 5. only step-<digits> folders are checkpoints ---------------------------------------------


def test_other_folders_in_checkpoints_are_neither_read_nor_pruned(killed, tmp_path):
    out = copy_of(killed, tmp_path)
    ckpts = out / "checkpoints"
    for name in ("step-old", "step-000005-backup", "step-000002-backup"):  # a user's copies
        shutil.copytree(ckpts / "step-000004", ckpts / name)
    assert checkpoint.list_checkpoints(out) == [ckpts / "step-000004"]
    assert resume(out, 8).exit_code == 0  # saves step 8, keeping the newest 2 checkpoints
    assert checkpoint.latest(out) == ckpts / "step-000008"
    names = sorted(p.name for p in ckpts.iterdir())
    assert names == ["step-000002-backup", "step-000004", "step-000005-backup", "step-000008",
                     "step-old"]
    assert steps_of(out) == list(range(1, 9))


# -- 6. TensorBoard shows each step once after a resume --------------------------------------


def test_tensorboard_shows_each_step_once_after_a_resume(killed, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = copy_of(killed, tmp_path)
    assert resume(out).exit_code == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("loss")]
    rows = read_metrics(out)
    assert [step for step, _ in loss] == [1, 2, 3, 4, 5, 6]
    assert [value for _, value in loss] == pytest.approx([r["loss"] for r in rows], rel=1e-5)


def test_a_file_that_cannot_be_replaced_is_named_and_leaves_no_temporary_file(tmp_path):
    from assay.files import replace_file

    target = tmp_path / "metrics.jsonl"
    target.mkdir()  # a folder where the file goes: os.replace fails, as on an immutable file
    with pytest.raises(OSError) as err:
        replace_file(target, b"x\n")
    assert err.value.filename == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
