"""`assay eval`: how well a model does on an env's tasks, without training it.

The first question about a model and a task (is there signal to learn from?) and the
measuring stick before and after a run (`assay eval --model runs/x/checkpoints/last`).
Per task it draws one greedy completion and K sampled ones, verifies them all, and
reports, each with a 95% bootstrap interval over tasks (`intervals.py`):

- greedy accuracy;
- pass@1, the mean share of correct samples;
- pass@k for k = 1, 2, 4, ..., K, by the unbiased estimator of Chen et al. (2021),
  1 − C(n−c, k) / C(n, k) with n samples of which c are correct;
- maj@K, whether the most frequent answer (under the env's answer equivalence) is right;
- verdict counts by status, the answer rate, completion lengths and the truncated share,
  overall and per difficulty where the env labels one (`Environment.difficulty`).

The tasks are, by default, those a training run with the same seed validates on, so an
evaluation before and after a run measures the same tasks.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.errors import AssayError
from assay.lab.experiment import (
    NUMBER,
    TEXT,
    WHOLE,
    Section,
    map_of,
    where,
    write_report,
    write_result,
)
from assay.lab.intervals import mean_with_interval

COMMAND = "evaluate"


class EvalError(AssayError, ValueError):
    """A usage problem of `assay eval` (bad -n or --samples); one line."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of a task with `c` correct among `n` samples: the chance that
    k of the n, drawn without replacement, hold at least one correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:  # every draw of k includes a correct one
        return 1.0
    # C(n−c, k) / C(n, k) as a product, which stays exact-ish where the binomials overflow
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def majority_correct(keys: Sequence[Hashable | None], correct: Sequence[bool]) -> bool:
    """maj@K of one task: the most frequent answer key (ties go to the one seen first;
    completions without an answer do not vote) is right. No answer at all: wrong."""
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return False
    top = max(counts.values())
    winner = next(k for k in keys if k is not None and counts[k] == top)
    return bool(correct[list(keys).index(winner)])


def ks_for(samples: int) -> list[int]:
    """The k reported for K samples: powers of two below K, and K itself."""
    ks, k = [], 1
    while k < samples:
        ks.append(k)
        k *= 2
    return [*ks, samples]


@dataclass
class Sample:
    """One completion of a task: its text, length, whether it ended, and its verdict."""

    text: str
    tokens: int
    finished: bool
    status: str
    correct: bool
    key: Hashable | None


