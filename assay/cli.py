"""The `assay` command.

Usage errors (an unknown env, a file that cannot be read, a bad option: every
`AssayError` raised while a command sets up) print one line and exit with status 2;
everything else is reported in the output and exits 0.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from assay.envs import (
    Environment,
    OptionError,
    Task,
    TaskFileError,
    get_env,
    list_envs,
    parse_assignments,
)
from assay.errors import AssayError
from assay.verifiers import STATUSES, Verdict

if TYPE_CHECKING:
    from assay.lab.registry import Experiment


class UsageError(click.ClickException):
    """One line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"assay: error: {self.format_message()}", err=True)


def _one_line(message: str) -> str:
    """`message` with every line break escaped: a message naming a file or a field named
    by the user (a folder called "a\nb") stays one line."""
    return "".join(repr(c)[1:-1] if f"x{c}y".splitlines() != [f"x{c}y"] else c for c in message)


def _make_env(name: str, assignments: tuple[str, ...]) -> Environment:
    try:
        return get_env(name, **parse_assignments(assignments))
    except AssayError as exc:
        raise UsageError(str(exc)) from None


class _Commands(click.Group):
    """The commands defined in this file, and one per lab experiment. A plug-in's command
    is made at start, so that a broken plug-in is a warning line whatever the command; a
    built-in experiment's only when it runs or `--help` lists it: importing all seven
    modules (numpy, plotting helpers) was 0.2 s of every command's start."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from assay.lab.registry import BUILTIN

        return sorted({*self.commands, *(name.replace("_", "-") for name in BUILTIN)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from assay.lab.registry import BUILTIN, builtin_experiment

        key = cmd_name.replace("-", "_")
        if cmd_name not in self.commands and key in BUILTIN:  # (adds it as `collapse-step`)
            self.add_command(_experiment_command(builtin_experiment(key)))
        return self.commands.get(cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="assay")
def cli() -> None:
    """assay: RL for language models with rewards grounded in computation."""


@cli.command("envs")
@click.argument("env_name", metavar="[ENV]", required=False)
@click.option("--all", "show_all", is_flag=True,
              help="List every member of each family (rg:<dataset> for each dataset).")
def envs_command(env_name: str | None, show_all: bool) -> None:
    """List environments with a one-line description each; with ENV, its options.

    A family of envs (reasoning-gym's datasets, rg:<dataset>) is one line unless --all.
    """
    if env_name is not None:
        from assay.envs.registry import get_env_class
        from assay.options import option_table

        try:
            cls = get_env_class(env_name)
        except AssayError as exc:
            raise UsageError(str(exc)) from None
        click.echo(f"{env_name}: {cls.description}")
        rows = option_table(cls.Options)
        if not rows:
            click.echo("no options")
        width = max((len(name) for name, _, _ in rows), default=0)
        kinds = max((len(kind) for _, kind, _ in rows), default=0)
        for name, kind, default in rows:
            click.echo(f"  {name:<{width}}  {kind:<{kinds}}  {default}")
        return
    listed = list_envs(expand=show_all)
    width = max([12, *(len(name) for name in listed)])
    for name, description in listed.items():
        click.echo(f"{name:<{width}} {description}")


@cli.command("sample")
@click.argument("env_name", metavar="ENV")
@click.option("-n", "count", default=5, show_default=True, help="Number of tasks.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Env option.")
def sample_command(env_name: str, count: int, seed: int, assignments: tuple[str, ...]) -> None:
    """Print procedurally generated tasks of ENV as JSONL."""
    if count < 0:
        raise UsageError("-n must be at least 0")
    if seed < 0:  # refused as in a training config, where a negative seed would repeat a run
        raise UsageError("--seed must be at least 0")
    env = _make_env(env_name, assignments)
    try:
        tasks = env.generate(count, seed=seed)
    except (ValueError, NotImplementedError) as exc:
        raise UsageError(f"{env_name}: {exc}") from None
    out = sys.stdout
    for task in tasks:
        out.write(json.dumps(task.to_dict()) + "\n")


def _read_pairs(env: Environment, path: str) -> list[tuple[Task, str] | Verdict]:
    """Each input line (or Parquet row) becomes a (task, completion) pair, or an `error`
    verdict naming the line."""
    from assay.envs.jsonl import parse_line, read_lines
    from assay.envs.parquet import is_parquet, pair_of_row, read_rows
    from assay.envs.taskfile import validate_fields

    items: list[tuple[Task, str] | Verdict] = []
    name = "<stdin>" if path == "-" else path
    if is_parquet(path):
        try:
            rows = read_rows(path)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        except AssayError as exc:  # not Parquet, or pyarrow missing
            raise UsageError(_one_line(str(exc))) from None
        for rowno, row in enumerate(rows, start=1):
            fields, completion, problem = pair_of_row(row, env.name)
            found = validate_fields(env, fields) if problem is None else []
            if problem is not None or found:
                problem = problem or f"task.{found[0]}"
                items.append(Verdict.error(f"{name}:{rowno}: {problem}"[:1000]))
                continue
            items.append((env.make_task(fields, id=f"{name}:{rowno}"), completion))
        return items
    try:
        lines = list(read_lines(path))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    for lineno, line in lines:
        where = f"{name}:{lineno}"
        if line is None:
            items.append(Verdict.error(f"{where}: not UTF-8 text"))
            continue
        if not line.strip():
            items.append(Verdict.error(f"{where}: empty line"))
            continue
        row, problem = parse_line(line)
        if problem is not None:
            items.append(Verdict.error(f"{where}: {problem}"))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("task"), dict):
            items.append(Verdict.error(f"{where}: task: expected an object with a 'task' object"))
            continue
        if not isinstance(row.get("completion"), str):
            items.append(Verdict.error(f"{where}: completion: expected a string"))
            continue
        problems = validate_fields(env, row["task"])
        if problems:
            items.append(Verdict.error(f"{where}: task.{problems[0]}"[:1000]))
            continue
        items.append((env.make_task(row["task"], id=where), row["completion"]))
    return items


#: the most worker processes `assay verify --workers` starts (the code env's `workers` too)
MAX_WORKERS = 1024


@cli.command("verify")
@click.argument("env_name", metavar="ENV")
@click.argument("input_path", metavar="INPUT.jsonl")
@click.option("-o", "--output", "output_path", default="-", help="Output JSONL (default: stdout).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: cores).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Env option.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None,
              metavar="[ADDRESS]",
              help="Verify on a Ray cluster (ADDRESS, e.g. auto or ray://host:10001; alone: a "
                   "local Ray instance). Needs the ray extra; docs/sandbox.md.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def verify_command(
    env_name: str,
    input_path: str,
    output_path: str,
    workers: int | None,
    assignments: tuple[str, ...],
    ray_address: str | None,
    quiet: bool,
) -> None:
    """Verify completions: each input line is {"task": {...}, "completion": "..."}.

    Each output line, in input order, is {"score", "status", "detail"}. A summary
    (counts per status, throughput) goes to stderr.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    env = _make_env(env_name, assignments)
    if workers is not None and not 1 <= workers <= MAX_WORKERS:  # 10^5 processes hang a machine
        raise UsageError(f"--workers must be from 1 to {MAX_WORKERS}")
    try:
        env.check_available()  # a missing solver or toolchain: one line, before any work
    except AssayError as exc:
        raise UsageError(str(exc)) from None
    start = time.perf_counter()
    items = _read_pairs(env, input_path)
    try:
        out = sys.stdout if output_path == "-" else open(output_path, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output_path}: {exc.strerror}") from None

    pairs = [item for item in items if isinstance(item, tuple)]
    console = Console(stderr=True)
    show = not quiet and console.is_terminal and len(pairs) >= 200
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not show,
        ) as progress:
            bar = progress.add_task(f"verifying {env_name}", total=len(pairs))
            if ray_address is not None:
                from assay.envs.base import parse_assignments
                from assay.integrations.ray import verify_on_ray

                verdicts = iter(verify_on_ray(
                    env_name, parse_assignments(assignments), pairs,
                    address=None if ray_address == "local" else ray_address,
                    on_result=lambda i, v: progress.advance(bar),
                ))
            else:
                verdicts = iter(
                    env.verify_many(
                        pairs,  # no more workers than pairs: each would only start and stop
                        workers=max(1, min(workers or os.cpu_count() or 1, len(pairs))),
                        on_result=lambda i, v: progress.advance(bar),
                    )
                )
    except AssayError as exc:  # Ray missing or unreachable: one line
        raise UsageError(_one_line(str(exc))) from None
    finally:  # Ctrl-C included: no worker or jail outlives the command
        env.close()

    counts: Counter[str] = Counter()
    try:
        with out:
            for item in items:
                verdict = item if isinstance(item, Verdict) else next(verdicts)
                counts[verdict.status] += 1
                out.write(json.dumps(verdict.to_dict()) + "\n")
            out.flush()
    except OSError as exc:  # a full disk, a closed pipe: one line, not a traceback
        where = "<stdout>" if output_path == "-" else output_path
        raise UsageError(f"cannot write {where}: {exc.strerror or exc}") from None
    elapsed = time.perf_counter() - start
    summary = ", ".join(f"{s} {counts[s]}" for s in STATUSES)
    rate = len(items) / elapsed if elapsed > 0 else float("inf")
    click.echo(f"{len(items)} verified in {elapsed:.2f} s ({rate:.0f}/s): {summary}", err=True)


