"""How long a fresh process takes to load the organism and start: assay's loader (a plain
Llama folder read without transformers, `native_llama`) against transformers'
`AutoModelForCausalLM` / `AutoTokenizer` on the same folder, each in a fresh process.

Three figures per loader, each the median over `--repeats` fresh processes, alternating:
- `load`: the process from its start to a loaded model and tokenizer (imports included);
- `eval`: `assay eval --model organism:tiny -n 4 --samples 2` as a user runs it;
- `train`: `assay train --model organism:tiny --steps 1` (tiny batch) as a user runs it.

For `eval` and `train`, transformers' side is the same command with assay's loader
turned off (`load_native` answering None, so `load_policy` falls back to transformers).

    python bench/load_time.py --repeats 5

Record the figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LOAD = """
import sys
from assay.training import policy
if {transformers}:
    policy.load_native = lambda *args, **kwargs: None
model, tokenizer = policy.load_policy({folder!r})
assert type(model).__name__ == {expected!r}, type(model).__name__
"""

COMMAND = """
import sys
from assay.training import policy
if {transformers}:
    policy.load_native = lambda *args, **kwargs: None
from assay.cli import main
sys.argv = ["assay", *{args!r}]
try:
    main()
except SystemExit as exit:
    if exit.code:
        raise
"""


def timed(script: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"load_time: a run failed:\n{proc.stderr[-2000:]}")
    return seconds


def scripts(folder: str, out: Path, transformers: bool, repeat: int) -> dict[str, str]:
    expected = "LlamaForCausalLM" if transformers else "NativeLlama"
    train = ["train", "--model", "organism:tiny", "--steps", "1", "--quiet", "--out",
             str(out / f"train-{transformers}-{repeat}"), "--set", "prompts_per_step=2",
             "--set", "group_size=2", "--set", "eval_every=0", "--set", "val_size=2"]
    evaluate = ["eval", "--model", "organism:tiny", "-n", "4", "--samples", "2", "--quiet"]
    return {
        "load": LOAD.format(transformers=transformers, folder=folder, expected=expected),
        "eval": COMMAND.format(transformers=transformers, args=evaluate),
        "train": COMMAND.format(transformers=transformers, args=train),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per figure")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    from assay.training.policy import resolve_model_path

    folder = resolve_model_path("organism:tiny", quiet=True)  # built or copied before timing
    times: dict[str, dict[str, list[float]]] = {"assay": {}, "transformers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for side in ("assay", "transformers"):
                for name, script in scripts(folder, Path(tmp), side == "transformers", repeat).items():
                    times[side].setdefault(name, []).append(timed(script))
            print(f"load_time: {repeat + 1}/{args.repeats} rounds", file=sys.stderr, flush=True)
    result = {"machine": f"{os.cpu_count()} cores", "repeats": args.repeats}
    for name in times["assay"]:
        ours, theirs = (statistics.median(times[s][name]) for s in ("assay", "transformers"))
        result[name] = {"assay_s": round(ours, 2), "transformers_s": round(theirs, 2),
                        "speedup": round(theirs / ours, 2)}
        print(f"{name:6s} assay {ours:5.2f} s   transformers {theirs:5.2f} s   {theirs / ours:.2f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
