"""`assay compare`: one `assay train` run per (reward, seed) from the same model and tasks,
then the report.

Each run goes through the trainer exactly as `assay train` does (`resolve(...)`, then
`Trainer(config, resume=..., quiet=True).train()`), into `OUT/runs/<reward>-seed<seed>/`,
so every run folder is an `assay train` folder. `OUT/lab.json` records the plan (settings,
skipped rewards and why, failed runs), which `assay report` reads back.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.errors import first_line
from assay.lab.experiment import LabError, pick_preset
from assay.lab.presets import PRESETS, lab_config
from assay.lab.registry import Experiment, ExperimentFailed, Option, refuse_owned, shared
from assay.lab.summary import job_key
from assay.lab.workers import cores, jobs_for, run_all


@dataclass
class Job:
    reward: str
    seed: int
    out: Path
    config: Any  # TrainConfig

    @property
    def key(self) -> str:
        return job_key(self.reward, self.seed)


@dataclass
class Plan:
    out: Path
    jobs: list[Job]
    skipped: dict[str, str]
    settings: dict[str, Any]


def folder_name(reward: str, seed: int) -> str:
    """`0.5*verifier + 0.5*self_certainty` -> `0.5xverifier+0.5xself_certainty-seed0`."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "", reward.replace("*", "x"))
    return f"{safe or 'reward'}-seed{seed}"


def default_jobs(the_plan: Plan) -> int:
    """`jobs_for` the plan's model and device."""
    return jobs_for(str(the_plan.settings.get("model", "")),
                    the_plan.settings.get("training", {}).get("device", "auto"))


def missing_requirement(spec: str, env: Any) -> str | None:
    """Why `spec` cannot run on `env` (the reward's own one-line `check_env`), or None."""
    from assay.rewards import RewardError, get_reward

    try:
        get_reward(spec).check_env(env)
    except RewardError as exc:
        return str(exc)
    return None


def _check_model(model: str, prior: dict[str, Any], *, quiet: bool = True) -> None:
    """A bad model is a one-line `LabError` before anything trains."""
    from assay.hf import hub_reachable
    from assay.native_llama import native_folder
    from assay.training.policy import (
        ModelLoadError,
        hub_hint,
        is_local_model,
        quiet_transformers,
        resolve_model_path,
    )

    try:
        path = resolve_model_path(model, prior, quiet=quiet)
        local = is_local_model(path)
    except ModelLoadError as exc:
        raise LabError(str(exc)) from None
    if local and native_folder(path) is not None:  # read without transformers, as runs load it
        return
    from transformers import AutoConfig

    quiet_transformers()
    try:
        AutoConfig.from_pretrained(path, local_files_only=local or not hub_reachable())
    except (OSError, ValueError) as exc:
        first = first_line(exc)
        raise LabError(f"cannot load model {model!r}: {first}{hub_hint(local)}") from None


