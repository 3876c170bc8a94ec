"""Mutation testing of assay's core modules: does each small change to the code fail a test?

Usage (from the repository root; see docs/development.md, "Mutation testing"):

    python scripts/mutate.py                          # every mutant of every module
    python scripts/mutate.py --max-per-module 30      # a seeded sample of each module
    python scripts/mutate.py --module countdown --list  # show the mutants, run nothing
    python scripts/mutate.py --resume mutation-report.json --report rest.json  # after an interruption

Each mutant is one small AST edit: a comparison flipped (`<` -> `<=`, `==` -> `!=`), `and`
<-> `or`, an arithmetic operator swapped (`+` <-> `-`, `*` <-> `/`), a `not` dropped, a
constant nudged (n -> n + 1, True <-> False), a check dropped (an `if` or `raise` statement
removed), or a return value replaced by `None`. The package is copied into a temporary
folder and the mutant written there (your working tree is never touched); the module's
covering tests then run against the copy (one process, `-x`). A mutant is *killed* when a
test fails (or the tests time out) and *survives* when they all pass. Mutants listed in
scripts/mutation-equivalents.yaml, each with the reason it cannot change behaviour, are
*equivalent* and are not run. Writes mutation-report.json; exits 1 when a module is below
`--goal` (default 0.9) of its non-equivalent mutants killed.

Mutants are named `path::function::source -> mutated source` (a number is appended when the
same edit occurs twice in one function), so the names survive unrelated edits above them.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "scripts" / "mutation-equivalents.yaml"
REPORT = ROOT / "mutation-report.json"
CARRIED = "carried over: "  #: the detail of a mutant's outcome copied in by --resume


@dataclass(frozen=True)
class Target:
    """A module to mutate, the tests that cover it, and (optionally) the functions to mutate."""

    name: str
    path: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()


# The fastest and most specific tests first: `-x` stops at the first failure.
TARGETS = (
    Target(
        "countdown",
        "assay/verifiers/countdown.py",
        ("tests/test_countdown_edges.py", "tests/test_countdown.py", "tests/test_countdown_properties.py"),
    ),
    Target(
        "math",
        "assay/verifiers/math.py",
        ("tests/test_math_edges.py", "tests/test_math_bounds.py", "tests/test_math_verifier.py"),
    ),
    Target(
        "code_judge",
        "assay/envs/code_judge.py",
        (
            "tests/test_code_judge_codec.py",
            "tests/test_code_judge_edges.py",
            "tests/test_code_judge_plan.py",
            "tests/test_code_judge_prepared.py",
            "tests/test_code_env.py",
            "tests/test_hostile.py",
        ),
    ),
    Target(
        "code_harness",
        "assay/envs/code_harness.py",
        ("tests/test_code_harness.py", "tests/test_code_judge_edges.py", "tests/test_code_judge_prepared.py",
         "tests/test_code_env.py"),
    ),
    Target(
        "plain_llama",
        "assay/plain_llama.py",
        ("tests/test_plain_llama.py", "tests/test_training_fast_paths.py", "tests/test_native_llama.py"),
    ),
    Target("native_llama", "assay/native_llama.py", ("tests/test_native_llama.py", "tests/test_organism_build.py")),
    Target("organism_model", "assay/organism/model.py", ("tests/test_organism_build.py",)),
    Target("adamw", "assay/adamw.py", ("tests/test_adamw.py",)),
    Target("rewards_base", "assay/rewards/base.py", ("tests/test_reward_edges.py", "tests/test_rewards.py")),
    Target("rewards_builtin", "assay/rewards/builtin.py", ("tests/test_reward_edges.py", "tests/test_rewards.py")),
    Target(
        "diagnostics",
        "assay/training/diagnostics.py",
        ("tests/test_reward_edges.py", "tests/test_training_diagnostics.py"),
    ),
    Target(
        "loss",
        "assay/training/loss.py",
        (
            "tests/test_training.py::test_advantages_by_hand",
            "tests/test_masking.py::test_masked_advantages_by_hand",
            "tests/test_masking.py::test_a_group_left_with_two_completions_still_counts",
            "tests/test_loss_vs_trl.py",
            "tests/test_learning.py",
        ),
    ),
    Target("intervals", "assay/lab/intervals.py", ("tests/test_run_intervals.py",),
           functions=("curve_replicates", "over_seeds", "percentile_interval")),
    Target("run_verdicts", "assay/lab/report.py", ("tests/test_run_intervals.py",),
           functions=("trend", "_change", "_ci")),
    Target("detector_eval", "assay/lab/detector_eval.py", ("tests/test_detector_eval.py",),
           functions=("label", "fall_step", "majority_rule", "score", "evaluate")),
    Target("entropy_law", "assay/lab/entropy_law.py", ("tests/test_run_intervals.py",)),
    Target("pinned_build", "assay/organism/pinned.py", ("tests/test_pinned_build.py",)),
    Target("rank_correlation", "assay/lab/rank_correlation.py",
           tuple(f"tests/test_zoo.py::{t}" for t in (
               "test_ranks_share_ties", "test_spearman", "test_permutation_p",
               "test_over_seeds_ranks_the_means_and_resamples_seeds"))),
    Target("zoo_seeds", "assay/lab/zoo.py",
           ("tests/test_zoo.py::test_over_seeds_ranks_the_means_and_resamples_seeds",),
           functions=("summarise", "over_seeds")),
    Target(
        "run_summary",
        "assay/lab/summary.py",
        ("tests/test_run_intervals.py",),
        functions=("_check_per_task", "replicates", "interval_fields", "summarize",
                   "mean_over_seeds"),
    ),
    Target("code_feedback", "assay/envs/code_feedback.py", ("tests/test_code_feedback.py",)),
    Target("tools", "assay/envs/tools.py",
           ("tests/test_episodes.py", "tests/test_tools.py",
            "tests/test_tool_organism.py::test_a_compact_call_reads_the_value_python_printed",
            "tests/test_tool_organism.py::test_a_direct_answer_is_one_turn_and_a_second_call_is_refused")),
    Target("play_episodes", "assay/training/episodes.py",
           ("tests/test_episode_rollouts.py", "tests/test_code_feedback.py")),
    Target(
        "trainer",
        "assay/training/trainer.py",
        ("tests/test_trainer_step.py", "tests/test_learning.py", "tests/test_episode_training.py",
         "tests/test_monitor.py"),
        functions=("step", "step_metrics", "update", "_pulls", "_row_batches"),
    ),
    Target("batch", "assay/training/batch.py",
           ("tests/test_rollout_batch.py", "tests/test_trainer_step.py", "tests/test_episode_rollouts.py",
            "tests/test_training_fast_paths.py", "tests/test_episode_training.py")),
)

_COMPARE_SWAPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BINOP_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div}


@dataclass
class Mutant:
    target: str
    index: int  #: position of the node in `ast.walk` order of the module
    kind: str
    function: str
    before: str
    after: str
    line: int
    name: str = ""
    status: str = "pending"
    seconds: float = 0.0
    detail: str = field(default="", repr=False)


def _functions(tree: ast.AST) -> dict[ast.AST, str]:
    """Each node's innermost enclosing function (qualified by class), '<module>' at top level."""
    owner: dict[ast.AST, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = name
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = child.name if name == "<module>" else f"{name}.{child.name}"
            owner[child] = inner
            visit(child, inner)

    owner[tree] = "<module>"
    visit(tree, "<module>")
    return owner


def _skipped(tree: ast.AST) -> set[int]:
    """Nodes never mutated: docstrings, annotations, f-string parts, `__all__`, type checks."""
    skip: set[int] = set()

    def skip_all(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                skip_all(body[0])
        if isinstance(node, (ast.AnnAssign, ast.arg)):
            skip_all(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            skip_all(node.returns)
        if isinstance(node, ast.JoinedStr):
            skip_all(node)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            skip_all(node)
        if isinstance(node, ast.Assert):  # assertions for the type checker
            skip_all(node)
    return skip


def _edits(node: ast.AST) -> list[str]:
    """The mutation kinds that apply to `node`."""
    out = []
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE_SWAPS:
        out.append("compare")
    elif isinstance(node, ast.BoolOp):
        out.append("boolop")
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
        out.append("binop")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        out.append("drop-unary")
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
        out.append("constant")
    elif isinstance(node, (ast.If, ast.Raise)) or (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
    ):
        out.append("drop-statement")
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append("return-none")
    return out


def _apply(tree: ast.Module, index: int, kind: str) -> tuple[str, str] | None:
    """Mutate node `index` of `tree` in place; (source before, source after), or None."""
    nodes = list(ast.walk(tree))
    node = nodes[index]
    before = ast.unparse(node)
    if kind == "compare":
        node.ops = [_COMPARE_SWAPS[type(node.ops[0])]()]
    elif kind == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind == "binop":
        node.op = _BINOP_SWAPS[type(node.op)]()
    elif kind == "drop-unary":
        return _replace(nodes, node, node.operand, before)
    elif kind == "constant":
        value = node.value
        if type(value) is bool:
            node.value = not value
        elif type(value) is int:
            node.value = value + 1
        else:
            node.value = 1.0 if value == 0 else value * 2
    elif kind == "drop-statement":
        return _replace(nodes, node, ast.Pass(), before.splitlines()[0])
    elif kind == "return-none":
        node.value = ast.Constant(None)
    return before, ast.unparse(node)


def _replace(nodes: list[ast.AST], old: ast.AST, new: ast.AST, before: str) -> tuple[str, str] | None:
    for parent in nodes:
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return before, ast.unparse(new)
            if isinstance(value, list) and any(v is old for v in value):
                setattr(parent, name, [new if v is old else v for v in value])
                return before, ast.unparse(new)
    return None


def mutants_of(target: Target) -> list[Mutant]:
    source = (ROOT / target.path).read_text(encoding="utf-8")
    tree = ast.parse(source)
    owner, skip = _functions(tree), _skipped(tree)
    found: list[Mutant] = []
    seen: dict[str, int] = {}
    for index, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        function = owner.get(node, "<module>")
        if target.functions and not set(function.split(".")) & set(target.functions):
            continue
        for kind in _edits(node):
            mutated = _apply(copy.deepcopy(tree), index, kind)
            if mutated is None:
                continue
            before, after = (" ".join(s.split())[:120] for s in mutated)
            name = f"{target.path}::{function}::{before} -> {after}"
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name += f" #{seen[name]}"
            found.append(
                Mutant(target.name, index, kind, function, before, after, getattr(node, "lineno", 0), name)
            )
    return found


def load_equivalents() -> dict[str, str]:
    if not EQUIVALENTS.exists():
        return {}
    entries = yaml.safe_load(EQUIVALENTS.read_text(encoding="utf-8")) or []
    out = {}
    for entry in entries:
        if not entry.get("reason"):
            raise SystemExit(f"{EQUIVALENTS.name}: {entry.get('mutant')!r} needs a reason")
        out[entry["mutant"]] = entry["reason"]
    return out


def run_tests(copy_root: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    env = {**os.environ, "PYTHONPATH": str(copy_root), "PYTHONDONTWRITEBYTECODE": "1"}
    # The pytest script, not `python -m pytest`: -m puts the working directory (the unmutated
    # package) ahead of PYTHONPATH on sys.path.
    pytest = Path(sys.executable).parent / "pytest"
    command = [str(pytest), "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    start = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start, ""
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    if done.returncode == 0:
        return "passed", time.monotonic() - start, tail[0]
    if done.returncode in (1, 3):  # tests failed, or an internal error (the module broke import)
        return "failed", time.monotonic() - start, tail[0]
    return f"error rc={done.returncode}", time.monotonic() - start, tail[0]


def write_report(path: Path, summary: dict, results: list[Mutant], equivalents: dict[str, str]) -> None:
    """mutation-report.json: written after each module, so an interrupted run keeps its results."""
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "argv": sys.argv[1:],
        "load_average": os.getloadavg(),
        "summary": summary,
        "mutants": [
            {k: getattr(m, k) for k in ("target", "name", "line", "kind", "status", "seconds", "detail")}
            for m in results
        ],
        "equivalents": equivalents,
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _test_stamps(tests: tuple[str, ...]) -> dict[str, float]:
    """Modification times of the covering test files (node ids reduced to their file)."""
    files = {test.split("::")[0] for test in tests}
    return {f: (ROOT / f).stat().st_mtime for f in sorted(files) if (ROOT / f).exists()}


def read_report(parser: argparse.ArgumentParser, option: str, path: Path) -> dict:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(report.get("mutants"), list):
            raise ValueError("no 'mutants' list")
    except (OSError, ValueError) as err:
        parser.error(f"{option} {path}: cannot read a report ({err})")
    return report


def module_summary(
    target: Target, chosen: list[Mutant], total: int, equivalents: dict[str, str], tests_changed: bool
) -> dict:
    """One module's counts over the mutants run so far (all of `chosen` at the end)."""
    ran = [m for m in chosen if m.status in ("killed", "survived")]
    killed = sum(m.status == "killed" for m in ran)
    marked = sum(1 for name in equivalents if name.startswith(target.path + "::"))
    return {
        "path": target.path,
        "mutants": total,
        "run": len(ran),
        "killed": killed,
        "survived": len(ran) - killed,
        "equivalent": marked,
        "score": round(killed / len(ran), 3) if ran else 1.0,
        "sampled": len(chosen) + marked < total,
        "complete": len(ran) == len(chosen),
        "resumed": sum(m.detail.startswith(CARRIED) for m in ran),  # carried over by --resume
        "tests_changed_during_run": tests_changed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", help="target name (repeatable); default all")
    parser.add_argument("--max-per-module", type=int, default=0, help="sample size per module (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--goal", type=float, default=0.9, help="fraction to kill per module")
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument(
        "--survivors-of", type=Path, metavar="REPORT", help="run only the mutants that survived in REPORT"
    )
    parser.add_argument(
        "--resume", type=Path, metavar="REPORT", action="append",
        help="carry over the outcomes of the mutants already run in REPORT (an interrupted run); "
        "repeatable, a later report's outcome replacing an earlier one's (a rerun of survivors)",
    )
    args = parser.parse_args(argv)

    known = {t.name: t for t in TARGETS}
    for name in args.module or []:
        if name not in known:
            parser.error(f"unknown module {name!r} (known: {', '.join(known)})")
    targets = [known[n] for n in args.module] if args.module else list(TARGETS)
    equivalents = load_equivalents()
    rng = random.Random(args.seed)
    again = None
    if args.survivors_of:
        previous = read_report(parser, "--survivors-of", args.survivors_of)
        again = {m["name"] for m in previous["mutants"] if m["status"] == "survived"}
    done: dict[str, dict] = {}
    for path in args.resume or []:
        previous = read_report(parser, "--resume", path)
        for m in previous["mutants"]:
            # a copy carried into a resumed report never replaces an outcome from a real run
            if m["status"] in ("killed", "survived") and not (
                m["name"] in done and m["detail"].startswith(CARRIED)
            ):
                done[m["name"]] = m

    plan: list[tuple[Target, list[Mutant], int]] = []
    for target in targets:
        every = mutants_of(target)
        names = {m.name for m in every}
        for stale in sorted(n for n in equivalents if n.startswith(target.path + "::") and n not in names):
            print(f"warning: {EQUIVALENTS.name} names no current mutant: {stale}")
        chosen = [m for m in every if m.name not in equivalents and (again is None or m.name in again)]
        if args.max_per_module and len(chosen) > args.max_per_module:
            chosen = sorted(rng.sample(chosen, args.max_per_module), key=lambda m: m.index)
        plan.append((target, chosen, len(every)))
        if args.list:
            print(f"== {target.name}: {len(every)} mutants, {len(chosen)} selected")
            for m in chosen:
                print(f"  L{m.line:<4} {m.kind:<15} {m.name}")
    if args.list:
        return 0

    # A `kill` (SIGTERM) unwinds like Ctrl-C, so the temporary copy is removed and the
    # report written so far stays (resume with --resume).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    summary, results = {}, []
    with tempfile.TemporaryDirectory(prefix="assay-mutate-") as tmp:
        copy_root = Path(tmp)
        shutil.copytree(ROOT / "assay", copy_root / "assay", ignore=shutil.ignore_patterns("__pycache__"))
        for target, chosen, total in plan:
            original = (ROOT / target.path).read_text(encoding="utf-8")
            mutated_path = copy_root / target.path
            status, base_s, tail = run_tests(copy_root, target.tests, timeout=900)
            if status != "passed":
                print(f"{target.name}: the covering tests fail without any mutant ({tail}); skipped")
                summary[target.name] = {"error": f"baseline {status}: {tail}"}
                continue
            timeout = max(60.0, 4 * base_s + 30)
            print(f"== {target.name} ({target.path}): {len(chosen)} mutants, baseline {base_s:.0f}s")
            tree = ast.parse(original)
            # A covering test edited mid-run can fail to collect and "kill" mutants it never
            # tested; say so, so that the run (or --survivors-of a hand-made list) is redone.
            stamps = _test_stamps(target.tests)
            edited = False
            for n, mutant in enumerate(chosen, 1):
                if mutant.name in done:  # --resume: run before, keep its outcome
                    before = done[mutant.name]
                    detail = before["detail"]
                    mutant.status, mutant.seconds = before["status"], before["seconds"]
                    mutant.detail = detail if detail.startswith(CARRIED) else CARRIED + detail
                    results.append(mutant)
                    continue
                mutated_tree = copy.deepcopy(tree)
                _apply(mutated_tree, mutant.index, mutant.kind)
                mutated_path.write_text(ast.unparse(mutated_tree) + "\n", encoding="utf-8")
                try:
                    outcome, seconds, tail = run_tests(copy_root, target.tests, timeout)
                finally:
                    mutated_path.write_text(original, encoding="utf-8")
                mutant.status = "survived" if outcome == "passed" else "killed"
                mutant.seconds, mutant.detail = round(seconds, 1), f"{outcome}: {tail}"[:300]
                mark = "SURVIVED" if mutant.status == "survived" else "killed  "
                print(f"  [{n}/{len(chosen)}] {mark} L{mutant.line} {mutant.before} -> {mutant.after}", flush=True)
                results.append(mutant)
                if not edited and _test_stamps(target.tests) != stamps:
                    edited = True
                    print(f"  warning: a covering test of {target.name} changed during the run; "
                          "outcomes from here on may not hold: rerun when the tests settle", flush=True)
                # after every mutant, so that an interrupted run can be resumed (--resume)
                summary[target.name] = module_summary(target, chosen, total, equivalents, edited)
                write_report(args.report, summary, results, equivalents)
            summary[target.name] = module_summary(target, chosen, total, equivalents, edited)
            write_report(args.report, summary, results, equivalents)

    print("\nmodule            run  killed  survived  equivalent  score")
    below = []
    for name, row in summary.items():
        if "error" in row:
            print(f"{name:<16} error: {row['error']}")
            below.append(name)
            continue
        resumed = f" ({row['resumed']} carried over)" if row.get("resumed") else ""
        print(
            f"{name:<16} {row['run']:>4}  {row['killed']:>6}  {row['survived']:>8}  {row['equivalent']:>10}"
            f"  {row['score']:.0%}{' (sample)' if row['sampled'] else ''}{resumed}"
        )
        if row["score"] < args.goal:
            below.append(name)
    write_report(args.report, summary, results, equivalents)
    print(f"\nreport: {args.report}")
    survivors = [m for m in results if m.status == "survived"]
    if survivors:
        print("survivors (add a test that kills each, or mark it equivalent with a reason):")
        for m in survivors:
            print(f"  {m.name}")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