@cli.command("schema")
@click.argument("env_name", metavar="ENV")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Env option.")
def schema_command(env_name: str, assignments: tuple[str, ...]) -> None:
    """Print the JSON Schema of ENV's task fields."""
    env = _make_env(env_name, assignments)
    click.echo(json.dumps(env.task_schema, indent=2))


@cli.command("validate")
@click.argument("env_name", metavar="ENV")
@click.argument("task_file", metavar="TASKS.jsonl")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Env option (the options the tasks will be trained or verified with).")
def validate_command(env_name: str, task_file: str, assignments: tuple[str, ...]) -> None:
    """Check a task file against ENV's schema: one `file:line: field: message` per problem.

    Exits 1 when any line is bad, or when the file holds no task (train, eval and audit
    refuse such a file).
    """
    env = _make_env(env_name, assignments)
    try:
        tasks = env.load(task_file)
    except OSError as exc:
        raise UsageError(f"cannot read {task_file}: {exc.strerror}") from None
    except TaskFileError as exc:
        for problem in exc.problems:
            click.echo(problem)
        click.echo(f"{len(exc.tasks)} good task(s), {exc.lines} bad line(s), "
                   f"{len(exc.problems)} problem(s)", err=True)
        sys.exit(1)
    except AssayError as exc:  # an audit that needs what is not installed (smt: z3)
        raise UsageError(str(exc)) from None
    finally:
        env.close()  # an audit's workers (smt) end with the command
    if not tasks:
        click.echo(f"{task_file} holds no tasks (only blank lines and comments)", err=True)
        sys.exit(1)
    click.echo(f"{len(tasks)} good task(s), 0 problems", err=True)


