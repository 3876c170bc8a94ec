"""`assay zoo`: does the Model Collapse Step rank priors like their gain from supervised RL?

The study trained 7 models with an intrinsic reward until their Model Collapse Step and
found that the step ranked them like their gain from ground-truth RL (GT gain), at 5.6x
fewer tokens. Here the models are organism priors. Two zoos, two axes:

- `default`: how well the prior's confidence aligns with correctness: the share of
  problems taught a confidently wrong answer (`wrong_below`), the share of randomly
  corrupted answers (`answer_noise`) and the length of supervised training (`sft_steps`).
  The study did not vary this.
- `capacity`: the study's axis, models that differ in size and training budget: width and
  depth (`hidden_size`, `layers`) and `sft_steps`, on 3 seeds.

Each member of a zoo is `organism` with `prior.KEY=V` overrides (`Member`); the prior
cache keys them by the spec's hash, so a second run builds nothing.

For every member, into `OUT/priors/<name>/`:

- `collapse/`: the collapse-step measurement (`assay collapse-step`'s layout: the run in
  `collapse/run/`, the answer in `collapse/collapse_step.json`): `majority_vote` training
  until the label-free collapse rule fires, at most `max_steps`, with no validation, so no
  label is read. A prior that never collapses counts as `max_steps`.
- `gt/`: an `assay train` run with the `ground_truth` reward, the same steps and settings
  for every prior; GT gain = its last validation accuracy minus its first (the trainer's
  sampled validation, the same tasks for every prior).

`OUT/zoo.json` holds the figures, `OUT/zoo.png` the scatter and `OUT/report.html` the
report. With several seeds each seed is a whole zoo in `OUT/seed-<S>/` (priors built once,
the runs per seed) and `OUT/zoo.json` holds each member's mean over the seeds, Spearman's
rho of those means with a bootstrap interval over seeds, and each seed's own rho.
`token_ratio` = the tokens of every GT run / the tokens of every collapse-step run
(each a sum of metrics.jsonl `tokens`: prompts and completions of the training rollouts).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.lab.experiment import (
    ANY,
    FLAG,
    NUMBER,
    TEXT,
    LabError,
    Preset,
    Section,
    list_of,
    maybe,
    optional,
    pick_preset,
    pyplot,
    run_progress,
    train_run,
    write_report,
    write_result,
)
from assay.lab.presets import lab_config
from assay.lab.rank_correlation import permutation_p, spearman
from assay.lab.registry import Experiment, Option, shared

#: the intrinsic reward whose collapse is measured, and the supervised one
COLLAPSE_REWARD = "majority_vote"
GT_REWARD = "ground_truth"
#: the study's bars (docs/lab.md): a rank correlation of at least this, at this token ratio
STUDY_SPEARMAN = 0.8
STUDY_TOKEN_RATIO = 3.0


@dataclass(frozen=True)
class Member:
    """One prior of the zoo: the preset's organism with `prior.KEY=V` overrides."""

    name: str
    prior: dict[str, Any]
    #: what it varies, in words (docs/lab.md and the report's table)
    varies: str


#: The default zoo, chosen before any of it was trained, along the axis the study names:
#: how far the prior's confidence tracks correctness. Five members share a 1,200-step SFT
#: (so that seven builds and all training fit in 40 minutes on 2 cores) and differ from
#: `wrong-3` in one field each; `organism` is the cached default prior (3,000 steps).
DEFAULT_ZOO = (
    Member("organism", {}, "the default prior: 3,000 SFT steps, a third confidently wrong"),
    Member("aligned", {"sft_steps": 1200, "wrong_below": 0},
           "no confidently wrong class: its errors are its skill's, not taught"),
    Member("wrong-9", {"sft_steps": 1200, "wrong_below": 9},
           "every problem taught the swapped operator: confident and wrong throughout"),
    Member("wrong-6", {"sft_steps": 1200, "wrong_below": 6},
           "two thirds of the problems taught a confidently wrong answer"),
    Member("wrong-3", {"sft_steps": 1200},
           "a third confidently wrong (the default's share) at 1,200 SFT steps"),
    Member("noisy", {"sft_steps": 1200, "answer_noise": 0.45},
           "45% of answers randomly corrupted: probability spread over unsystematic errors"),
    Member("short", {"sft_steps": 400},
           "400 SFT steps: a weak prior, unsure of right and wrong alike"),
)

