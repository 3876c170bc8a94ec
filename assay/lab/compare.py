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
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.errors import AssayError
from assay.lab.presets import get_preset, lab_config
from assay.lab.summary import find_runs
from assay.lab.workers import worker_pool
from assay.training import folder_lock


class LabError(AssayError, ValueError):
    """A usage problem (unknown reward, env, model or preset; bad values): one line."""


@dataclass
class Job:
    reward: str
    seed: int
    out: Path
    config: Any  # TrainConfig

    @property
    def key(self) -> str:
        return f"{self.reward}#{self.seed}"


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


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def jobs_for(model: str, device: str = "auto") -> int:
    """Runs at once when `--jobs` is not given: on CPU with the organism, one process per
    core (at most 4; measured faster than one process with all threads, docs/lab.md);
    otherwise 1 (a GPU, or a model of unknown size whose copies might not fit in memory)."""
    import torch

    on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if on_gpu or not (model == "organism" or model.startswith("organism:")):
        return 1
    return max(1, min(cores(), 4))


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
    from assay.training.policy import (
        ModelLoadError,
        is_local_model,
        quiet_transformers,
        resolve_model_path,
    )

    try:
        path = resolve_model_path(model, prior, quiet=quiet)
        local = is_local_model(path)
    except ModelLoadError as exc:
        raise LabError(str(exc)) from None
    from transformers import AutoConfig

    quiet_transformers()
    try:
        AutoConfig.from_pretrained(path, local_files_only=local)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LabError(f"cannot load model {model!r}: {first}") from None


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
    keeps it.
    """
    from assay.envs import OptionError, UnknownEnvError, get_env
    from assay.rewards import RewardError, get_reward
    from assay.training import ConfigError, resolve

    out = Path(out)
    owned = sorted(set(sets or {}) & OWNED)
    if owned:
        raise LabError(
            f"--set {owned[0]}: compare sets it for every run itself; use --{owned[0]} instead"
        )
    saved = saved_plan(out) if resume else None
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
    try:
        chosen = get_preset(preset or "quick")
    except KeyError as exc:
        raise LabError(exc.args[0]) from None
    rewards = list(rewards or chosen.rewards)
    seeds = list(chosen.seeds if seeds is None else seeds)
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
    base_sets = dict(chosen.sets)
    if env not in (None, chosen.env or "countdown"):  # the preset's env options are its env's
        base_sets = {k: v for k, v in base_sets.items() if not k.startswith("env.")}
    all_sets = dict(saved["sets"]) if saved is not None else {**base_sets, **(sets or {})}
    flags = {"env": env or chosen.env, "model": model or chosen.model,
             "steps": steps or chosen.steps}
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
    if not resume and (out / "runs").exists() and any((out / "runs").iterdir()):
        raise LabError(f"{out} already holds a comparison; pass --resume or choose another --out")

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
        "preset": chosen.name,
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


#: what compare decides for each run itself: `--set` cannot change it
OWNED = frozenset({"model", "env", "steps", "out", "reward", "seed"})


def saved_plan(out: Path) -> dict[str, Any] | None:
    """The plan saved in `OUT/lab.json` by an earlier `assay compare` (None when there is
    none: a comparison stopped before it wrote one starts as planned now)."""
    path = out / "lab.json"
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))["settings"]
        return {key: settings[key] for key in
                ("preset", "env", "model", "rewards", "seeds", "steps", "sets")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(f"--resume: cannot read the saved plan {path}: {exc}") from None


def _train(config_dict: dict[str, Any], resume: bool, threads: int) -> dict[str, Any]:
    """Train one run (in this process or a worker); returns its wall time or its error."""
    import torch

    from assay.training import Trainer
    from assay.training.config import make_config

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        Trainer(make_config(config_dict), resume=resume, quiet=True).train()
    except Exception as exc:  # noqa: BLE001 - one failed run must not stop the others
        line = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return {"error": line, "trace": traceback.format_exc(limit=3)}
    return {"wall_time": time.perf_counter() - start}


def finished_runs(out: Path) -> set[Path]:
    if not (out / "runs").exists():
        return set()
    # a run folder the lab cannot read is not finished: it is trained again
    runs = find_runs(out / "runs", on_error=lambda exc: None)
    return {run.path.resolve() for run in runs if run.finished}


def execute(
    the_plan: Plan, *, jobs: int = 1, live: bool = True, echo: Any = None
) -> dict[str, Any]:
    """Train every job not already finished, `jobs` at a time; returns what happened. The
    folder is locked meanwhile: a second comparison writing there is refused."""
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

    with make_live(board, live):
        if jobs == 1:
            for job in todo:
                board.status[job.key] = "running"
                finish(job, _train(job.config.to_dict(), holds_a_run(job.out), 0))
        else:
            with worker_pool(jobs) as pool:
                futures = {}
                for job in todo:
                    futures[pool.submit(_train, job.config.to_dict(), holds_a_run(job.out),
                                        threads)] = job
                    board.status[job.key] = "started"
                for future in as_completed(futures):
                    finish(futures[future], future.result())
    meta["settings"]["wall_time"] = round(time.perf_counter() - start, 1)
    meta["settings"]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    (out / "lab.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta
