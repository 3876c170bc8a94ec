"""`assay theory`: the study's sharpening theorem on a tabular policy (no neural network).

The study proves (its Theorem 1, with TTRL's majority-vote reward as the example) that
intrinsic-reward RL sharpens the policy onto its *initial majority answer*, right or
wrong. Here the policy is a softmax over K logits, one per answer, of a single question.
Each step samples groups of G answers; an answer's reward is 1 when it equals its
group's majority answer (ties go to the tied answer seen first in the group,
`Counter.most_common`'s order, as assay's `majority_vote` reward does); the GRPO
advantage is (r - group mean) / (group std + 1e-4), with the unbiased std, as assay's
trainer computes it; and the logits take a policy-gradient step
    theta += lr * mean over samples of A_i * (onehot(a_i) - softmax(theta)).
A run stops when one answer holds more than `THRESHOLD` of the mass, or after `steps`.

Two modes, both in every result:

- `expected` (`runs`, the theorem's setting): the exact expected update, summed over every
  possible group (each vector of answer counts, weighted by its multinomial probability;
  a tie is split evenly between the tied answers, which is what "first seen" averages
  to). No sampling noise, so a razor-thin majority is followed exactly as the theorem
  describes its drift.
- `sampled` (`sampled`): the same update estimated from `groups` sampled groups per
  step, seeded, as a trainer does. Sampling noise can carry a policy off a thin majority
  early on; where it does, that is a finding about sampling, and it is reported.

Pure numpy; seconds on a laptop.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from assay.lab.experiment import (
    ANY,
    FLAG,
    NUMBER,
    TEXT,
    WHOLE,
    LabError,
    Preset,
    Section,
    list_of,
    map_of,
    pick_preset,
    pyplot,
    run_progress,
    where,
    write_report,
    write_result,
)
from assay.lab.registry import Experiment, Option, shared

#: a run has converged when one answer holds more than this of the probability mass
THRESHOLD = 0.99
#: the trainer's epsilon in the GRPO advantage's denominator
STD_EPS = 1e-4
#: defaults: the organism's group size, a step size on the logits, the step limit, and the
#: sampled mode's groups per step (the organism's 16 prompts per step)
GROUP_SIZE, LR, STEPS, GROUPS = 8, 1.0, 3000, 16
#: the exact update enumerates every count vector; beyond this many it is refused, and
#: beyond this many counts in all (vectors x answers: its arrays' size)
MAX_GROUPS_ENUMERATED = 1_000_000
MAX_COUNTS_ENUMERATED = 10_000_000
#: trajectory points kept per run in theory.json (for the plot)
POINTS = 120


def _trajectory_problem(trajectory: dict[str, Any]) -> str | None:
    steps, probs = trajectory["steps"], trajectory["probs"]
    if len(steps) != len(probs):
        return f"{len(steps)} steps but {len(probs)} rows of probabilities"
    if len({len(row) for row in probs}) > 1:
        return "rows of probabilities of different lengths"
    return None


#: what OUT/theory.json holds that the report reads (`assay report` refuses a file without it)
_RUN = {"name": TEXT, "correct": WHOLE, "initial": list_of(NUMBER, 2), "final": list_of(NUMBER),
        "initial_majority": WHOLE, "converged_to": WHOLE, "converged": FLAG, "steps": WHOLE,
        "trajectory": where({"steps": list_of(NUMBER), "probs": list_of(list_of(NUMBER, 1), 1)},
                            _trajectory_problem)}
RESULT_SHAPE = {"runs": list_of(_RUN, 1), "sampled": list_of(_RUN), "settings": map_of(ANY)}

STUDY = (
    "Theorem 1: under majority-vote (TTRL) rewards the policy converges to a deterministic "
    "distribution on its initial majority answer, whether that answer is right or wrong; "
    "intrinsic rewards sharpen what the model already prefers and create nothing new."
)


# -- the initial distributions -----------------------------------------------------------


def _shape(k: int, top: float, top_at: int, second: float, second_at: int) -> list[float]:
    """`top` at `top_at`, `second` at `second_at`, the rest shared evenly by the others."""
    p = np.zeros(k)
    p[top_at], p[second_at] = top, second
    rest = [i for i in range(k) if i not in (top_at, second_at)]
    if rest:
        p[rest] = (1.0 - top - second) / len(rest)
    return (p / p.sum()).tolist()


def initial_distributions(k: int, seed: int = 0) -> list[dict[str, Any]]:
    """The default runs: named shapes (peaked, narrow and razor-thin majorities, the correct
    answer second), a near-uniform draw and random Dirichlet draws; each with the index
    of its correct answer. Every one has a single most probable answer."""
    u = 1.0 / k
    last = k - 1
    cases = [
        ("peaked, majority right", _shape(k, 0.70, 0, 0.30 / (k - 1), 1), 0),
        ("peaked, majority wrong", _shape(k, 0.60, last, 0.40 / (k - 1), 0), 0),
        ("correct a close second", _shape(k, u + 0.10, 1, u + 0.05 - 0.05 * (k == 2), 0)
         if k > 2 else [0.45, 0.55], 0),
        ("narrow majority (+0.01), right", _shape(k, u + 0.01, 0, u, 1) if k > 2
         else [0.51, 0.49], 0),
        ("narrow majority (+0.01), wrong", _shape(k, u + 0.01, last, u, 0) if k > 2
         else [0.49, 0.51], 0),
        ("razor-thin majority (+0.001), wrong", _shape(k, u + 0.001, 1, u, 0) if k > 2
         else [0.4995, 0.5005], 0),
    ]
    rng = np.random.default_rng(seed)
    near = rng.dirichlet(np.full(k, 200.0))
    cases.append(("near-uniform (Dirichlet 200)", near.tolist(), int(rng.integers(k))))
    for i in range(7):
        p = rng.dirichlet(np.ones(k))
        cases.append((f"random (Dirichlet 1) #{i + 1}", p.tolist(), int(rng.integers(k))))
    runs = []
    for name, p, correct in cases:
        order = np.sort(p)
        assert order[-1] > order[-2], f"{name}: no single majority"  # by construction
        runs.append({"name": name, "initial": [float(x) for x in p], "correct": correct})
    return runs


# -- the expected update -----------------------------------------------------------------


def count_vectors(k: int, g: int) -> np.ndarray:
    """Every way G samples fall on K answers, as count vectors (N, K)."""
    rows = []
    for bars in itertools.combinations(range(g + k - 1), k - 1):  # stars and bars
        edges = (-1, *bars, g + k - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(k)])
    return np.array(rows, dtype=np.int64)


def group_gradient(counts: np.ndarray, majority: int) -> np.ndarray:
    """The GRPO policy gradient on the logits of one group (given its counts and the
    answer that won the vote), averaged over its G samples."""
    g = counts.sum()
    r_bar = counts[majority] / g
    std = math.sqrt(g / (g - 1) * r_bar * (1 - r_bar)) if g > 1 else 0.0
    if std == 0.0:  # every sample agrees: no spread, no gradient
        return np.zeros(len(counts))
    advantage = np.full(len(counts), -r_bar / (std + STD_EPS))
    advantage[majority] = (1 - r_bar) / (std + STD_EPS)
    # sum_i A_i (e_{a_i} - pi) / G, where sum_i A_i = 0 cancels the pi term
    return counts * advantage / g


def groups_enumerated(k: int, g: int) -> int | None:
    """How many count vectors the exact update enumerates, C(g + k - 1, k - 1); None when
    more than `MAX_GROUPS_ENUMERATED` (found without computing a huge binomial: `math.comb`
    of a million answers in groups of a million takes minutes)."""
    m, n = min(k - 1, g), 1
    for i in range(1, m + 1):  # C(N, i) grows with i up to N / 2, and m <= N / 2
        n = n * (g + k - 1 - m + i) // i
        if n > MAX_GROUPS_ENUMERATED:
            return None
    return n


class ExpectedUpdate:
    """The exact expected GRPO update of a softmax policy over K answers, groups of G."""

    def __init__(self, k: int, g: int):
        n = groups_enumerated(k, g)
        if n is None or n * k > MAX_COUNTS_ENUMERATED:
            many = f"{n:,}" if n is not None else f"more than {MAX_GROUPS_ENUMERATED:,}"
            raise LabError(
                f"theory: {k} answers in groups of {g} make {many} possible groups, too many "
                f"to enumerate (at most {MAX_GROUPS_ENUMERATED:,}, and "
                f"{MAX_COUNTS_ENUMERATED:,} counts in all); use fewer answers or a smaller "
                "group"
            )
        self.counts = count_vectors(k, g)
        self.log_coef = (math.lgamma(g + 1)
                         - np.vectorize(math.lgamma)(self.counts + 1.0).sum(axis=1))
        # per group, the gradient with a tie split evenly between the tied answers
        directions = np.zeros(self.counts.shape)
        for row, c in enumerate(self.counts):
            tied = np.flatnonzero(c == c.max())
            directions[row] = np.mean([group_gradient(c, int(m)) for m in tied], axis=0)
        self.directions = directions

    def __call__(self, probs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        with np.errstate(divide="ignore"):
            log_p = np.log(probs)
        log_weight = self.log_coef + (self.counts * np.where(self.counts > 0, log_p, 0.0)).sum(1)
        return np.exp(log_weight) @ self.directions


class SampledUpdate:
    """The same update estimated from `groups` sampled groups of G (seeded)."""

    def __init__(self, k: int, g: int, groups: int):
        self.k, self.g, self.groups = k, g, groups

    def __call__(self, probs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        assert rng is not None
        total = np.zeros(self.k)
        for _ in range(self.groups):
            answers = rng.choice(self.k, size=self.g, p=probs)
            majority = Counter(answers.tolist()).most_common(1)[0][0]  # first seen wins a tie
            total += group_gradient(np.bincount(answers, minlength=self.k), int(majority))
        return total / self.groups


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def train(initial: list[float], update: Any, *, lr: float, steps: int,
          rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Policy-gradient steps on the logits from `initial` until one answer holds more than
    `THRESHOLD` or `steps` ran; the run's record (with a thinned trajectory)."""
    logits = np.log(np.asarray(initial, dtype=float))
    probs = softmax(logits)
    path = [probs]
    step = 0
    while step < steps and probs.max() <= THRESHOLD:
        logits = logits + lr * update(probs, rng)
        probs = softmax(logits)
        path.append(probs)
        step += 1
    keep = np.unique(np.linspace(0, len(path) - 1, min(POINTS, len(path))).round().astype(int))
    return {
        "initial": [float(x) for x in initial],
        "final": [float(x) for x in probs],
        "initial_majority": int(np.argmax(initial)),
        "converged_to": int(np.argmax(probs)),
        "converged": bool(probs.max() > THRESHOLD),
        "steps": step,
        "trajectory": {"steps": keep.tolist(),
                       "probs": [[round(float(x), 5) for x in path[i]] for i in keep]},
    }


def parse_answers(text: str) -> int:
    """`--answers K`: a whole number, at least 2; else one line."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or int(digits) < 2:  # "²" is a digit int() cannot read
        raise LabError(f"--answers must be a whole number, at least 2, got {text!r}")
    return int(digits)


#: `--preset`: group size and step limit (flags override them). `smoke` uses groups of 4,
#: whose exact update enumerates a few dozen count vectors instead of hundreds.
PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", "seconds, for tests: groups of 4, at most 1000 steps",
                    {"group_size": 4, "steps": 1000}),
    "default": Preset("default", f"groups of {GROUP_SIZE}, at most {STEPS} steps",
                      {"group_size": GROUP_SIZE, "steps": STEPS}),
}


def run(*, answers: int = 4, group_size: int | None = None, steps: int | None = None,
        lr: float | None = None, groups: int = GROUPS, seed: int = 0,
        out: str | Path = "runs/theory", preset: str = "default",
        quiet: bool = False) -> dict[str, Any]:
    """Every default initial distribution, in both modes; write and return the result."""
    chosen = pick_preset(PRESETS, preset, "theory")
    g = chosen["group_size"] if group_size is None else group_size
    steps = chosen["steps"] if steps is None else steps
    lr = LR if lr is None else lr
    check_options(answers=answers, group_size=g, steps=steps, lr=lr, groups=groups, seed=seed)
    expected = ExpectedUpdate(answers, g)
    sampled = SampledUpdate(answers, g, groups)
    modes: dict[str, list[dict[str, Any]]] = {"expected": [], "sampled": []}
    cases = initial_distributions(answers, seed)
    with run_progress("theory", 2 * len(cases), enabled=not quiet) as bar:
        for i, case in enumerate(cases):
            for mode, update in (("expected", expected), ("sampled", sampled)):
                bar.doing(f"{case['name']} ({mode})")
                rng = np.random.default_rng([seed, i]) if mode == "sampled" else None
                record = train(case["initial"], update, lr=lr, steps=steps, rng=rng)
                modes[mode].append({"name": case["name"], "correct": case["correct"],
                                    "mode": mode, **record})
                bar.advance()
    result = {
        "runs": modes["expected"],
        "sampled": modes["sampled"],
        "answers": answers,
        "preset": preset,
        "settings": {"group_size": g, "lr": lr, "max_steps": steps, "threshold": THRESHOLD,
                     "sampled_groups_per_step": groups, "seed": seed,
                     "tie_break": "the tied answer seen first in the group "
                                  "(Counter.most_common); the expected mode splits a tie "
                                  "evenly, which is what that averages to"},
        "summary": {mode: tally(runs) for mode, runs in modes.items()},
    }
    out = Path(out)
    write_result(out, "theory", result)
    write_report(out, "theory", section(result, out))
    return result


def check_options(*, answers: int, group_size: int, steps: int, lr: float, groups: int,
                  seed: int) -> None:
    """Every numeric option checked before anything runs: a bad one is one line naming it
    (a negative seed would otherwise end in numpy's traceback)."""
    whole = WHOLE.test
    if not whole(seed) or not 0 <= seed < 2**63:
        raise LabError(f"theory: option 'seed' must be in [0, 2**63), got {seed!r}")
    for name, value in (("answers", answers), ("group-size", group_size)):
        if not whole(value) or value < 2:
            raise LabError(f"--{name} must be at least 2, got {value!r}")
    if not whole(steps) or steps < 1:
        raise LabError(f"--steps must be at least 1, got {steps!r}")
    if not whole(groups) or groups < 1:
        raise LabError(f"theory: groups (sampled groups per step) must be at least 1, "
                       f"got {groups!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (
            lr > 0 and math.isfinite(lr)):
        raise LabError(f"--lr must be a positive number, got {lr!r}")


def tally(runs: list[dict[str, Any]]) -> dict[str, int]:
    """How many runs converged, to their initial majority, and to a wrong answer."""
    return {
        "runs": len(runs),
        "converged": sum(r["converged"] for r in runs),
        "to_initial_majority": sum(r["converged_to"] == r["initial_majority"] for r in runs),
        "majority_wrong": sum(r["initial_majority"] != r["correct"] for r in runs),
        "ended_on_wrong_answer": sum(r["converged_to"] != r["correct"] for r in runs),
    }


# -- the report ------------------------------------------------------------------------


def reading(result: dict[str, Any]) -> list[str]:
    lines = []
    for mode, runs in (("expected", result.get("runs") or []),
                       ("sampled", result.get("sampled") or [])):
        if not runs:
            continue
        t = tally(runs)
        how = ("exact expected update" if mode == "expected" else
               f"sampled update, {result['settings'].get('sampled_groups_per_step')} groups "
               "per step")
        line = (f"{how}: {t['to_initial_majority']} of {t['runs']} runs converged to their "
                f"initial majority answer ({t['converged']} passed {THRESHOLD} within "
                f"{result['settings'].get('max_steps')} steps); the initial majority was wrong "
                f"in {t['majority_wrong']}, and {t['ended_on_wrong_answer']} ended on a wrong "
                "answer.")
        off = [r for r in runs if r["converged_to"] != r["initial_majority"]]
        if off:
            line += " Left the initial majority: " + "; ".join(
                f"{r['name']} (to answer {r['converged_to']}, majority {r['initial_majority']}"
                f" by {_margin(r['initial']):.4f})" for r in off) + "."
        lines.append(line)
    runs = result.get("runs") or []
    thin = [r for r in runs if _margin(r["initial"]) < 0.02]
    if thin:
        lines.append("Narrow majorities (margin under 0.02) under the expected update: "
                     + "; ".join(f"{r['name']}: {r['steps']} steps" for r in thin) + ".")
    return lines


def _margin(p: list[float]) -> float:
    top = sorted(p)
    return top[-1] - top[-2]


def section(result: dict[str, Any], out: Path) -> Section:
    runs, sampled = result.get("runs") or [], result.get("sampled") or []
    figures = [_plot(runs, out / "theory.png")] if runs else []
    by_name = {r["name"]: r for r in sampled}
    rows = []
    for r in runs:
        s = by_name.get(r["name"])
        rows.append([r["name"], " ".join(f"{x:.3f}" for x in r["initial"]), str(r["correct"]),
                     str(r["initial_majority"]), f"{r['converged_to']} ({r['steps']} steps)",
                     f"{s['converged_to']} ({s['steps']} steps)" if s else "n/a"])
    return Section(
        title="The sharpening theorem on a tabular policy",
        reading=reading(result),
        study=STUDY,
        figures=figures,
        columns=["initial distribution", "initial probabilities", "correct", "initial majority",
                 "expected update: converged to", "sampled: converged to"],
        rows=rows,
        settings={"answers": result.get("answers"), **(result.get("settings") or {})},
    )


def _plot(runs: list[dict[str, Any]], path: Path) -> Path:
    """One panel per run: each answer's probability against step (bold: correct answer)."""
    plt = pyplot()
    cols = 4
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), dpi=100,
                             squeeze=False)
    for ax, r in zip(axes.flat, runs, strict=False):
        steps = r["trajectory"]["steps"]
        probs = np.array(r["trajectory"]["probs"])
        for a in range(probs.shape[1]):
            right = a == r["correct"]
            ax.plot(steps, probs[:, a], linewidth=2.2 if right else 1.0,
                    color="black" if right else None, label="correct" if right else None)
        verdict = "right" if r["converged_to"] == r["correct"] else "wrong"
        ax.set_title(f"{r['name']}\n-> answer {r['converged_to']} ({verdict})", fontsize=7.5)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("step (exact expected update)", fontsize=9)
    fig.supylabel("probability of each answer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


EXPERIMENT = Experiment(
    name="theory",
    summary="A tabular policy over K answers trained with majority-vote GRPO from many "
            "initial distributions; write OUT/theory.json and OUT/report.html (docs/lab.md).",
    run=run,
    presets=PRESETS,
    options=(
        Option("answers", "Answers of the tabular policy (at least 2).", default="4",
               metavar="K", parse=parse_answers),
        Option("group_size", "Samples per group (default: the preset's, 8).", type=int),
        Option("steps", "Most steps per run (default: the preset's, 3000).", type=int),
        Option("lr", "Learning rate on the logits (default 1.0).", type=float),
        shared("seed", help="Seed of the random initial distributions and the sampled runs."),
    ),
    section=section,
    resume_hint="run the same command again (it takes seconds)",
    shape=RESULT_SHAPE,
)