#: The study's axis, chosen before any of it was trained: models that differ in capacity
#: (width and depth: about 0.13M to 2.4M parameters, feed-forward 4x the width) at one
#: supervised budget, and in supervised budget at the default's size. Everything else is
#: the default prior's (a third confidently wrong, 15% answer noise).
CAPACITY_ZOO = (
    Member("h64-l2", {"sft_steps": 1200, "hidden_size": 64, "layers": 2,
                      "intermediate_size": 256},
           "width 64, 2 layers (about 0.13M parameters), 1,200 SFT steps"),
    Member("h96-l3", {"sft_steps": 1200, "hidden_size": 96, "layers": 3,
                      "intermediate_size": 384},
           "width 96, 3 layers (about 0.44M parameters), 1,200 SFT steps"),
    Member("h128-l4", {"sft_steps": 1200},
           "the default's size: width 128, 4 layers (about 1.05M parameters), 1,200 SFT steps"),
    Member("h192-l4", {"sft_steps": 1200, "hidden_size": 192, "intermediate_size": 768},
           "width 192, 4 layers (about 2.4M parameters), 1,200 SFT steps"),
    Member("h128-l4-400", {"sft_steps": 400},
           "the default's size, 400 SFT steps: a smaller supervised budget"),
    Member("h128-l4-3000", {},
           "the default prior: the default's size, 3,000 SFT steps"),
)

#: The training settings of both kinds of run (the organism's defaults fill the rest: lr
#: 1e-4 constant, 16 prompts x 8 completions, at most 12 new tokens).
_SHARED = {
    "save_every": "0",  # one checkpoint, at the end
    "keep_checkpoints": "1",
}

#: `--preset`: the organism the zoo is built from, its members, the seeds it runs on, the
#: steps of every run (GT runs exactly; collapse-step runs at most), the GT runs'
#: validation and the settings both kinds of run share. `steps` is 1 + a multiple of `eval_every`, so the GT run's last
#: validation measures the policy after steps - 1 updates.
PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", "seconds, for tests: 3 tiny priors, 11 steps", {
        "model": "organism:tiny",
        "members": (
            Member("tiny", {}, "the tiny prior (150 SFT steps)"),
            Member("tiny-aligned", {"sft_steps": 60, "wrong_below": 0},
                   "60 SFT steps, no confidently wrong class"),
            Member("tiny-wrong-9", {"sft_steps": 60, "wrong_below": 9},
                   "60 SFT steps, every problem confidently wrong"),
        ),
        "seeds": (0,),
        "steps": 11,
        "eval_every": 10,
        "val_size": 16,
        "sets": {**_SHARED, "prompts_per_step": "4", "group_size": "4", "train_size": "256",
                 "val_samples": "2"},
    }),
    "default": Preset("default", "confidence against correctness: the default zoo, 301 steps", {
        "model": "organism",
        "members": DEFAULT_ZOO,
        "seeds": (0,),
        "steps": 301,
        "eval_every": 50,
        "val_size": 256,
        "sets": dict(_SHARED),
    }),
    # 3 seeds of 6 priors is 36 runs: 151 steps (150 updates) each, half the default's;
    # the default zoo's priors collapsed at steps 35-124 of 301
    "capacity": Preset("capacity", "width, depth and SFT budget, 3 seeds, 151 steps", {
        "model": "organism",
        "members": CAPACITY_ZOO,
        "seeds": (0, 1, 2),
        "steps": 151,
        "eval_every": 50,
        "val_size": 256,
        "sets": dict(_SHARED),
    }),
}

STUDY = (
    "the Model Collapse Step (reward accuracy below 1% under intrinsic training) ranked 7 "
    "models like their gain from ground-truth RL, at 5.6x fewer tokens (1.19B against "
    "6.66B); assay decides the step without labels (entropy, length or repetition drift)."
)