def evaluate(
    *,
    model: str,
    env: str | None,
    n: int = 100,
    samples: int = 4,
    seed: int = 0,
    sets: dict[str, str] | None = None,
    tasks_file: str | None = None,
    batch_size: int = 16,
    out: str | Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Evaluate `model` on `n` tasks of `env` with `samples` samples each; return the
    result (and write it, the completions and a report into `out` when given)."""
    if n < 1 or samples < 1 or batch_size < 1:  # at once, before torch is imported
        raise EvalError("assay eval: -n, --samples and --batch-size must be at least 1")
    from assay.envs import get_env
    from assay.envs.episode import require_single_turn
    from assay.training.config import model_hints, resolve

    if env is None:  # the env the model was built for (the organism's, SmolLM2's), else the default
        env = model_hints(model).get("env")
    config = resolve(sets=route_sets(sets or {}), flags={"model": model, "env": env})
    environment = get_env(config.env, **config.env_options)
    require_single_turn(environment, "assay eval")
    # torch from here on: a bad setting above is reported at once
    from assay.training.policy import (
        device_name,
        encode_prompt,
        load_policy,
        resolve_model_path,
        uses_chat_template,
    )
    from assay.training.rollout import HFEngine
    from assay.training.trainer import prompt_note, training_tasks

    try:
        tasks = training_tasks(environment, tasks_file, n, 7_919 + seed)[:n]
        if note := prompt_note(environment, tasks, tasks_file):
            print(f"assay: {note}", file=sys.stderr)
        environment.start_workers()  # forked before the model loads: they hold none of it
        start = time.perf_counter()
        path = resolve_model_path(config.model, config.prior, quiet=quiet)
        policy, tokenizer = load_policy(path, device=device_name(config.device), dtype=config.dtype)
        chat = uses_chat_template(tokenizer, config.chat_template)
        engine = HFEngine(policy, tokenizer)
        load_seconds = time.perf_counter() - start

        start = time.perf_counter()
        greedy, sampled = [], []
        with _progress(len(tasks), enabled=not quiet) as advance:
            for first in range(0, len(tasks), batch_size):
                chunk = tasks[first : first + batch_size]
                ids = [encode_prompt(tokenizer, t.prompt, chat) for t in chunk]
                greedy += [g[0] for g in engine.generate(
                    ids, 1, greedy=True, max_new_tokens=config.max_new_tokens)]
                sampled += engine.generate(
                    ids, samples, temperature=config.temperature, top_p=config.top_p,
                    max_new_tokens=config.max_new_tokens, seed=seed * 1_000_003 + first,
                )
                advance(len(chunk))
        sample_seconds = time.perf_counter() - start

        def decode(gen) -> str:
            return tokenizer.decode(gen.token_ids, skip_special_tokens=True)

        pairs = [(t, decode(g)) for t, g in zip(tasks, greedy, strict=True)]
        pairs += [(t, decode(g)) for t, gens in zip(tasks, sampled, strict=True) for g in gens]
        start = time.perf_counter()
        verdicts = environment.verify_many(pairs)
        verify_seconds = time.perf_counter() - start
        gens = list(greedy) + [g for row in sampled for g in row]
        # maj@K and the answer rate read the samples' answers; a small model repeats
        # itself, and an env's answer key may be costly (math's runs under a time limit)
        keys = answer_keys(environment, pairs[len(tasks):])
        rows = [
            Sample(text, len(gen.token_ids), gen.finished, v.status, v.correct, key)
            for (task, text), gen, v, key in zip(
                pairs, gens, verdicts, [None] * len(tasks) + keys, strict=True)
        ]
        per_task = [
            (task, rows[i], rows[len(tasks) + i * samples : len(tasks) + (i + 1) * samples])
            for i, task in enumerate(tasks)
        ]
        result = summarise(per_task, samples, environment)
    finally:
        environment.close()
    tokens = sum(r.tokens for r in rows)
    result.update(
        model=config.model, model_path=path, env=config.env, env_options=config.env_options,
        seed=seed, samples=samples, tasks_file=tasks_file, chat_template=chat,
        settings={k: getattr(config, k) for k in
                  ("temperature", "top_p", "max_new_tokens", "dtype", "device")},
        seconds={"load": round(load_seconds, 1), "sample": round(sample_seconds, 1),
                 "verify": round(verify_seconds, 1)},
        tokens_per_second=round(tokens / max(sample_seconds, 1e-9), 1),
        examples=[{"prompt": t.prompt, "greedy": g.text} for t, g, _ in per_task[:3]],
    )
    if out is not None:
        write(Path(out), result, per_task)
    return result


#: the `assay train` settings an evaluation reads (the rest of `TrainConfig` it has no use for)
EVAL_SETTINGS = ("temperature", "top_p", "max_new_tokens", "chat_template", "device", "dtype")
#: settings eval takes as flags of its own
EVAL_FLAGS = {"model": "--model", "env": "--env", "seed": "--seed", "val_file": "--tasks",
              "val_size": "-n", "val_samples": "--samples"}


def route_sets(sets: dict[str, str]) -> dict[str, str]:
    """`--set` of `assay eval`: a sampling setting (`EVAL_SETTINGS`) by its name, an env
    option by `env.NAME` or, where no setting has that name, by its own. A training
    setting eval does not read is refused in one line, not ignored."""
    from assay.training.config import TrainConfig

    fields = set(TrainConfig.__dataclass_fields__)
    for key in sorted(k for k in sets if k in fields and k not in EVAL_SETTINGS):
        instead = f"use {EVAL_FLAGS[key]}" if key in EVAL_FLAGS else "an evaluation does not read it"
        raise EvalError(f"--set {key}: a training setting; {instead} (eval's settings: "
                        f"{', '.join(EVAL_SETTINGS)}, and env options)")
    return {(k if k in fields or "." in k else f"env.{k}"): v for k, v in sets.items()}


def summarise(
    per_task: list[tuple[Any, Sample, list[Sample]]], samples: int, env: Any
) -> dict[str, Any]:
    """The figures of one evaluation from its (task, greedy, samples) triples."""
    result = figures(per_task, samples)
    groups: dict[str, list] = defaultdict(list)
    for triple in per_task:
        label = env.difficulty(triple[0])
        if label is not None:
            groups[str(label)].append(triple)
    if len(groups) > 1:
        result["by_difficulty"] = {
            label: figures(triples, samples, brief=True) for label, triples in sorted(groups.items())
        }
    return result


def figures(per_task: list, samples: int, *, brief: bool = False) -> dict[str, Any]:
    greedy = [float(g.correct) for _, g, _ in per_task]
    counts = [sum(s.correct for s in row) for _, _, row in per_task]
    majority = [float(majority_correct([s.key for s in row], [s.correct for s in row]))
                for _, _, row in per_task]
    out: dict[str, Any] = {
        "tasks": len(per_task),
        "greedy_accuracy": mean_with_interval(greedy),
        "pass_at_k": {str(k): mean_with_interval([pass_at_k(samples, c, k) for c in counts])
                      for k in ks_for(samples)},
        f"maj@{samples}": mean_with_interval(majority),
    }
    if brief:
        return out
    greedy_rows = [g for _, g, _ in per_task]
    sampled = [s for _, _, row in per_task for s in row]
    out["verdicts"] = {
        "greedy": dict(Counter(g.status for g in greedy_rows)),
        "sampled": dict(Counter(s.status for s in sampled)),
    }
    out["answer_rate"] = sum(s.key is not None for s in sampled) / max(1, len(sampled))
    out["mean_length"] = {
        "greedy": sum(g.tokens for g in greedy_rows) / len(greedy_rows),
        "sampled": sum(s.tokens for s in sampled) / max(1, len(sampled)),
    }
    every = greedy_rows + sampled
    out["truncated"] = sum(not s.finished for s in every) / len(every)
    return out


def answer_keys(env: Any, pairs: list[tuple[Any, str]]) -> list[Hashable | None]:
    """Each completion's answer under the env's equivalence (None: no answer), computed
    once per distinct (task, text) pair."""
    from assay.rewards.base import safe_extract

    known: dict[tuple[int, str], Hashable | None] = {}
    for task, text in pairs:
        if (id(task), text) not in known:
            answer = safe_extract(env, text)
            try:
                known[id(task), text] = None if answer is None else env.answer_key(task, answer)
            except Exception:  # noqa: BLE001 - a key that breaks on odd text: no answer
                known[id(task), text] = None
    return [known[id(task), text] for task, text in pairs]


class _progress:
    """A bar over tasks on stderr (rich), off when quiet."""

    def __init__(self, total: int, enabled: bool):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress("[bold]eval", BarColumn(), MofNCompleteColumn(), "tasks",
                            TimeRemainingColumn(), console=Console(stderr=True),
                            disable=not enabled)
        self.task = self.bar.add_task("eval", total=total)

    def __enter__(self):
        from assay.heartbeat import heartbeat

        self.bar.__enter__()
        self.beat = heartbeat(self.bar, "eval (tasks)").__enter__()  # lines when no terminal
        return lambda k: self.bar.update(self.task, advance=k)

    def __exit__(self, *exc):
        self.beat.__exit__(*exc)
        return self.bar.__exit__(*exc)


# -- output ----------------------------------------------------------------------------


def interval_text(figure: dict[str, float]) -> str:
    return f"{figure['mean']:.3f} [{figure['low']:.2f}, {figure['high']:.2f}]"


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """(what, value) rows of the one-screen table; per-difficulty rows follow."""
    k = result["samples"]
    rows = [["greedy accuracy", interval_text(result["greedy_accuracy"])]]
    rows += [[f"pass@{key}" + (" (mean over samples)" if key == "1" else ""),
              interval_text(value)] for key, value in result["pass_at_k"].items()]
    rows.append([f"maj@{k}", interval_text(result[f"maj@{k}"])])
    for kind in ("greedy", "sampled"):
        counts = ", ".join(f"{s} {c}" for s, c in sorted(result["verdicts"][kind].items()))
        rows.append([f"verdicts ({kind})", counts])
    rows.append(["answer rate (sampled)", f"{result['answer_rate']:.3f}"])
    lengths = result["mean_length"]
    rows.append(["mean length, tokens", f"greedy {lengths['greedy']:.0f}, "
                 f"sampled {lengths['sampled']:.0f}; truncated {result['truncated']:.2f}"])
    for label, sub in result.get("by_difficulty", {}).items():
        rows.append([f"  {label} ({sub['tasks']} tasks)",
                     f"greedy {sub['greedy_accuracy']['mean']:.3f}, "
                     f"pass@1 {sub['pass_at_k']['1']['mean']:.3f}, "
                     f"pass@{k} {sub['pass_at_k'][str(k)]['mean']:.3f}, "
                     f"maj@{k} {sub[f'maj@{k}']['mean']:.3f}"])
    return rows


def print_table(result: dict[str, Any]) -> None:
    """The one-screen table on stdout."""
    from rich.console import Console
    from rich.table import Table

    title = (f"{result['model']} on {result['env']}: {result['tasks']} tasks x "
             f"{result['samples']} samples (95% intervals over tasks)")
    table = Table(title=title, show_header=False)
    table.add_column("figure")
    table.add_column("value")
    for row in table_rows(result):
        table.add_row(*row)
    Console(width=110).print(table)
    s = result["seconds"]
    print(f"{result['tokens_per_second']:.0f} tokens/s sampling; load {s['load']} s, "
          f"sample {s['sample']} s, verify {s['verify']} s")


#: a share: a figure between 0 and 1
_SHARE = where(NUMBER, lambda value: None if 0 <= value <= 1 else "not between 0 and 1")
_INTERVAL = {"mean": _SHARE, "low": _SHARE, "high": _SHARE}
#: what `assay report` checks evaluate.json against before drawing it again
RESULT_SHAPE = {"tasks": WHOLE, "samples": WHOLE, "model": TEXT, "env": TEXT,
                "greedy_accuracy": _INTERVAL, "pass_at_k": map_of(_INTERVAL),
                "answer_rate": _SHARE, "truncated": _SHARE}

#: what `write` puts in OUT (an OUT holding anything else is refused by `assay eval`)
FILES = frozenset({"evaluate.json", "completions.jsonl", "report.html"})


def write(out: Path, result: dict[str, Any], per_task: list) -> None:
    """`OUT/evaluate.json`, `OUT/completions.jsonl` (every completion and its verdict) and
    `OUT/report.html`."""
    write_result(out, COMMAND, result)
    with open(out / "completions.jsonl", "w", encoding="utf-8") as f:
        for task, greedy, row in per_task:
            for kind, sample in [("greedy", greedy)] + [("sampled", s) for s in row]:
                f.write(json.dumps({"task": task.id, "kind": kind, "status": sample.status,
                                    "tokens": sample.tokens, "completion": sample.text}) + "\n")
    write_report(out, COMMAND, section(result, out))


def section(result: dict[str, Any], out: Path) -> Section:
    """The report page's section (also what `assay report OUT` re-renders)."""
    k = result["samples"]
    p1, pk = result["pass_at_k"]["1"], result["pass_at_k"][str(k)]
    reading = [
        f"{result['model']} answered {result['greedy_accuracy']['mean']:.1%} of "
        f"{result['tasks']} {result['env']} tasks correctly when decoding greedily; a sample "
        f"is correct {p1['mean']:.1%} of the time (pass@1), and {pk['mean']:.1%} of tasks "
        f"have a correct one among {k} samples (pass@{k}).",
        signal_reading(p1["mean"]),
    ]
    return Section(
        title=f"Evaluation: {result['model']} on {result['env']}",
        reading=reading,
        study="The study trains where the base model has signal: a task it sometimes, but "
              "not always, solves (sampled accuracy well above 0 and below 1).",
        columns=["figure", "value"],
        rows=table_rows(result),
        settings={k: result[k] for k in ("model", "model_path", "env", "env_options", "seed",
                                        "samples", "chat_template", "settings", "seconds")},
    )


def signal_reading(pass1: float) -> str:
    """What pass@1 says about training on these tasks with GRPO."""
    if pass1 < 0.05:
        return ("Almost no sample is correct: GRPO's groups would nearly all score the "
                "same, leaving little to learn from. Choose easier tasks or a stronger model.")
    if pass1 > 0.9:
        return "Nearly every sample is correct: there is little left to gain on these tasks."
    return ("Samples are sometimes right and sometimes wrong: groups of completions will "
            "differ in reward, which is what GRPO learns from.")
