"""Audit every reasoning-gym dataset's scorer: `assay audit rg:<dataset>`, one at a time.

Each dataset's audit (N generated tasks, the generic probes, the tasks' gold `answer` as
the correctness check) runs in a forked child of its own, in its own process group, so
that a slow generator or scorer is killed at the per-dataset cap (`--cap` seconds) with
its verification workers and cannot stall the run. It writes, under `--out`:

    audit-rg.json   one record per dataset: tasks, gold accepted/tried, each probe's
                    false positives/tried/errors, the first false positives, seconds,
                    and "status": ok | gold-rejected | timeout | error
    audit-rg.md     the same as a markdown table
    repro/          one `{"task", "completion"}` line per finding (a probe's first accepted
                    hack, or the first rejected gold answer): `assay verify rg:X FILE`

The JSON is rewritten after every dataset, so an interrupted run keeps what it measured.

    python scripts/audit-rg.py -n 10 --cap 90                 # every dataset
    python scripts/audit-rg.py -n 10 --only chain_sum,maze    # some of them
    python scripts/audit-rg.py --set guards=false             # the scorers alone
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: composite mixes the other datasets (and needs a `datasets` option): its scorers are theirs
SKIPPED = {"composite": "a mixture of the other datasets; needs the `datasets` option"}
#: the largest completion a reproducer file keeps (a huge_answer finding is 100,000 chars)
REPRO_MAX = 20_000


def audit_one(dataset: str, n: int, seed: int, out: str, repro_dir: str, options: dict[str, str]) -> None:
    """The child: audit `rg:<dataset>` and write its record as JSON to `out`."""
    os.setsid()  # our own process group: the parent kills it with the workers
    from assay.audit.audit import AuditError, audit
    from assay.envs import get_env

    record: dict[str, Any] = {"dataset": dataset}
    start = time.monotonic()
    env = get_env(f"rg:{dataset}", **options)
    try:
        tasks = env.generate(n, seed=seed)
        record["generate_s"] = round(time.monotonic() - start, 2)
        record["tasks"] = len(tasks)
        record["gold_tried"] = sum(t.get("answer") not in (None, "") for t in tasks)
        try:
            result = audit(env, tasks)
        except AuditError as exc:  # every gold answer rejected: the probes prove nothing
            record.update(status="gold-rejected", gold_accepted=0, detail=str(exc)[:300])
            record["repro"] = save_gold_repro(env, tasks, dataset, repro_dir)
        else:
            ref = result["reference"]
            record.update(status="ok", gold_tried=ref["tried"], gold_accepted=ref["accepted"])
            record["probes"] = {p["name"]: {"fp": p["false_positives"], "tried": p["tried"],
                                            "errors": p["errors"]} for p in result["probes"]}
            record["examples"] = {p["name"]: p["examples"] for p in result["probes"] if p["examples"]}
            if ref["examples"]:
                record["examples"]["gold"] = ref["examples"]
            record["repro"] = save_repros(env, tasks, result, dataset, repro_dir)
    except Exception as exc:  # a generator or scorer that breaks is a finding, not a crash
        record.update(status="error", detail=f"{type(exc).__name__}: {exc}"[:300])
    finally:
        env.close()
    record["seconds"] = round(time.monotonic() - start, 2)
    Path(out).write_text(json.dumps(record), encoding="utf-8")


def _write_pair(path: Path, task: Any, completion: str) -> str | None:
    if len(completion) > REPRO_MAX:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": task.to_dict(), "completion": completion},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    return str(path)


def save_gold_repro(env: Any, tasks: list[Any], dataset: str, repro_dir: str) -> dict[str, str]:
    from assay.audit.probes import find_wrapper, reference_answer

    refs = {t.id: r for t in tasks if (r := reference_answer(env, t)) is not None}
    wrapper = find_wrapper(env, tasks, refs)
    for task in tasks:
        if task.id in refs:
            saved = _write_pair(Path(repro_dir) / f"{dataset}.gold.jsonl", task, wrapper.format(refs[task.id]))
            return {"gold": saved} if saved else {}
    return {}


def save_repros(env: Any, tasks: list[Any], result: dict[str, Any], dataset: str,
                repro_dir: str) -> dict[str, str]:
    """The first accepted hack of each probe with a finding, and the first rejected gold
    answer, each rebuilt in full (the result's examples are cut at 300 characters)."""
    from assay.audit.audit import probe_table
    from assay.audit.probes import AuditContext, find_wrapper, reference_answer

    refs = {t.id: r for t in tasks if (r := reference_answer(env, t)) is not None}
    ctx = AuditContext(env, find_wrapper(env, tasks, refs), refs, first=tasks[0])
    by_id = {t.id: t for t in tasks}
    saved: dict[str, str] = {}
    if result["reference"]["examples"]:
        task = by_id[result["reference"]["examples"][0]["task_id"]]
        if (path := _write_pair(Path(repro_dir) / f"{dataset}.gold.jsonl", task, ctx.wrap(refs[task.id]))):
            saved["gold"] = path
    table = probe_table(env)
    for probe in result["probes"]:
        if not probe["examples"]:
            continue
        task = by_id.get(probe["examples"][0]["task_id"])
        if task is None:
            continue
        attempts = table[probe["name"]](ctx, task)
        verdicts = env.verify_many(attempts)
        for (t, completion), verdict in zip(attempts, verdicts, strict=True):
            if verdict.correct:
                if (path := _write_pair(Path(repro_dir) / f"{dataset}.{probe['name']}.jsonl", t, completion)):
                    saved[probe["name"]] = path
                break
    return saved


def run_one(dataset: str, n: int, seed: int, cap: float, repro_dir: str,
            options: dict[str, str]) -> dict[str, Any]:
    """Audit one dataset in a child, killed (with its workers) at `cap` seconds."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    start = time.monotonic()
    child = mp.get_context("fork").Process(target=audit_one, args=(dataset, n, seed, out, repro_dir, options))
    child.start()
    child.join(cap)
    if child.is_alive():
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.join()
        record = {"dataset": dataset, "status": "timeout", "detail": f"killed at the cap of {cap:g} s"}
    else:
        try:
            record = json.loads(Path(out).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {"dataset": dataset, "status": "error", "detail": f"the child exited {child.exitcode}"}
        try:  # workers the child left behind
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    Path(out).unlink(missing_ok=True)
    record["wall_s"] = round(time.monotonic() - start, 2)
    return record


def findings(record: dict[str, Any]) -> list[str]:
    """What a record found: probes with false positives, rejected gold answers."""
    found = [name for name, p in record.get("probes", {}).items() if p["fp"]]
    if record.get("status") == "gold-rejected" or record.get("gold_accepted", 0) < record.get("gold_tried", 0):
        found.insert(0, "gold rejected")
    return found


def markdown(records: list[dict[str, Any]], probes: list[str], meta: dict[str, Any]) -> str:
    short = {"empty_answer": "empty", "multiple_answers": "multiple", "reasoning_only": "reasoning",
             "prompt_copy": "prompt copy", "format_only": "format", "huge_answer": "huge",
             "lookalike_unicode": "lookalike", "restated_numbers": "numbers",
             "hedged_answer": "hedged", "given_numbers": "given numbers"}
    options = " ".join(f"--set {k}={v}" for k, v in meta["options"].items())
    lines = [f"reasoning-gym scorers audited: {meta['audited']} datasets, -n {meta['n']}, seed "
             f"{meta['seed']}, cap {meta['cap']:g} s{', ' + options if options else ''}, "
             f"{meta['total_s']:.0f} s in all. Cells are "
             "false positives/tried; gold is accepted/tried.", "",
             "| dataset | status | tasks | gold | " + " | ".join(short.get(p, p) for p in probes)
             + " | errors | seconds |",
             "|---" * (len(probes) + 6) + "|"]
    for r in records:
        cells = []
        for name in probes:
            p = r.get("probes", {}).get(name)
            cells.append("" if p is None else (f"**{p['fp']}**/{p['tried']}" if p["fp"] else f"0/{p['tried']}"))
        gold = f"{r['gold_accepted']}/{r['gold_tried']}" if "gold_accepted" in r else ""
        errors = sum(p["errors"] for p in r.get("probes", {}).values()) if r.get("probes") else ""
        lines.append(f"| {r['dataset']} | {r['status']} | {r.get('tasks', '')} | {gold} | "
                     + " | ".join(cells) + f" | {errors} | {r.get('wall_s', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10, help="generated tasks per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cap", type=float, default=90.0, help="seconds per dataset before it is killed")
    parser.add_argument("--only", default="", help="comma-separated datasets (default: all)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "audit-rg"), help="output folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of every env (guards=false: the scorers alone)")
    args = parser.parse_args(argv)
    options = dict(item.split("=", 1) for item in args.set if "=" in item)

    import reasoning_gym.factory  # imported once here, inherited by every child

    names = sorted(reasoning_gym.factory.DATASETS)
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown dataset(s): {', '.join(unknown)}")
        names = wanted
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    start = time.monotonic()
    meta: dict[str, Any] = {"n": args.n, "seed": args.seed, "cap": args.cap,
                            "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "options": options}
    for name in names:
        if name in SKIPPED:
            records.append({"dataset": name, "status": "skipped", "detail": SKIPPED[name]})
            continue
        record = run_one(name, args.n, args.seed, args.cap, str(out / "repro"), options)
        records.append(record)
        found = findings(record)
        print(f"{name:28s} {record['status']:13s} {record['wall_s']:7.1f} s"
              + (f"  FOUND: {', '.join(found)}" if found else ""), file=sys.stderr, flush=True)
        meta.update(total_s=round(time.monotonic() - start, 1),
                    audited=sum(r["status"] != "skipped" for r in records),
                    with_findings=sum(bool(findings(r)) for r in records))
        (out / "audit-rg.json").write_text(json.dumps({"meta": meta, "datasets": records}, indent=1,
                                                      ensure_ascii=False) + "\n", encoding="utf-8")
    probes: list[str] = []
    for r in records:
        probes += [p for p in r.get("probes", {}) if p not in probes]
    (out / "audit-rg.md").write_text(markdown(records, probes, meta), encoding="utf-8")
    print(f"{meta.get('audited', 0)} datasets audited, {meta.get('with_findings', 0)} with findings, "
          f"{meta.get('total_s', 0):.0f} s; {out / 'audit-rg.json'}, {out / 'audit-rg.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