#: what OUT/zoo.json holds that the report reads (`assay report` refuses a file without
#: it); a zoo over seeds adds each member's per-seed lists and the seeds' figures
_MODEL = {
    "name": TEXT,
    **{key: NUMBER for key in ("collapse_step", "gt_gain", "initial_val_accuracy",
                               "final_val_accuracy", "tokens_collapse_step", "tokens_gt_gain")},
    "varies": optional(TEXT),
    "collapsed": optional(FLAG),
    "prior_evaluation": optional(maybe({key: optional(maybe(NUMBER)) for key in
                                        ("greedy_accuracy", "wrong_class_accuracy")})),
    "collapse_steps": optional(list_of(NUMBER)),
    "gt_gains": optional(list_of(NUMBER)),
}
RESULT_SHAPE = {
    "models": list_of(_MODEL, 1),
    "spearman": maybe(NUMBER),
    "token_ratio": maybe(NUMBER),
    "spearman_p": optional(maybe(NUMBER)),
    "tokens_collapse_step": optional(NUMBER),
    "tokens_gt_gain": optional(NUMBER),
    "never_collapsed": optional(list_of(TEXT)),
    "max_steps": optional(maybe(NUMBER)),
    "seeds": optional(list_of(ANY)),
    "spearman_interval": optional(maybe(list_of(NUMBER, 2))),
    "per_seed": optional(list_of({"spearman": optional(maybe(NUMBER))})),
}



# -- the plan ------------------------------------------------------------------------


@dataclass
class Job:
    """One member's two runs, resolved before anything trains."""

    member: Member
    folder: Path
    spec: Any  # PriorSpec
    collapse_sets: dict[str, Any]
    gt_sets: dict[str, Any]


def members_of(preset: str, priors: int | None) -> list[Member]:
    """The first `priors` members of the preset's zoo (all by default; at least 2)."""
    members = list(pick_preset(PRESETS, preset, "zoo")["members"])
    if priors is None:
        return members
    if not 2 <= priors <= len(members):
        raise LabError(f"--priors must be between 2 and {len(members)} (the {preset} zoo's "
                       f"size), got {priors}: a rank correlation needs two priors at least")
    return members[:priors]


def plan(out: Path, preset: str, priors: int | None, seed: int) -> tuple[dict[str, Any], list[Job]]:
    """The settings and one `Job` per member; every problem is a `LabError` raised here."""
    from assay import organism
    from assay.options import OptionError
    from assay.training import ConfigError, resolve

    chosen = pick_preset(PRESETS, preset, "zoo")
    members = members_of(preset, priors)
    model, steps = chosen["model"], chosen["steps"]
    try:  # the env's own lab settings (countdown: votes compare values)
        lab_sets, _ = lab_config(chosen["sets"], {"model": model})
    except ConfigError as exc:
        raise LabError(f"zoo preset {preset!r}: {exc}") from None
    chosen = {**chosen, "sets": lab_sets}
    settings = {"preset": preset, "model": model, "seed": seed, "reward": COLLAPSE_REWARD,
                "gt_reward": GT_REWARD, "max_steps": steps, "gt_steps": steps,
                "eval_every": chosen["eval_every"], "val_size": chosen["val_size"],
                "sets": chosen["sets"]}
    jobs = []
    for member in members:
        try:
            spec = organism.make_spec(organism.parse_organism(model), **member.prior)
        except OptionError as exc:
            raise LabError(f"zoo member {member.name!r}: {exc}") from None
        # the values as they are (not as text), so each run's config.yaml shows them so
        prior_sets = {f"prior.{k}": v for k, v in member.prior.items()}
        collapse_sets = {**chosen["sets"], **prior_sets, "collapse_signal": "label_free",
                         "stop_on_collapse": "true", "eval_every": "0"}
        gt_sets = {**chosen["sets"], **prior_sets, "eval_every": str(chosen["eval_every"]),
                   "val_size": str(chosen["val_size"])}
        for sets in (collapse_sets, gt_sets):
            try:
                resolve(sets=sets, flags={"model": model, "steps": steps, "seed": seed})
            except ConfigError as exc:
                raise LabError(f"zoo member {member.name!r}: {exc}") from None
        folder = out / "priors" / member.name
        jobs.append(Job(member, folder, spec, collapse_sets, gt_sets))
        _check_folder(folder, {**settings, "prior": member.prior, "prior_key": spec.key()})
    return settings, jobs


def _check_folder(folder: Path, made_with: dict[str, Any]) -> None:
    """A member folder made with other settings is refused (its runs would be reused)."""
    record = folder / "member.json"
    if record.exists():
        try:
            before = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = None
        if before != json.loads(json.dumps(made_with)):
            raise LabError(f"{folder} was made with other settings; choose another --out")


# -- running it ----------------------------------------------------------------------