def plan(
    out: str | Path,
    *,
    preset: str | None = None,
    rewards: list[str] | None = None,
    seeds: list[int] | None = None,
    env: str | None = None,
    model: str | None = None,
    steps: int | None = None,
    sets: dict[str, str] | None = None,
    resume: bool = False,
    quiet: bool = True,
) -> Plan:
    """Check everything a comparison needs and make one job per (reward, seed).

    With `resume`, the plan is the one saved in `OUT/lab.json`: an option given again must
    have its saved value (else a one-line `LabError` names what differs), one left out
    keeps it. A folder with neither a saved plan nor run folders is refused, as `assay
    train --resume` refuses a folder without a run: a typo in `--out` must not start anew.
    """
    from assay.envs import OptionError, UnknownEnvError, get_env
    from assay.rewards import RewardError, get_reward
    from assay.training import ConfigError, resolve
    from assay.training.folder_lock import foreign_files, shown

    out = Path(out)
    refuse_owned("compare", sets, OWNED)
    saved = saved_plan(out) if resume else None
    if resume and saved is None and not holds_runs(out):
        raise LabError(
            f"--resume: {out} holds no comparison, so there is nothing to resume "
            "(run without --resume to start one)"
        )
    if saved is not None:
        asked = {"preset": preset, "env": env, "model": model, "rewards": rewards,
                 "seeds": seeds, "steps": steps}
        differ = [f"--{key} {value} (saved: {saved[key]})" for key, value in asked.items()
                  if value is not None and value != saved[key]]
        differ += [f"--set {key}={value} (saved: {saved['sets'].get(key, 'unset')})"
                   for key, value in (sets or {}).items() if saved["sets"].get(key) != value]
        if differ:
            raise LabError(
                f"--resume: {out} was planned with other settings: {'; '.join(differ[:4])}; "
                "resume with the saved plan (leave those options out) or choose another --out"
            )
        preset, env, model = saved["preset"], saved["env"], saved["model"]
        rewards, seeds, steps = saved["rewards"], saved["seeds"], saved["steps"]
    preset = preset or "quick"
    chosen = pick_preset(PRESETS, preset, "compare")
    rewards = list(rewards or chosen["rewards"])
    seeds = list(chosen["seeds"] if seeds is None else seeds)
    if not rewards or not seeds:
        raise LabError("need at least one reward and one seed")
    if len(set(rewards)) != len(rewards) or len(set(seeds)) != len(seeds):
        raise LabError("a reward or seed is listed twice")
    for spec in rewards:
        try:
            get_reward(spec)
        except RewardError as exc:
            raise LabError(str(exc)) from None
    folders: dict[str, str] = {}
    for spec in rewards:  # `2*verifier` and `2 * verifier` would train into one folder
        other = folders.setdefault(folder_name(spec, 0), spec)
        if other != spec:
            raise LabError(f"rewards {other!r} and {spec!r} are the same reward; list it once")
    base_sets = dict(chosen["sets"])
    if env not in (None, chosen["env"] or "countdown"):  # the preset's env options are its env's
        base_sets = {k: v for k, v in base_sets.items() if not k.startswith("env.")}
    all_sets = dict(saved["sets"]) if saved is not None else {**base_sets, **(sets or {})}
    flags = {"env": env or chosen["env"], "model": model or chosen["model"],
             "steps": steps or chosen["steps"]}
    try:
        first_flags = {**flags, "reward": rewards[0], "seed": seeds[0]}
        if saved is None:  # the env's own lab settings (countdown: votes compare values)
            all_sets, first = lab_config(all_sets, first_flags)
        else:  # the saved plan's sets hold them already
            first = resolve(sets=all_sets, flags=first_flags)
        environment = get_env(first.env, **first.env_options)
    except (ConfigError, UnknownEnvError, OptionError) as exc:
        raise LabError(str(exc)) from None
    for name in ("train_file", "val_file"):
        path = getattr(first, name)
        if path and not os.access(path, os.R_OK):
            raise LabError(f"cannot read {name} {path}")
    _check_model(first.model, first.prior, quiet=quiet)  # may build the organism's prior
    if not resume and holds_comparison(out):
        raise LabError(f"{out} already holds a comparison; pass --resume or choose another --out")
    if not resume and (found := foreign_files(out)):  # its summary.json, report.html: the user's
        raise LabError(f"--out {out} is not empty ({shown(found)}); "
                       "a comparison writes its own files there: choose a new or empty folder")

    skipped: dict[str, str] = {}
    jobs: list[Job] = []
    for spec in rewards:
        reason = missing_requirement(spec, environment)
        if reason:
            skipped[spec] = reason
    # Seed by seed: a comparison stopped part way holds whole seeds, every reward in each.
    for seed in seeds:
        for spec in (s for s in rewards if s not in skipped):
            run_out = out / "runs" / folder_name(spec, seed)
            config = resolve(
                sets=all_sets, flags={**flags, "reward": spec, "seed": seed, "out": str(run_out)}
            )
            jobs.append(Job(spec, seed, run_out, config))
    environment.close()
    settings = {
        "preset": preset,
        "env": first.env,
        "model": first.model,
        "rewards": rewards,
        "seeds": seeds,
        "steps": first.steps,
        "sets": all_sets,
        "training": {
            k: v
            for k, v in first.to_dict().items()
            if k not in ("reward", "seed", "out", "progress", "wandb", "wandb_project")
        },
    }
    return Plan(out, jobs, skipped, settings)