# -- training commands (assay train, assay prior) are added below this line ---------


@cli.command("train")
@click.option("--env", "env_name", default=None, help="Environment (default: countdown).")
@click.option("--reward", default=None, help="Reward: a name or `0.5*verifier + 0.5*self_certainty`.")
@click.option("--model", default=None, help="organism[:preset], a local HF model folder, or a hub id.")
@click.option("--steps", type=int, default=None, help="Optimizer steps.")
@click.option("--out", default=None, help="Output folder (metrics.jsonl, config.yaml, checkpoints/).")
@click.option("--seed", type=int, default=None, help="Random seed.")
@click.option("--config", "config_file", default=None, help="YAML file of options.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Option (env.KEY for env options, prior.KEY for the organism's prior).")
@click.option("--monitor", default=None, metavar="NAME,...",
              help="Rewards to log every step (monitor/NAME) without training on them.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--backend", type=click.Choice(["assay", "trl"]), default="assay",
              show_default=True,
              help="assay's own GRPO trainer, or TRL's GRPOTrainer with assay's reward (docs/integrations.md).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_command(env_name, reward, model, steps, out, seed, config_file, assignments, monitor,
                  resume, backend, quiet) -> None:
    """Train a policy with GRPO; see docs/training.md."""
    from assay.envs.base import parse_assignments
    from assay.training import resolve  # not the trainer yet: a usage error is found without torch
    from assay.training.config import read_yaml

    flags = {"env": env_name, "reward": reward, "model": model, "steps": steps, "out": out,
             "seed": seed, "monitor": monitor}
    if backend == "trl":
        _train_with_trl(flags, assignments, config_file, resume, quiet)
        return
    try:
        sets = parse_assignments(assignments)
        base = None
        if resume:
            saved = Path(out or "runs/assay") / "config.yaml"
            base = read_yaml(str(saved)) if saved.exists() else None
        config = resolve(file=config_file, sets=sets, flags=flags, base=base,
                         base_file=str(Path(out or "runs/assay") / "config.yaml"))
        from assay.rewards import get_reward

        get_reward(config.reward)  # an unknown reward fails before any model is loaded
        get_env(config.env, **config.env_options).check_available()
        from assay.training import Trainer

        trainer = Trainer(config, resume=resume, quiet=quiet)
    except AssayError as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("assay: interrupted before training started", err=True)
        sys.exit(130)
    for note in trainer.notes:
        click.echo(f"assay: {note}", err=True)
    try:
        summary = trainer.train()
    except AssayError as exc:  # a reward or env that breaks mid-run: one line, not a traceback
        raise UsageError(f"step {trainer.step_count + 1}: {exc}") from None
    except KeyboardInterrupt:  # Ctrl-C: the conventional 128 + SIGINT, and a summary on disk
        click.echo(
            f"assay: interrupted after step {trainer.step_count}; {config.out}/summary.json "
            "is marked interrupted (continue with --resume)",
            err=True,
        )
        sys.exit(130)
    collapse = summary["collapse"]
    metrics = Path(config.out) / "metrics.jsonl"
    # a 0-step run writes no metrics: name what it did write
    where = metrics if metrics.exists() else f"{config.out} (config.yaml and summary.json)"
    note = f"; collapse at step {collapse['step']} ({collapse['signal']})" if collapse else ""
    click.echo(f"trained {summary['steps']} steps -> {where}{note}", err=True)