def run(
    *,
    preset: str = "default",
    priors: int | None = None,
    out: str | Path = "runs/zoo",
    seeds: Sequence[int] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Build each prior, measure its collapse step and GT gain on each seed (the preset's
    seeds by default); write and return the result.

    One seed: the zoo is `out` itself. Several: each seed's zoo is `out/seed-<S>/` and
    `out/zoo.json` holds the members' means over the seeds (`over_seeds`). Finished runs
    are read back, not trained again: an interrupted zoo continues.
    """
    out = Path(out)
    seeds = list(pick_preset(PRESETS, preset, "zoo")["seeds"] if seeds is None else seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise LabError(f"--seeds must name distinct seeds, got {seeds}")
    # every seed planned (and every problem found) before anything trains
    plans = {seed: plan(_seed_folder(out, seed, seeds), preset, priors, seed) for seed in seeds}
    if len(seeds) == 1:
        return run_seed(preset=preset, priors=priors, out=out, seed=seeds[0], quiet=quiet,
                        planned=plans[seeds[0]])
    start = time.perf_counter()
    results = [run_seed(preset=preset, priors=priors, out=_seed_folder(out, seed, seeds),
                        seed=seed, quiet=quiet, planned=plans[seed]) for seed in seeds]
    result = over_seeds(results)
    result["wall_time"] = round(time.perf_counter() - start, 1)
    write_result(out, "zoo", result)
    write_report(out, "zoo", section(result, out))
    return result


def _seed_folder(out: Path, seed: int, seeds: list[int]) -> Path:
    return out if len(seeds) == 1 else out / f"seed-{seed}"


def run_seed(*, preset: str, priors: int | None, out: Path, seed: int, quiet: bool = False,
             planned: tuple[dict[str, Any], list[Job]] | None = None) -> dict[str, Any]:
    """One seed's zoo in `out`: every member's prior, collapse-step run and GT run
    (`planned`: this seed's `plan`, when the caller has made it)."""
    from assay import organism

    settings, jobs = planned or plan(out, preset, priors, seed)
    model = settings["model"]
    name = organism.parse_organism(model)
    flags = {"model": model, "steps": settings["max_steps"], "seed": seed}
    start = time.perf_counter()
    models = []
    with run_progress(f"zoo, seed {seed}", 3 * len(jobs), enabled=not quiet) as bar:
        for job in jobs:
            who = job.member.name
            job.folder.mkdir(parents=True, exist_ok=True)
            (job.folder / "member.json").write_text(json.dumps(
                {**settings, "prior": job.member.prior, "prior_key": job.spec.key()}) + "\n",
                encoding="utf-8")
            timing = Timing(job.folder / "timing.json")
            cached = (organism.prior_path(job.spec, name) / "assay.json").exists()
            bar.doing(f"{who}: prior cached" if cached else f"{who}: building prior")
            with timing.measure("prior", fresh=not cached):
                path = organism.ensure_prior(job.spec, name, quiet=quiet)
            bar.advance(f"{who}: prior ready")

            bar.doing(f"{who}: {COLLAPSE_REWARD} until collapse")
            with timing.measure("collapse", fresh=not finished(job.folder / "collapse" / "run")):
                collapse = _collapse_step(job, flags, settings)
            bar.advance(f"{who}: collapse step {collapse['collapse_step']}")

            bar.doing(f"{who}: {GT_REWARD} training")
            with timing.measure("gt", fresh=not finished(job.folder / "gt")):
                _, gt_rows = train_run(out=job.folder / "gt",
                                       flags={**flags, "reward": GT_REWARD}, sets=job.gt_sets)
            gain = gt_gain(gt_rows)
            bar.advance(f"{who}: GT gain {gain['gt_gain']:+.3f}")
            models.append(_entry(job, path, collapse, gain, gt_rows, timing.seconds))
    result = summarise(models, settings)
    result["wall_time"] = round(time.perf_counter() - start, 1)
    # what the whole zoo cost when each piece was done (a rerun reads most of it back)
    result["work_seconds"] = round(sum(sum(m["seconds"].values()) for m in models), 1)
    write_result(out, "zoo", result)
    write_report(out, "zoo", section(result, out))
    return result


def finished(folder: Path) -> bool:
    """Whether `folder` holds a run that finished (so `train_run` will read it back)."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and not summary.get("interrupted")


class Timing:
    """Seconds each piece of a member took when it was done, kept in `timing.json`: a
    piece read back (a cached prior, a finished run) keeps the time it took first."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.seconds: dict[str, float] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.seconds = {}

    @contextmanager
    def measure(self, piece: str, *, fresh: bool) -> Iterator[None]:
        began = time.perf_counter()
        yield
        if fresh or piece not in self.seconds:
            self.seconds[piece] = round(time.perf_counter() - began, 1)
            self.path.write_text(json.dumps(self.seconds) + "\n", encoding="utf-8")


def _collapse_step(job: Job, flags: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The member's collapse-step measurement, in `assay collapse-step`'s folder layout."""
    from assay.lab import collapse_step

    folder = job.folder / "collapse"
    summary, rows = train_run(out=folder / "run", flags={**flags, "reward": COLLAPSE_REWARD},
                              sets=job.collapse_sets)
    result = collapse_step.measure(rows, summary, model=settings["model"],
                                   reward=COLLAPSE_REWARD, max_steps=settings["max_steps"])
    result["preset"] = f"zoo:{settings['preset']}"
    result["prior"] = job.member.prior
    write_result(folder, "collapse_step", result)
    return result


def gt_gain(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Last validation accuracy minus the first (sampled; greedy beside it) of a GT run."""
    evals = [r for r in rows if r.get("val_accuracy") is not None]
    if len(evals) < 2:
        raise LabError("a ground-truth run needs two validations to measure a gain")
    first, last = evals[0], evals[-1]

    def delta(key: str) -> float | None:
        if first.get(key) is None or last.get(key) is None:
            return None
        return last[key] - first[key]

    return {"gt_gain": delta("val_accuracy"), "gt_greedy_gain": delta("val_greedy_accuracy"),
            "initial_val_accuracy": first["val_accuracy"],
            "final_val_accuracy": last["val_accuracy"],
            "evaluated_at": [first["step"], last["step"]]}


def _entry(job: Job, path: str | Path, collapse: dict[str, Any], gain: dict[str, Any],
           gt_rows: list[dict[str, Any]], seconds: dict[str, float]) -> dict[str, Any]:
    """One member's line of zoo.json."""
    from assay.organism import read_metadata

    step = collapse["collapse_step"]
    evaluation = read_metadata(path).get("evaluation") or {}
    return {
        "name": job.member.name,
        "prior": job.member.prior,
        "varies": job.member.varies,
        "spec": dataclasses.asdict(job.spec),
        "prior_evaluation": {k: _number(evaluation.get(k))
                             for k in ("greedy_accuracy", "wrong_class_accuracy")},
        # a prior that never collapsed counts as max_steps (`collapsed` says which)
        "collapse_step": step if step is not None else collapse["max_steps"],
        "collapsed": step is not None,
        "criterion": collapse["criterion"],
        **gain,
        "tokens_collapse_step": collapse["tokens"],
        "tokens_gt_gain": int(sum(r.get("tokens") or 0 for r in gt_rows)),
        "runs": {"collapse": f"priors/{job.member.name}/collapse/run",
                 "gt": f"priors/{job.member.name}/gt"},
        "seconds": seconds,
    }


def _number(value: Any) -> float | None:
    """A finite number, or None (JSON has no NaN: a prior without a wrong class has none)."""
    return value if isinstance(value, int | float) and math.isfinite(value) else None


# -- the figures ---------------------------------------------------------------------


def summarise(models: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """zoo.json: the members, Spearman's rho of collapse step and GT gain, the token ratio."""
    steps = [float(m["collapse_step"]) for m in models]
    gains = [float(m["gt_gain"]) for m in models]
    tokens_gt = sum(m["tokens_gt_gain"] for m in models)
    tokens_collapse = sum(m["tokens_collapse_step"] for m in models)
    rho = spearman(steps, gains)
    return {
        "models": models,
        "spearman": None if rho is None else round(rho, 6),
        "spearman_p": permutation_p(steps, gains),
        "token_ratio": round(tokens_gt / tokens_collapse, 6) if tokens_collapse else None,
        "tokens_gt_gain": tokens_gt,
        "tokens_collapse_step": tokens_collapse,
        "never_collapsed": [m["name"] for m in models if not m["collapsed"]],
        **settings,
    }


def over_seeds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """zoo.json over several seeds' zoos (the same members, in order): each member's mean
    collapse step and GT gain over the seeds, Spearman's rho of those means with its exact
    p-value, a 95% bootstrap interval of that rho over seeds, and each seed's own rho."""
    import numpy as np

    from assay.lab.intervals import RESAMPLES, percentile_interval

    names = [m["name"] for m in results[0]["models"]]
    if any([m["name"] for m in r["models"]] != names for r in results):
        raise LabError("the seeds' zoos hold different priors; run them with the same --priors")
    steps = np.array([[m["collapse_step"] for m in r["models"]] for r in results], float)  # (S, M)
    gains = np.array([[m["gt_gain"] for m in r["models"]] for r in results], float)  # (S, M)
    models = []
    for i, first in enumerate(results[0]["models"]):
        per_seed = [r["models"][i] for r in results]
        models.append({
            **{k: first[k] for k in ("name", "prior", "varies", "spec", "prior_evaluation")},
            "collapse_step": round(float(steps[:, i].mean()), 2),
            "collapse_steps": [m["collapse_step"] for m in per_seed],
            "collapsed": all(m["collapsed"] for m in per_seed),
            "gt_gain": round(float(gains[:, i].mean()), 6),
            "gt_gains": [m["gt_gain"] for m in per_seed],
            **{k: round(float(np.mean([m[k] for m in per_seed])), 6)
               for k in ("initial_val_accuracy", "final_val_accuracy")},
            **{k: int(sum(m[k] for m in per_seed))
               for k in ("tokens_collapse_step", "tokens_gt_gain")},
        })
    settings = {k: v for k, v in results[0].items()
                if k not in ("models", "seed", "wall_time", "work_seconds", *_FIGURES)}
    result = summarise(models, settings)
    # Resample the seeds with replacement, the same draw for every prior (a seed fixes the
    # tasks every prior trains and is validated on), and recompute rho of the means.
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(results), size=(RESAMPLES, len(results)))  # (R, S)
    rhos = [spearman(list(steps[d].mean(axis=0)), list(gains[d].mean(axis=0))) for d in draws]
    defined = np.array([r for r in rhos if r is not None])
    result.update({
        "seeds": [r["seed"] for r in results],
        "spearman_interval": percentile_interval(defined) if len(defined) else None,
        "per_seed": [{"seed": r["seed"],
                      **{k: r[k] for k in ("spearman", "spearman_p", "token_ratio")}}
                     for r in results],
        "work_seconds": round(sum(r.get("work_seconds") or 0 for r in results), 1),
    })
    return result


#: summarise's figures (recomputed over seeds, never copied from one seed's zoo)
_FIGURES = ("spearman", "spearman_p", "token_ratio", "tokens_gt_gain", "tokens_collapse_step",
            "never_collapsed")


# -- the report ----------------------------------------------------------------------


def section(result: dict[str, Any], out: Path) -> Section:
    """The report's part: the correlation and the cost in words, the scatter, the table."""
    models = result.get("models") or []
    rho, ratio, p = result.get("spearman"), result.get("token_ratio"), result.get("spearman_p")
    n, max_steps = len(models), result.get("max_steps")
    if rho is None:
        said = (f"Across {n} priors the rank correlation is undefined: the collapse step or "
                "the GT gain took a single value.")
    else:
        met = "meets" if rho >= STUDY_SPEARMAN else "falls short of"
        said = (f"Across {n} priors, Spearman's rho between the collapse step and the GT gain "
                f"is {rho:+.2f}" + (f" (exact two-sided p = {p:.3f})" if p is not None else "")
                + f": it {met} the study's bar of {STUDY_SPEARMAN}. A positive rho means the "
                "priors that collapsed later gained more from ground-truth training.")
    reading = [said]
    seeds = result.get("seeds") or []
    if len(seeds) > 1:
        interval = result.get("spearman_interval")
        each = ", ".join(f"{r['spearman']:+.2f}" if r.get("spearman") is not None else "undefined"
                         for r in result.get("per_seed") or [])
        reading.append(
            f"Each prior's collapse step and GT gain are its means over seeds "
            f"{', '.join(map(str, seeds))}"
            + (f"; the 95% interval of rho, resampling the seeds, is [{interval[0]:+.2f}, "
               f"{interval[1]:+.2f}]" if interval else "")
            + f". Each seed alone gave rho {each}.")
    if ratio is not None:
        met = "above" if ratio > STUDY_TOKEN_RATIO else "not above"
        reading.append(
            f"The collapse-step runs used {result.get('tokens_collapse_step', 0):,} tokens, the "
            f"GT runs {result.get('tokens_gt_gain', 0):,}: a token ratio of {ratio:.1f}x, {met} "
            f"the {STUDY_TOKEN_RATIO:.0f}x aimed for (the study: 5.6x).")
    never = result.get("never_collapsed") or []
    if never:
        reading.append(f"{', '.join(never)} never collapsed within {max_steps} steps; each "
                       f"counts as collapsing at step {max_steps} (and cost that many steps' "
                       "tokens).")
    if models:
        lo = min(models, key=lambda m: m["gt_gain"])
        hi = max(models, key=lambda m: m["gt_gain"])
        reading.append(f"GT gains ranged from {lo['gt_gain']:+.3f} ({lo['name']}) to "
                       f"{hi['gt_gain']:+.3f} ({hi['name']}); collapse steps from "
                       f"{min(m['collapse_step'] for m in models)} to "
                       f"{max(m['collapse_step'] for m in models)}.")
    figures = [_plot(models, max_steps, rho, out / "zoo.png")] if models else []
    rows = []
    for m in models:
        evaluation = m.get("prior_evaluation") or {}
        acc, wrong = evaluation.get("greedy_accuracy"), evaluation.get("wrong_class_accuracy")
        rows.append([
            m["name"], m.get("varies", ""), "—" if acc is None else f"{acc:.2f}",
            "—" if wrong is None else f"{wrong:.2f}",
            _step_cell(m),
            f"{m['initial_val_accuracy']:.3f} → {m['final_val_accuracy']:.3f} "
            f"({m['gt_gain']:+.3f})" + ("" if "gt_gains" not in m else
                                         " per seed " + ", ".join(f"{g:+.3f}"
                                                                  for g in m["gt_gains"])),
            f"{m['tokens_collapse_step']:,}", f"{m['tokens_gt_gain']:,}",
        ])
    return Section(
        title="Prior zoo: the collapse step against the gain from ground-truth RL",
        reading=reading,
        study=STUDY,
        figures=figures,
        columns=["prior", "what it varies", "prior greedy accuracy",
                 "its wrong class's accuracy", "collapse step",
                 "GT validation accuracy (gain)", "tokens to collapse", "tokens of GT run"],
        rows=rows,
        settings={k: result.get(k) for k in ("preset", "model", "seed", "seeds", "reward",
                                             "gt_reward",
                                             "max_steps", "gt_steps", "eval_every",
                                             "val_size", "sets", "wall_time")},
    )


def _step_cell(m: dict[str, Any]) -> str:
    """A collapse step, or over seeds their mean and each seed's (a seed that never
    collapsed is marked)."""
    if "collapse_steps" not in m:
        return str(m["collapse_step"]) + ("" if m.get("collapsed", True) else " (never)")
    return f"{m['collapse_step']:g} (" + ", ".join(map(str, m["collapse_steps"])) + ")"


def _plot(models: list[dict[str, Any]], max_steps: int | None, rho: float | None,
          path: Path) -> Path:
    """Collapse step against GT gain, one labelled point per prior; never collapsed: hollow."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    for m in models:
        hollow = not m.get("collapsed", True)
        ax.scatter(m["collapse_step"], m["gt_gain"], s=50, edgecolors="tab:blue",
                   facecolors="none" if hollow else "tab:blue")
        ax.annotate(m["name"], (m["collapse_step"], m["gt_gain"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    if max_steps is not None and any(not m.get("collapsed", True) for m in models):
        ax.axvline(max_steps, color="grey", linestyle=":", label="max steps (never collapsed)")
        ax.legend(fontsize=8)
    ax.set_xlabel("collapse step (majority vote, label-free)")
    ax.set_ylabel("GT gain (validation accuracy)")
    ax.set_title("Prior zoo" + ("" if rho is None else f": Spearman rho = {rho:+.2f}"))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


EXPERIMENT = Experiment(
    name="zoo",
    summary="Build organism priors that differ in how well confidence tracks correctness (or "
            "in capacity); rank their collapse steps against their gains from ground-truth "
            "RL; write OUT/zoo.json and OUT/report.html (docs/lab.md).",
    run=run,
    presets=PRESETS,
    options=(
        Option("priors", "How many of the preset's priors (its first N; at least 2; default: "
               "all).", type=int),
        shared("seeds", help="Seeds of the runs, e.g. 0,1,2 (default: the preset's: 0, or "
                             "0,1,2 for capacity); several put each seed's zoo in "
                             "OUT/seed-<S>/."),
    ),
    section=section,
    resume_hint="run the same command again to continue (built priors and finished runs are "
                "kept)",
    shape=RESULT_SHAPE,
)
