"""Verification's share of a code-training step on the code organism.

    python bench/code_step_share.py [--model organism:code] [--steps 6] [--warmup 1]

Runs `assay train --env code --reward verifier` steps (the organism's own settings: 16
prompts x 8 completions, every completion run against all of its task's tests in the
sandbox) and prints, per step, the trainer's `verify_time` (the sandboxed verdicts of
the step, `make_groups`) against its `step_time` (rollout, scoring, verification and the
update), then the medians and the share. The first `--warmup` steps are left out of the
medians: the first step starts the sandbox's workers. No validation runs in between.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="organism:code", help="a code organism preset")
    parser.add_argument("--steps", type=int, default=6, help="training steps")
    parser.add_argument("--warmup", type=int, default=1, help="first steps left out of the medians")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from assay.training import Trainer, resolve

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        config = resolve(flags={"model": args.model, "env": "code", "reward": "verifier",
                                "steps": args.steps, "seed": args.seed, "out": str(out),
                                "eval_every": 0, "save_every": 0})
        print(f"machine: {os.cpu_count()} cores; load {load()}; {config.prompts_per_step} prompts "
              f"x {config.group_size} completions, <= {config.max_new_tokens} new tokens")
        trainer = Trainer(config, quiet=True)
        trainer.train()
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "verify_time" in r and "step_time" in r]
    for r in steps:
        verdicts = {k.split("/", 1)[1]: r[k] for k in sorted(r) if k.startswith("verdicts/") and r[k]}
        print(f"  step {r['step']}: verify {r['verify_time']:.3f} s of {r['step_time']:.2f} s "
              f"({r['verify_time'] / r['step_time']:.1%}), {r.get('verify_pairs', '?')} distinct "
              f"programs  {verdicts}")
    timed = steps[args.warmup:] or steps
    verify = statistics.median(r["verify_time"] for r in timed)
    step = statistics.median(r["step_time"] for r in timed)
    share = statistics.median(r["verify_time"] / r["step_time"] for r in timed)
    print(f"median over steps {timed[0]['step']}-{timed[-1]['step']} (load {load()}): "
          f"verify {verify:.3f} s, step {step:.2f} s, verification share {share:.1%}")


if __name__ == "__main__":
    sys.exit(main())
