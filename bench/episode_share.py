"""What multi-turn episodes cost: episodes/s with the Python tool against single turns on
the same prior, and the tool runs' share of a step.

    python bench/episode_share.py [--model organism:tool] [--steps 8] [--warmup 2]

Trains `--steps` verifier steps of the tool organism twice in one process, with the tool
(`env.tools=python`: a call, the sandbox's value, the answer) and without it (one reply
per task, the peer), both with the organism's settings (16 prompts x 8, no validation),
and prints per arm the median step time, episodes per second (128 per step), turns and
tool calls per episode, and the median share of the step the environment took to answer
(`env_time`: every tool run of a turn, in one sandbox batch). The first `--warmup` steps
are left out of the medians: the first starts the sandbox.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def arm(model: str, tools: str, steps: int, seed: int, warmup: int) -> dict[str, float]:
    from assay.training import Trainer, resolve

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        config = resolve(sets={"env.tools": tools},
                         flags={"model": model, "env": "countdown", "reward": "verifier",
                                "steps": steps, "seed": seed, "out": str(out), "eval_every": 0,
                                "save_every": 0})
        Trainer(config, quiet=True).train()
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = rows[warmup:] or rows
    step = statistics.median(r["step_time"] for r in timed)
    episodes = config.prompts_per_step * config.group_size
    return {
        "step": step,
        "episodes_per_s": episodes / step,
        "turns": statistics.mean(r.get("turns", 1.0) for r in timed),
        "tool_calls": statistics.mean(r.get("tool_calls", 0.0) for r in timed),
        "env_share": statistics.median(r.get("env_time", 0.0) / r["step_time"] for r in timed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="organism:tool", help="a tool organism preset")
    parser.add_argument("--steps", type=int, default=8, help="training steps per arm")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the medians")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; load {load()}; {args.model}, {args.steps} steps per arm")
    results = {}
    for tools in ("python", "none"):
        results[tools] = r = arm(args.model, tools, args.steps, args.seed, args.warmup)
        print(f"  tools={tools:6} step {r['step']:.2f} s, {r['episodes_per_s']:.1f} episodes/s, "
              f"{r['turns']:.2f} turns, {r['tool_calls']:.2f} tool calls per episode, "
              f"env share {r['env_share']:.1%}")
    ratio = results["python"]["episodes_per_s"] / results["none"]["episodes_per_s"]
    print(f"episodes/s with the tool / without it: {ratio:.2f}x (load {load()})")


if __name__ == "__main__":
    sys.exit(main())