#: what compare decides for each run itself, and the flag that changes it instead of `--set`
OWNED = {"model": "--model", "env": "--env", "steps": "--steps", "out": "--out",
         "reward": "--rewards", "seed": "--seeds"}


def holds_runs(out: Path) -> bool:
    """Whether `OUT/runs` holds a run folder (a comparison's, or runs put there by hand)."""
    runs = out / "runs"
    return runs.is_dir() and any(runs.iterdir())


def holds_comparison(out: Path) -> bool:
    """Whether `OUT` holds a comparison to `--resume`: its saved plan or run folders."""
    return (out / "lab.json").is_file() or holds_runs(out)


def saved_plan(out: Path) -> dict[str, Any] | None:
    """The plan saved in `OUT/lab.json` by an earlier `assay compare` (None when there is
    none: run folders put there without one are resumed as planned now)."""
    path = out / "lab.json"
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))["settings"]
        return {key: settings[key] for key in
                ("preset", "env", "model", "rewards", "seeds", "steps", "sets")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(f"--resume: cannot read the saved plan {path}: {exc}") from None


def _train(config_dict: dict[str, Any], resume: bool) -> dict[str, Any]:
    """Train one run (in this process or a worker); returns its wall time or its error."""
    from assay.training import Trainer
    from assay.training.config import make_config

    start = time.perf_counter()
    try:
        Trainer(make_config(config_dict), resume=resume, quiet=True).train()
    except Exception as exc:  # noqa: BLE001 - one failed run must not stop the others
        line = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return {"error": line, "trace": traceback.format_exc(limit=3)}
    return {"wall_time": time.perf_counter() - start}


def _readable_runs(out: Path) -> list[Any]:
    """The run folders under `OUT/runs` (none before the first); a folder the lab cannot
    read is left out."""
    if not (out / "runs").exists():
        return []
    from assay.lab.summary import find_runs  # (torch, through the collapse rules)

    return find_runs(out / "runs", on_error=lambda exc: None)


def finished_runs(out: Path) -> set[Path]:
    # a run folder the lab cannot read is not finished: it is trained again
    return {run.path.resolve() for run in _readable_runs(out) if run.finished}


def execute(
    the_plan: Plan, *, jobs: int = 1, live: bool = True, echo: Any = None
) -> dict[str, Any]:
    """Train every job not already finished, `jobs` at a time; returns what happened. The
    folder is locked meanwhile: a second comparison writing there is refused."""
    from assay.training import folder_lock

    out = the_plan.out
    folder_lock.acquire(out, what="comparison")
    try:
        return _execute(the_plan, jobs=jobs, live=live, echo=echo)
    finally:
        folder_lock.release(out)


def _execute(the_plan: Plan, *, jobs: int, live: bool, echo: Any) -> dict[str, Any]:
    from assay.lab.display import Board
    from assay.lab.display import live as make_live
    from assay.training.trainer import holds_a_run  # a folder a killed run only created: none

    out = the_plan.out
    done = finished_runs(out)
    todo = [job for job in the_plan.jobs if job.out.resolve() not in done]
    if not todo and (finished := _finished_meta(out)) is not None:
        return finished  # every run done: its record stands (not a resume's 0 s and settings)
    jobs = max(1, min(jobs, len(todo) or 1))
    threads = max(1, cores() // jobs)
    meta = {
        "settings": {
            **the_plan.settings,
            "jobs": jobs,
            "torch_threads": threads,
            "machine": f"{platform.machine()}, {cores()} cores ({platform.platform()})",
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
        },
        "skipped": the_plan.skipped,
        "kept": sorted(job.key for job in the_plan.jobs if job.out.resolve() in done),
        "failed": {},
    }
    (out / "lab.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    board = Board(the_plan.jobs)
    for job in the_plan.jobs:
        if job.out.resolve() in done:
            board.status[job.key] = "done (kept)"
    start = time.perf_counter()

    def finish(job: Job, result: dict[str, Any]) -> None:
        if "error" in result:
            meta["failed"][job.key] = result["error"]
            board.status[job.key] = "failed"
        else:
            board.status[job.key] = f"done {result['wall_time']:.0f}s"
        if echo is not None:
            echo(f"{job.reward} seed {job.seed}: {board.status[job.key]}"
                 + (f" ({result['error']})" if "error" in result else ""))

    def started(i: int) -> None:
        board.status[todo[i].key] = "running" if jobs == 1 else "started"

    with make_live(board, live):
        run_all(_train, [{"config_dict": job.config.to_dict(), "resume": holds_a_run(job.out)}
                         for job in todo],
                jobs=jobs, started=started, done=lambda i, result: finish(todo[i], result))
    meta["settings"]["wall_time"] = round(time.perf_counter() - start, 1)
    meta["settings"]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    (out / "lab.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def _finished_meta(out: Path) -> dict[str, Any] | None:
    """`OUT/lab.json` of a comparison whose runs all finished, as it was written; None when
    it is not that (missing, unreadable, or from a run that never finished)."""
    try:
        meta = json.loads((out / "lab.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    settings = meta.get("settings") if isinstance(meta, dict) else None
    if not isinstance(settings, dict) or "wall_time" not in settings or meta.get("failed"):
        return None
    return meta


# -- the command ------------------------------------------------------------------------


def run(
    *,
    out: Path,
    preset: str | None = None,
    quiet: bool = False,
    rewards: list[str] | None = None,
    seeds: list[int] | None = None,
    env: str | None = None,
    model: str | None = None,
    steps: int | None = None,
    sets: dict[str, str] | None = None,
    resume: bool = False,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Plan the comparison, train every run not yet finished and return `OUT/lab.json`'s
    record (settings, skipped and failed runs). A reward that cannot run on the env is
    skipped with one line on stderr."""
    import sys

    out = Path(out)
    the_plan = plan(out, preset=preset, rewards=rewards, seeds=seeds, env=env, model=model,
                    steps=steps, sets=sets, resume=resume, quiet=quiet)
    for name, reason in the_plan.skipped.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    echo = None if quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    meta = execute(the_plan, jobs=jobs or default_jobs(the_plan), live=not quiet, echo=echo)
    meta["planned"] = len(the_plan.jobs)
    # every run failed before its first step: nothing to report
    if meta["failed"] and not any(run.rows for run in _readable_runs(out)):
        raise ExperimentFailed(f"no run produced metrics; see {out}/lab.json",
                               [f"{key}: {error}" for key, error in meta["failed"].items()])
    return meta


def report(out: Path) -> str:
    """`OUT/report.html` and `OUT/summary.json` from the run folders; the reading."""
    from assay.lab import report as page

    return page.reading_text(page.render(out))


def closing(result: dict[str, Any], out: Path) -> tuple[list[str], int]:
    """Each failed run's error, the count and the report's path; status 1 when a run failed
    (a script must see it: the report shows only the runs that trained)."""
    failed = result.get("failed", {})
    lines = [f"{key}: {error}" for key, error in failed.items()]
    lines.append(f"{result['planned']} runs{f', {len(failed)} failed' if failed else ''} in "
                 f"{result['settings']['wall_time']:.0f} s; report: {out}/report.html")
    return lines, 1 if failed else 0


def _reward_list(text: str) -> list[str]:
    rewards = [r.strip() for r in text.split(",") if r.strip()]
    if not rewards:
        raise LabError(f"--rewards {text!r} names no reward (leave it out for the preset's)")
    return rewards


EXPERIMENT = Experiment(
    name="compare",
    summary="Train one run per (reward, seed) from the same model and tasks; write the report.",
    run=run,
    presets=PRESETS,
    default_preset="quick",
    options=(
        shared("env"),
        Option("rewards", "Comma-separated rewards (default: the preset's, every built-in one).",
               metavar="NAME,...", parse=_reward_list),
        shared("model", help="organism[:preset] or a local HF model folder (default: the "
                             "preset's)."),
        shared("steps", help="Steps per run (default: the preset's)."),
        shared("seeds"),
        shared("sets", help="Training option for every run (env.KEY, prior.KEY as in assay "
                            "train)."),
        Option("resume", "Finish an interrupted comparison in --out.", type=bool, default=False),
        shared("jobs"),
    ),
    report=report,
    result_file="lab.json",
    resume_hint=lambda out: (
        f"finish the comparison with assay compare --out {out} --resume"
        if holds_comparison(out)
        else "nothing was written yet: run the same command again to start"),
    closing=closing,
    owned=OWNED,
)