def _train_with_trl(flags: dict[str, Any], assignments: tuple[str, ...], config_file: str | None,
                    resume: bool, quiet: bool) -> None:
    """`assay train --backend trl`: TRL's GRPOTrainer with the same flags."""
    from assay.envs.base import parse_assignments
    from assay.integrations import trl as trl_backend
    from assay.rewards import get_reward
    from assay.training import resolve
    from assay.training.config import read_yaml
    from assay.training.folder_lock import check_writable

    try:
        if resume:
            raise UsageError("--resume: the TRL backend does not resume runs")
        sets = parse_assignments(assignments)
        config = resolve(file=config_file, sets=sets, flags=flags)
        if config.monitor:
            raise UsageError("--monitor: the TRL backend logs only the trained reward")
        chosen = set(sets) | (set(read_yaml(config_file)) if config_file else set())
        ignored = trl_backend.unsupported_options(config, chosen)
        if ignored:  # refused, not dropped: the run would not be the one asked for
            raise UsageError(f"the TRL backend has no counterpart for {', '.join(ignored)} "
                             "(docs/integrations.md); leave it out, or train with --backend assay")
        trl_backend.check_reward(get_reward(config.reward))
        environment = get_env(config.env, **config.env_options)
        environment.check_available()
        trl_backend.require_trl()
        check_writable(config.out)
        summary = trl_backend.train(config, quiet=quiet)
    except AssayError as exc:
        raise UsageError(_one_line(str(exc))) from None
    except KeyboardInterrupt:
        click.echo("assay: interrupted (the TRL backend does not resume; start again)", err=True)
        sys.exit(130)
    click.echo(f"trained {summary['steps']} steps with TRL -> {config.out}/metrics.jsonl", err=True)


@cli.command("eval")
@click.option("--model", default="organism", show_default=True,
              help="organism[:preset], smollm2, a .gguf file, a local HF folder or a run's checkpoint.")
@click.option("--env", "env_name", default=None,
              help="Environment (default: the one the model was built for, else countdown).")
@click.option("-n", "n", type=int, default=100, show_default=True, help="Tasks.")
@click.option("--samples", type=int, default=4, show_default=True,
              help="Sampled completions per task (K of pass@K and maj@K).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Tasks and sampling: the tasks are a training run's validation tasks of this seed.")
