"""assay's verifiers as veRL's `custom_reward_function`, and veRL's data files from an env.

veRL's reward manager calls, for every response,
`compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)` and
uses the returned dict's `score` as the reward (the other keys land in its
`reward_extra_info`). Here `data_source` names an assay env (`countdown`, `math`, `code`,
`smt`, any registered one), `ground_truth` is the task: a dict of the env's task fields
(as `assay sample ENV` prints them), the same as a JSON text, or for math the gold answer
alone. Env options ride along in `extra_info["env_options"]`.

veRL itself is not imported (nor needed) here: this module is plain Python, so it works
in any worker veRL spawns. `python -m assay.integrations.verl ENV --out FILE.parquet`
writes an env's tasks in veRL's data format (docs/integrations.md).
"""

from __future__ import annotations

import argparse
import atexit
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from assay.envs import Environment, get_env
from assay.envs.registry import UnknownEnvError, env_names
from assay.envs.taskfile import TaskFileUnusable, read_task_file, validate_fields
from assay.errors import first_line
from assay.verifiers import Verdict

#: every result has the same keys: veRL collects each key into a list per batch, and a
#: key missing from one response would misalign them
KEYS = ("score", "status", "acc")

_ENVS: dict[tuple[str, str], Environment] = {}


def _env(name: str, options: dict[str, Any]) -> Environment:
    """One env per (name, options) per process, kept warm (a code env's sandbox pool, a
    Lean REPL) across calls and closed at exit."""
    key = (name, json.dumps(options, sort_keys=True, default=str))
    if key not in _ENVS:
        try:
            _ENVS[key] = get_env(name, **options)
        except UnknownEnvError:
            raise ValueError(
                f"assay compute_score: data_source {name!r} is not an assay env "
                f"(known: {', '.join(env_names())})"
            ) from None
    return _ENVS[key]


@atexit.register
def _close_envs() -> None:
    for env in _ENVS.values():
        env.close()
    _ENVS.clear()


def task_fields(env: Any, ground_truth: Any) -> Any:
    """The task's fields from veRL's `ground_truth`: a dict, its JSON text, or, for an env
    that names its `answer_field` (math), the gold answer as a plain string."""
    if isinstance(ground_truth, str):
        text = ground_truth.strip()
        if text.startswith("{"):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                pass
        if env.answer_field:
            return {env.answer_field: ground_truth}
    if hasattr(ground_truth, "items"):  # a dict, or the mapping pyarrow hands back
        return {k: _plain(v) for k, v in ground_truth.items()}
    return ground_truth


def _plain(value: Any) -> Any:
    """numpy arrays and scalars (what a parquet round trip gives) as plain Python."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def result(verdict: Verdict) -> dict[str, Any]:
    """veRL's dict: `score` is the reward; `status` and `acc` are logged beside it."""
    return {"score": float(verdict.score), "status": verdict.status,
            "acc": float(verdict.status == "correct")}


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Verify one response with assay's env `data_source`; veRL's reward-function signature.

    A ground truth that is not a valid task scores 0 with status `error` (counted, never a
    silent zero); an unknown `data_source` raises, naming the known envs, since no
    response of that source could be scored.
    """
    info = extra_info if isinstance(extra_info, dict) else {}  # veRL's is a dict, or None
    options = dict(info.get("env_options") or {})
    env = _env(str(data_source), options)
    fields = task_fields(env, ground_truth)
    problems = validate_fields(env, fields)
    if problems:
        return result(Verdict.error(f"ground_truth: {problems[0]}"))
    index = info.get("index", "")
    task = env.make_task(fields, id=f"{data_source}-{index}")
    if isinstance(solution_str, bytes):  # decoded, not scored as an empty response
        solution_str = solution_str.decode("utf-8", errors="replace")
    return result(env.verify(task, solution_str if isinstance(solution_str, str) else ""))


# -- veRL's data files -----------------------------------------------------------------


def verl_rows(env_name: str, tasks: list[Any], split: str) -> list[dict[str, Any]]:
    """veRL's row format: the prompt as chat messages, the task as `ground_truth` (JSON
    text, so tasks of any shape share one parquet column type)."""
    return [
        {
            "data_source": env_name,
            "prompt": [{"role": "user", "content": task.prompt}],
            "ability": env_name,
            "reward_model": {"style": "rule", "ground_truth": json.dumps(task.to_dict())},
            "extra_info": {"split": split, "index": i},
        }
        for i, task in enumerate(tasks)
    ]


def write_parquet(rows: list[dict[str, Any]], path: str) -> None:
    """Write rows with pyarrow (a dependency of `datasets`, which TRL brings), making the
    file's folder first."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit("assay: error: writing parquet needs pyarrow (pip install pyarrow)") from None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _fail(message: str) -> NoReturn:
    print(f"assay: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m assay.integrations.verl",
        description="Write an assay env's tasks as veRL parquet (data_source, prompt, "
                    "reward_model.ground_truth, extra_info).",
    )
    parser.add_argument("env")
    parser.add_argument("--out", required=True, help="Output .parquet file (its folders are made).")
    parser.add_argument("-n", type=int, default=1000, help="Generated tasks (default 1000).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", default=None, help="A JSONL task file instead of generating.")
    parser.add_argument("--split", default="train")
    args = parser.parse_args(argv)
    if args.n < 1:
        _fail(f"-n must be at least 1, got {args.n}")
    if args.seed < 0:  # as `assay sample`: a negative seed would repeat another's tasks
        _fail(f"--seed must be at least 0, got {args.seed}")
    if Path(args.out).is_dir():
        _fail(f"--out {args.out} is a folder; name the .parquet file to write")
    try:
        env = get_env(args.env)
    except Exception as exc:  # one line, exit 2: an unknown env, bad options
        _fail(first_line(exc))
    try:
        tasks = read_task_file(env, args.tasks) if args.tasks else env.generate(args.n, seed=args.seed)
    except TaskFileUnusable as exc:  # one line, as `assay train` says it
        env.close()
        _fail(f"{exc}; nothing to write")
    except Exception as exc:  # one line, exit 2: an env that cannot generate
        env.close()
        _fail(first_line(exc))
    if not tasks:
        env.close()
        _fail(f"env {args.env!r} made no tasks; nothing to write")
    try:
        write_parquet(verl_rows(args.env, tasks, args.split), args.out)
    except OSError as exc:  # a read-only folder, a full disk, a parent that is a file
        _fail(f"cannot write {args.out}: {exc.strerror or exc}")
    finally:
        env.close()
    print(f"{len(tasks)} {args.env} tasks -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