@click.option("--tasks", "tasks_file", default=None, help="JSONL task file instead of generated tasks.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Sampling setting (temperature, max_new_tokens, chat_template, ...) or env option.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Prompts sampled at once.")
@click.option("--out", default=None, help="Folder for evaluate.json, completions.jsonl and report.html.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_command(model, env_name, n, samples, seed, tasks_file, assignments, batch_size, out,
                 quiet) -> None:
    """Evaluate a model on an env's tasks without training (greedy, pass@k, maj@k)."""
    from assay.envs.base import parse_assignments
    from assay.lab import evaluate
    from assay.training import folder_lock

    try:
        if out:  # before the evaluation, so that none is lost for want of a place to write
            folder_lock.check_writable(out)
            if found := folder_lock.foreign_files(out, evaluate.FILES):  # a run's, a comparison's
                raise UsageError(f"--out {out} holds other files ({folder_lock.shown(found)}); eval writes "
                                 f"{', '.join(sorted(evaluate.FILES))} there: choose a new or empty folder")
            folder_lock.acquire(out, what="assay eval")  # a live run there is refused
        try:
            result = evaluate.evaluate(
                model=model, env=env_name, n=n, samples=samples, seed=seed,
                sets=parse_assignments(assignments), tasks_file=tasks_file,
                batch_size=batch_size, out=out, quiet=quiet,
            )
        finally:
            if out:
                folder_lock.release(out, tidy=True)
    except AssayError as exc:
        raise UsageError(_one_line(str(exc))) from None
    except KeyboardInterrupt:
        click.echo("assay: eval interrupted; nothing was written", err=True)
        sys.exit(130)
    evaluate.print_table(result)
    if out:
        click.echo(f"wrote {out}/evaluate.json, completions.jsonl and report.html", err=True)


@cli.command("prior")
@click.option("--preset", default="default", show_default=True,
              help="Organism variant: default, honest (no wrong class), tiny (seconds, for tests), "
                   "smt, code, code-tiny, tool or tool-tiny (docs/training.md).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Prior option (sft_steps, wrong_below, verify_fraction, ...).")
@click.option("--rebuild", is_flag=True, help="Build again even when cached.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prior_command(preset: str, assignments: tuple[str, ...], rebuild: bool, quiet: bool) -> None:
    """Build (or find) the model organism's supervised prior; print its folder and scores."""
    from assay import organism
    from assay.envs.base import parse_assignments

    try:
        spec = organism.make_spec(preset, **parse_assignments(assignments))
    except OptionError as exc:
        raise UsageError(str(exc)) from None
    try:
        path = organism.ensure_prior(spec, preset, quiet=quiet, rebuild=rebuild)
    except AssayError as exc:  # the build process failed; its own error is above
        raise UsageError(str(exc)) from None
    meta = organism.read_metadata(path)
    click.echo(str(path))
    figures = {"evaluation": meta.get("evaluation"), "build_seconds": meta.get("build_seconds"),
               "parameters": meta.get("parameters")}
    click.echo(json.dumps(_finite(figures)), err=True)


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinity as None: JSON has no NaN (a rate over no cases is
    one), and a reader such as jq refuses the whole line for it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# -- the lab: assay compare, assay report ----------------------------------------------


# -- the lab's experiments: one command each, made from the registry --------------------


def _experiment_command(experiment: Experiment) -> click.Command:
    """`assay <experiment>`: its own options, then `--out`, `--preset` and `--quiet`."""
    params: list[click.Parameter] = []
    for option in experiment.options:
        if option.type is bool:
            params.append(click.Option([option.option, option.name], is_flag=True,
                                       default=bool(option.default), help=option.help))
        else:
            params.append(click.Option(
                [option.option, option.name], type=option.type, default=option.default,
                multiple=option.multiple, metavar=option.metavar, help=option.help,
                show_default=option.default is not None and not option.multiple,
            ))
    presets = "; ".join(f"{p.name}: {p.description}" for p in experiment.presets.values())
    params += [
        click.Option(["--out"], default=f"runs/{experiment.command}", show_default=True,
                     help=f"Output folder: {experiment.result_name}, report.html and what "
                          "the experiment keeps beside them (its runs)."),
        click.Option(["--preset"], default=None, metavar="NAME",
                     help=f"{presets} (default: {experiment.default_preset}; docs/lab.md)."),
        click.Option(["--quiet"], is_flag=True, help="No progress display."),
    ]

    def callback(out: str, preset: str | None, quiet: bool, **typed: Any) -> None:
        _run_experiment(experiment, out, preset, quiet, typed)

    return click.Command(experiment.command, callback=callback, params=params,
                         help=experiment.summary)


def _run_experiment(experiment: Experiment, out: str, preset: str | None, quiet: bool,
                    typed: dict[str, Any]) -> None:
    """Run it: a usage problem is one line and exit 2, a failed experiment exit 1, Ctrl-C
    says how to go on; then the reading on stdout and the closing lines on stderr."""
    from assay.lab.registry import ExperimentFailed
    from assay.training import folder_lock

    try:
        try:
            options = {o.name: o.value(typed[o.name]) for o in experiment.options}
            if preset is not None:  # left out: the experiment's own default (or a saved plan's)
                options["preset"] = preset
            if (Path(out) / "report.html").exists() and not experiment.holds_result(Path(out)):
                raise UsageError(  # another command's page, or the user's: never overwritten
                    f"--out {out} holds a report.html that assay {experiment.command} did not "
                    f"write (no {experiment.result_name} beside it); choose another --out")
            folder_lock.acquire(out, what=f"assay {experiment.command}")  # one writer per folder
            try:
                result = experiment.run(out=out, quiet=quiet, **options)
            finally:
                folder_lock.release(out, tidy=True)
            reading = experiment.render(Path(out))
        except KeyboardInterrupt:
            hint = experiment.resume_hint
            hint = hint.format(out=out) if isinstance(hint, str) else hint(Path(out))
            click.echo(f"assay: interrupted; {hint}", err=True)
            sys.exit(130)
    except ExperimentFailed as exc:
        for line in exc.details:
            click.echo(line, err=True)
        click.echo(f"assay: error: {_one_line(str(exc))}", err=True)
        sys.exit(1)
    except AssayError as exc:
        raise UsageError(_one_line(str(exc))) from None
    click.echo(reading)
    sys.stdout.flush()  # the reading before the closing lines on stderr, even through a pipe
    lines, status = experiment.finish(result, Path(out))
    for line in lines:
        click.echo(line, err=True)
    if status:
        sys.exit(status)


def _add_plugin_experiments(group: click.Group) -> None:
    from assay.lab.registry import plugin_experiments

    # a broken plug-in is one warning line; every other command still works
    for experiment in plugin_experiments(on_error=lambda exc: click.echo(
            f"assay: warning: {_one_line(str(exc))}", err=True)).values():
        group.add_command(_experiment_command(experiment))


@cli.command("report")
@click.argument("folder", metavar="DIR")
def report_command(folder: str) -> None:
    """Re-render DIR/report.html, DIR/summary.json and the figures from the run folders
    under DIR (an `assay compare` folder, or runs made one by one with `assay train`), or
    from the result file of one of the lab's experiments (`assay zoo`, ...)."""
    from assay.lab import registry

    for busy, holder in _writers(Path(folder)):
        click.echo(f"assay: warning: {busy} is still being written by {holder}; "
                   "the report shows it as far as it went", err=True)
    try:
        reading = registry.render(Path(folder))
    except registry.ExperimentFailed as exc:
        for line in exc.details:
            click.echo(line, err=True)
        click.echo(f"assay: error: {_one_line(str(exc))}", err=True)
        sys.exit(1)
    except AssayError as exc:
        raise UsageError(_one_line(str(exc))) from None
    click.echo(reading)
    sys.stdout.flush()  # the reading before the closing line on stderr, even through a pipe
    click.echo(f"report: {folder}/report.html", err=True)


def _seed_list(text: str, option: str) -> list[int]:
    from assay.lab.registry import seed_list

    try:
        return seed_list(text, option)
    except AssayError as exc:
        raise UsageError(str(exc)) from None


@cli.command("detector-eval")
@click.argument("folders", metavar="DIR...", nargs=-1, required=True)
@click.option("--choose-seeds", default="0,1,2", show_default=True,
              help="Seeds whose runs choose the candidate criterion's threshold.")
@click.option("--report-seeds", default="3,4", show_default=True,
              help="Seeds whose runs the table reports (never the choose seeds).")
@click.option("--json", "json_path", default=None, help="Also write the table as JSON here.")
def detector_eval_command(folders: tuple[str, ...], choose_seeds: str, report_seeds: str,
                          json_path: str | None) -> None:
    """The collapse criteria measured as detectors over the runs under DIR...: detection
    rate over runs that declined, false-alarm rate over runs that improved, lead time
    (docs/lab.md, "The detector measured")."""
    from assay.lab import detector_eval
    from assay.lab.summary import ReportError, find_runs

    runs = []
    if json_path and (Path(json_path).is_dir() or not Path(json_path).parent.is_dir()):
        what = "is a folder" if Path(json_path).is_dir() else "is in no existing folder"
        raise UsageError(f"--json {json_path} {what}: name a file to write")
    try:
        for folder in folders:
            if not Path(folder).is_dir():
                raise UsageError(f"{folder}: {'a file, not a folder' if Path(folder).exists() else 'no such folder'}")
            runs += find_runs(folder)
    except ReportError as exc:
        raise UsageError(_one_line(str(exc))) from None
    if not runs:
        raise UsageError(f"no run folders (metrics.jsonl + config.yaml) under {', '.join(folders)}")
    try:
        result = detector_eval.evaluate(runs, _seed_list(choose_seeds, "--choose-seeds"),
                                        _seed_list(report_seeds, "--report-seeds"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    click.echo(detector_eval.render(result))
    if json_path:
        from assay.training.checkpoint import write_json

        write_json(Path(json_path), result)
        click.echo(f"detector table: {json_path}", err=True)


def _writers(folder: Path) -> list[tuple[Path, str]]:
    """The folders at or one level below `folder` (and its `runs/`) that a live command is
    writing now, with who is writing them."""
    from assay.training import folder_lock

    places = [folder, *sorted(p for p in folder.glob("*") if p.is_dir()),
              *sorted(p for p in folder.glob("runs/*") if p.is_dir())]
    return [(p, holder) for p in places if (holder := folder_lock.writer(p))]


# -- trusting a reward: assay rescore, assay audit ------------------------------------


@cli.command("rescore")
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--rewards", "names", required=True, metavar="NAME,...",
              help="Rewards to recompute on the run's stored rollouts.")
@click.option("-o", "--output", default=None, metavar="OUT.json",
              help="Where to write the figures (default: RUN_DIR/rescore.json); the plot goes beside it.")
def rescore_command(run_dir: str, names: str, output: str | None) -> None:
    """Recompute rewards on a run's rollouts.jsonl.gz; compare them with the verifier."""
    from pathlib import Path

    from assay.audit.plot import draw_rescore
    from assay.audit.rescore import rescore, write
    from assay.training import folder_lock

    try:
        holder = folder_lock.writer(run_dir)
        if holder:  # its last rollouts may be half written
            raise UsageError(f"{run_dir} is being written by {holder}; rescore it when the run ends")
        result = rescore(run_dir, names.split(","))
    except AssayError as exc:
        raise UsageError(str(exc)) from None
    out = Path(output) if output else Path(run_dir) / "rescore.json"
    if out.suffix == ".png":  # the plot goes to OUT with .png: it would replace the figures
        raise UsageError(f"-o {output}: the figures are JSON (the plot is written beside them as .png)")
    for path in (out, out.with_suffix(".png")):
        if _a_run_file(Path(run_dir), path):
            raise UsageError(f"-o {output}: {path} is one of the run's own files; choose another path")
    try:
        write(result, out)
        plot = draw_rescore(result, out.with_suffix(".png"), title=f"{run_dir}: agreement with the verifier")
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    for name, entry in result["rewards"].items():
        click.echo(f"{name:<20} mean {entry['mean']:.4g}  accuracy {entry['accuracy']:.3f}", err=True)
    click.echo(f"{result['completions']} completions over {result['steps']} steps -> {out}, {plot}", err=True)


def _a_run_file(run_dir: Path, path: Path) -> bool:
    """Whether `path` is a file already in `run_dir` that an earlier rescore did not write
    (its metrics, rollouts, config, a checkpoint's file: not to be overwritten)."""
    try:
        where, root = path.resolve(), run_dir.resolve()
    except OSError:
        return False
    if not where.exists() or root not in where.parents:
        return False
    figures = where.with_suffix(".json") if where.suffix == ".png" else where
    try:  # an earlier rescore's figures (or the plot beside them) may be written again
        earlier = json.loads(figures.read_text(encoding="utf-8"))
        return not (isinstance(earlier, dict) and {"rewards", "completions", "steps"} <= set(earlier))
    except (OSError, ValueError):
        return True


@cli.command("audit")
@click.argument("env_name", metavar="ENV")
@click.option("--tasks", "tasks_file", default=None, metavar="FILE",
              help="Audit on these tasks (JSONL) instead of generated ones.")
@click.option("-n", "count", default=20, show_default=True, help="Generated tasks to audit on.")
@click.option("--seed", default=0, show_default=True, help="Seed of the generated tasks.")
@click.option("--against", default=None, metavar="CHECKER",
              help="Also judge the same pairs with a second checker (math-verify).")
@click.option("-o", "--output", default=None, metavar="OUT.json", help="Write the result here.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Env option.")
def audit_command(env_name: str, tasks_file: str | None, count: int, seed: int,
                  against: str | None, output: str | None, assignments: tuple[str, ...]) -> None:
    """Try known reward hacks on ENV's verifier; exit 1 when any is accepted, or when the
    verifier could not judge one (an `error` verdict)."""
    from assay.audit.audit import audit, false_positives, load_or_sample, unjudged, write

    if count < 1 or seed < 0:
        raise UsageError("-n must be at least 1 and --seed at least 0")
    context = click.get_current_context()
    given = [flag for name, flag in (("count", "-n"), ("seed", "--seed"))
             if context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
    if tasks_file and given:  # they choose generated tasks: with a file they would do nothing
        raise UsageError(f"{' and '.join(given)}: for generated tasks; --tasks audits every "
                         "task of its file")
    env = _make_env(env_name, assignments)
    try:
        tasks = load_or_sample(env, tasks_file, count, seed)
        result = audit(env, tasks, against=against)
    except AssayError as exc:
        raise UsageError(str(exc)) from None
    finally:
        env.close()
    if output:
        try:
            write(result, output)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    else:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    ref = result["reference"]
    click.echo(f"{env_name}: {len(tasks)} tasks; their own answers accepted {ref['accepted']}/{ref['tried']}", err=True)
    for probe in result["probes"]:
        if probe["false_positives"]:
            mark = "FALSE POSITIVES"
        elif probe["errors"]:  # not rejected either: the verifier broke on them
            mark = f"VERIFIER ERRORS on {probe['errors']} (unjudged, so unpunished in training)"
        else:
            mark = "ok" if probe["tried"] else "not built (no right answer known: see docs/trust.md)"
        click.echo(f"  {probe['name']:<20} {probe['false_positives']:>4}/{probe['tried']:<5} {mark}", err=True)
    if result["agreement"]:
        a = result["agreement"]
        click.echo(f"  against {a['checker']}: {a['agree']}/{a['pairs']} agree; only assay accepts "
                   f"{a['only_assay_accepts']['count']}, only {a['checker']} accepts "
                   f"{a['only_checker_accepts']['count']}", err=True)
    sys.exit(1 if false_positives(result) or unjudged(result) else 0)


_add_plugin_experiments(cli)


def main() -> None:
    # `kill -USR1 <pid>` prints every thread's stack to stderr: how to see where a command
    # that seems stuck is waiting, without stopping it.
    import faulthandler
    import signal

    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Not click's standalone mode: its Ctrl-C is "Aborted!" and exit status 1; ours is the
    # conventional 130 wherever it lands (commands that can resume print how themselves).
    try:
        code = cli.main(prog_name="assay", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("assay: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # click's own (no such option, a missing argument): one line
        where = exc.ctx.command_path if exc.ctx is not None else "assay"
        click.echo(f"assay: error: {_one_line(exc.format_message())} (see {where} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TaskFileError as exc:  # pragma: no cover - commands catch their own
        click.echo(f"assay: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a file no command check caught (a read-only mount): one line
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"assay: error: {_one_line(where + (exc.strerror or str(exc)))}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)  # `--help` and friends return theirs


if __name__ == "__main__":
    main()
