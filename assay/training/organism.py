"""The model organism: a ~1M-parameter Llama that does compact countdown on a CPU.

`--model organism` resolves to a directory in Hugging Face format (config.json,
model.safetensors, a character-level `PreTrainedTokenizerFast`) that is loaded exactly
like any other model. The directory is a supervised *prior*, built on first use
(minutes on 2 cores) and cached under `$ASSAY_CACHE/organism/` (default
`~/.cache/assay/organism/`), one folder per variant.

The prior teaches two skills in the countdown env's compact form:
  solve:   `5 1 2>007:` → `5+1*2` then the end token;
  verify:  `5 1 2>007:5+1*2?` → `=2=007T` (or `…F`) then the end token,
so that `self_verify` has a verifier to call. The verification reply works the
expression out one operation at a time (`1*2` is 2, then `5+2` is 7, zero-padded like
the target) and then compares with the target: single-digit arithmetic plus digit
copying, which a tiny model learns far better than a bare T/F guess (that guess mostly
echoed its own solving confidence). The builder controls how well the
model's confidence aligns with correctness: on a *systematically wrong* class of
problems (first number ≤ `wrong_below`) the supervised answer has its first operator
swapped, so the model is confidently wrong there while its verification skill, trained
on true labels, knows better. Intrinsic rewards sharpen the wrong answers; the
external ones can repair them. docs/training.md explains the choices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

#: Bump when the builder changes in a way that changes what it builds.
FORMAT_VERSION = 3
PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
CHARS = "0123456789+-*/() >:?TF="

#: Env options that make countdown tasks the organism can read.
ENV_OPTIONS = {
    "prompt_style": "compact",
    "min_numbers": 3,
    "max_numbers": 3,
    "min_value": 1,
    "max_value": 9,
    "min_target": 0,
    "max_target": 999,
}
#: Training settings suited to the organism (the trainer uses them unless told otherwise).
TRAIN_DEFAULTS = {
    "learning_rate": 1e-4,
    "prompts_per_step": 16,
    "group_size": 8,
    "max_new_tokens": 12,
    "verify_max_new_tokens": 12,  # `=-72=-080F` and the end token, with room to spare
    "eval_every": 10,
    "val_size": 128,
    "val_samples": 4,
    "warmup_steps": 0,
    "lr_schedule": "constant",
}


@dataclass(frozen=True)
class PriorSpec:
    """Everything that decides what a prior is; its hash names the cache folder."""

    sft_steps: int = 2000  #: supervised steps (≈ 3 min on 2 idle cores)
    batch_size: int = 64
    learning_rate: float = 1e-3
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 512
    #: problems whose first number is ≤ this get a confidently wrong supervised answer
    #: (first operator swapped); 0 = none, 3 ≈ a third of problems
    wrong_below: int = 3
    #: fraction of supervised examples that teach verification instead of solving
    verify_fraction: float = 0.5
    #: fraction of solving examples taught a randomly corrupted answer: spreads some
    #: probability onto errors, opening a gap between sampled and greedy accuracy
    answer_noise: float = 0.15
    #: the SFT learning rate decays (cosine) to this fraction of its peak; a higher floor
    #: leaves the prior less sharp
    final_lr_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sft_steps < 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("need sft_steps >= 0, batch_size >= 1, learning_rate > 0")
        if self.hidden_size % self.heads:
            raise ValueError("hidden_size must be a multiple of heads")
        if not 0 <= self.wrong_below <= 9:
            raise ValueError("wrong_below must be in 0..9")
        if not 0.0 <= self.verify_fraction < 1.0:
            raise ValueError("verify_fraction must be in [0, 1)")
        if not 0.0 <= self.answer_noise < 1.0 or not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError("answer_noise must be in [0, 1) and final_lr_fraction in [0, 1]")

    def key(self) -> str:
        blob = json.dumps({"v": FORMAT_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


#: Named variants. `tiny` builds in seconds, for tests: it has the reply formats, little skill.
PRESETS: dict[str, PriorSpec] = {
    "default": PriorSpec(),
    "honest": PriorSpec(wrong_below=0),
    "tiny": PriorSpec(sft_steps=150, batch_size=32),
}


def make_spec(preset: str = "default", **overrides: Any) -> PriorSpec:
    """A `PriorSpec` from a preset name and field overrides (strings are coerced)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown organism preset {preset!r} (known: {', '.join(PRESETS)})")
    base = PRESETS[preset]
    fields = {f.name: f for f in dataclasses.fields(PriorSpec)}
    values = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ValueError(f"unknown prior option {key!r} (options: {', '.join(fields)})")
        kind = type(getattr(base, key))
        try:
            values[key] = kind(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"prior option {key!r} expects {kind.__name__}, got {value!r}"
            ) from None
    return dataclasses.replace(base, **values)


def cache_root() -> Path:
    root = os.environ.get("ASSAY_CACHE") or os.path.join(Path.home(), ".cache", "assay")
    return Path(root) / "organism"


def is_organism(model: str) -> bool:
    return model == "organism" or model.startswith("organism:")


def parse_organism(model: str) -> str:
    """`organism` → "default", `organism:tiny` → "tiny"."""
    return model.partition(":")[2] or "default"


# -- tokenizer --------------------------------------------------------------------------


def make_tokenizer():
    """A character-level `PreTrainedTokenizerFast`: one token per character of `CHARS`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *CHARS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left"
    )


# -- supervised data --------------------------------------------------------------------

_OPS = "+-*/"
_SWAP = {"+": "-", "-": "+", "*": "+", "/": "*"}


def _solutions(numbers: tuple[int, int, int]) -> dict[int, str]:
    """target -> the canonical expression for three numbers.

    Canonical = the first match in a fixed order: numbers in prompt order before other
    orders, `a?b?c` before `(a?b)?c` before `a?(b?c)`, operators in the order + - * /.
    A consistent rule is what a tiny model can learn. Only integer results count.
    """
    found: dict[int, str] = {}
    for a, b, c in dict.fromkeys(itertools.permutations(numbers)):
        x, y, z = Fraction(a), Fraction(b), Fraction(c)
        for o1, o2 in itertools.product(_OPS, repeat=2):
            flat = (
                _apply(o1, x, _apply(o2, y, z))  # a?(b?c) when the second op binds tighter
                if o2 in "*/" and o1 in "+-"
                else _apply(o2, _apply(o1, x, y), z)
            )
            candidates = (
                (f"{a}{o1}{b}{o2}{c}", flat),
                (f"({a}{o1}{b}){o2}{c}", _apply(o2, _apply(o1, x, y), z)),
                (f"{a}{o1}({b}{o2}{c})", _apply(o1, x, _apply(o2, y, z))),
            )
            for text, value in candidates:
                if value is not None and value.denominator == 1 and int(value) not in found:
                    found[int(value)] = text
    return found


def _apply(op: str, left: Fraction | None, right: Fraction | None) -> Fraction | None:
    if left is None or right is None:
        return None
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    return None if right == 0 else left / right


_TABLE: dict[tuple[int, int, int], dict[int, str]] = {}


def canonical_solution(numbers: list[int], target: int) -> str | None:
    key = tuple(numbers)
    if len(key) != 3:
        return None
    if key not in _TABLE:
        _TABLE[key] = _solutions(key)  # type: ignore[arg-type]
    return _TABLE[key].get(target)


def taught_answer(spec: PriorSpec, numbers: list[int], target: int) -> str | None:
    """The supervised answer: canonical, or systematically wrong on the wrong class."""
    answer = canonical_solution(numbers, target)
    if answer is None or numbers[0] > spec.wrong_below:
        return answer
    for i, ch in enumerate(answer):
        if ch in _SWAP:
            return answer[:i] + _SWAP[ch] + answer[i + 1 :]
    return answer


def _corrupt(rng: random.Random, answer: str, numbers: list[int]) -> str:
    """A plausible wrong answer: change an operator, or a number, or swap the operator first."""
    chars = list(answer)
    ops = [i for i, ch in enumerate(chars) if ch in _OPS]
    digits = [i for i, ch in enumerate(chars) if ch.isdigit()]
    kind = rng.random()
    if kind < 0.5 and ops:
        i = rng.choice(ops)
        chars[i] = rng.choice([o for o in _OPS if o != chars[i]])
    elif digits:
        i = rng.choice(digits)
        chars[i] = rng.choice([d for d in "123456789" if d != chars[i]])
    return "".join(chars)


def make_examples(spec: PriorSpec, env, n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (prompt, target text) supervised pairs: solving and verifying examples."""
    from assay.envs.countdown import compact_prompt

    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    tasks = env.generate(n, seed=seed)
    for task in tasks:
        numbers, target = list(task["numbers"]), task["target"]
        prompt = compact_prompt(numbers, target)
        if rng.random() >= spec.verify_fraction:
            answer = taught_answer(spec, numbers, target)
            if answer is not None and rng.random() < spec.answer_noise:
                answer = _corrupt(rng, answer, numbers)
            if answer is not None:
                out.append((prompt, answer))
            continue
        right = canonical_solution(numbers, target)
        if right is None:
            continue
        roll = rng.random()  # about as many wrong candidates as right ones
        if roll < 0.4:
            candidate = right
        elif roll < 0.6:
            candidate = taught_answer(spec, numbers, target) or right
        else:
            candidate = _corrupt(rng, right, numbers)
        out.append((prompt + candidate + "?", verification_reply(candidate, numbers, target)))
    return out


def verification_reply(answer: str, numbers: list[int], target: int) -> str:
    """The taught judgement of `answer`: its working, then `T` or `F`.

    `5+1*2` → `=2=007T`: `=` and the value of each operation in the order it is done,
    the last (the answer's value) zero-padded to 3 digits like the prompt's target so
    that comparing it is copying digits. `?` stands for a value that is not an integer;
    `=?F` answers an expression that does not parse or divides by zero. The verdict is
    the real verifier's, so hitting the target with the wrong numbers still gets `F`.
    """
    from assay.verifiers.countdown import check_countdown, parse_expression

    verdict = "T" if check_countdown(answer, numbers, target).correct else "F"
    tree = parse_expression(answer)
    if isinstance(tree, str):
        return "=?" + verdict
    steps: list[Fraction] = []
    try:
        value = _evaluate_in_steps(tree, steps)
    except ZeroDivisionError:
        return "=?" + verdict
    shown = [_show(v) for v in steps[:-1]] + [_show(value, width=3)]
    return "=" + "=".join(shown) + verdict


def _evaluate_in_steps(tree, steps: list[Fraction]) -> Fraction:
    """The value of a parsed expression; appends each operation's result to `steps`."""
    import ast

    if isinstance(tree, ast.Constant):
        return Fraction(tree.value)
    if isinstance(tree, ast.UnaryOp):  # unary minus, the only one the parser allows
        return -_evaluate_in_steps(tree.operand, steps)
    left = _evaluate_in_steps(tree.left, steps)
    right = _evaluate_in_steps(tree.right, steps)
    op = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(tree.op)]
    if op == "/" and right == 0:
        raise ZeroDivisionError
    value = _apply(op, left, right)
    assert value is not None
    steps.append(value)
    return value


def _show(value: Fraction, width: int = 1) -> str:
    if value.denominator != 1:
        return "?"
    return ("-" if value < 0 else "") + str(abs(int(value))).zfill(width)


# -- building ---------------------------------------------------------------------------


def organism_env():
    from assay.envs.countdown import CountdownEnv

    return CountdownEnv(**ENV_OPTIONS)


def build_model(spec: PriorSpec, tokenizer):
    """A randomly initialised LlamaForCausalLM of the organism's shape."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(spec.seed)
    return LlamaForCausalLM(config)


def _collate(tokenizer, pairs: list[tuple[str, str]]):
    """Right-padded input ids and labels that score only the answer and its end token."""
    import torch

    rows, labels = [], []
    for prompt, answer in pairs:
        p = tokenizer.encode(prompt, add_special_tokens=False)
        a = tokenizer.encode(answer, add_special_tokens=False) + [tokenizer.eos_token_id]
        rows.append(p + a)
        labels.append([-100] * len(p) + a)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    lab = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, lb) in enumerate(zip(rows, labels, strict=True)):
        ids[i, : len(r)] = torch.tensor(r)
        lab[i, : len(lb)] = torch.tensor(lb)
        mask[i, : len(r)] = 1
    return ids, mask, lab


def train_prior(
    spec: PriorSpec, progress: Callable[[int, int, float], None] | None = None
) -> tuple[Any, Any, dict[str, float]]:
    """Supervised training of a fresh organism; returns (model, tokenizer, evaluation)."""
    import torch

    tokenizer = make_tokenizer()
    model = build_model(spec, tokenizer)
    env = organism_env()
    examples = make_examples(spec, env, spec.sft_steps * spec.batch_size, seed=spec.seed + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.0)
    floor = spec.final_lr_fraction

    def lr_factor(step: int) -> float:
        cosine = 0.5 * (1 + math.cos(math.pi * min(step / max(spec.sft_steps, 1), 1.0)))
        return floor + (1 - floor) * cosine

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    for step in range(spec.sft_steps):
        batch = examples[step * spec.batch_size : (step + 1) * spec.batch_size]
        ids, mask, labels = _collate(tokenizer, batch)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, spec.sft_steps, loss.item())
    model.eval()
    return model, tokenizer, evaluate_prior(spec, model, tokenizer, env)


def evaluate_prior(spec: PriorSpec, model, tokenizer, env, n: int = 256) -> dict[str, float]:
    """Greedy solve accuracy (all / the wrong class) and verification accuracy on fresh tasks.

    Verification is scored on the model's own greedy answers. Those are mostly wrong, so
    plain agreement flatters a judge that says `F` to everything; `verify_true_rate`
    (correct answers judged T) and `verify_false_rate` (wrong ones judged F) show both sides.
    """
    from assay.verifiers.countdown import check_countdown

    tasks = env.generate(n, seed=10_000 + spec.seed)
    prompts = [t.prompt for t in tasks]
    replies = _greedy(model, tokenizer, prompts, max_new_tokens=12)
    solved = [env.check_completion(t, r).correct for t, r in zip(tasks, replies, strict=True)]
    wrong = [s for t, s in zip(tasks, solved, strict=True) if t["numbers"][0] <= spec.wrong_below]
    # Verification, on the model's own greedy answers: does it judge them correctly?
    asks = [
        env.verification_prompt(t, r.strip() or "0") for t, r in zip(tasks, replies, strict=True)
    ]
    judged = _greedy(model, tokenizer, asks, max_new_tokens=TRAIN_DEFAULTS["verify_max_new_tokens"])
    truth = [
        check_countdown(r.strip() or "0", list(t["numbers"]), t["target"]).correct
        for t, r in zip(tasks, replies, strict=True)
    ]
    said = [env.parse_verification(j) for j in judged]
    agree = [s == y for s, y in zip(said, truth, strict=True)]

    def rate(answer_was: bool) -> float:
        """Of the answers whose truth is `answer_was`, the fraction judged so."""
        cases = [a for a, y in zip(agree, truth, strict=True) if y == answer_was]
        return sum(cases) / len(cases) if cases else float("nan")

    return {
        "greedy_accuracy": sum(solved) / n,
        "wrong_class_accuracy": sum(wrong) / len(wrong) if wrong else float("nan"),
        "verify_accuracy": sum(agree) / n,
        "verify_true_rate": rate(True),
        "verify_false_rate": rate(False),
    }


def _greedy(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    import torch

    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **enc,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def prior_path(spec: PriorSpec, name: str = "default") -> Path:
    return cache_root() / f"{name}-{spec.key()}"


def ensure_prior(
    spec: PriorSpec, name: str = "default", *, quiet: bool = False, rebuild: bool = False
) -> Path:
    """The directory of a built prior, building it first if it is not cached.

    Parallel callers (pytest-xdist workers) wait on a file lock; the build happens in a
    temporary folder renamed into place, so no one ever loads a half-written prior.
    """
    from filelock import FileLock

    from assay.training.policy import quiet_transformers

    quiet_transformers()
    path = prior_path(spec, name)
    if (path / "assay.json").exists() and not rebuild:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / "assay.json").exists() and not rebuild:
            return path
        start = time.perf_counter()
        model, tokenizer, scores = _train_with_bar(spec, name, quiet)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {
            "organism": name,
            "spec": dataclasses.asdict(spec),
            "format_version": FORMAT_VERSION,
            "evaluation": scores,
            "build_seconds": round(time.perf_counter() - start, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            "env_options": ENV_OPTIONS,
            "train_defaults": TRAIN_DEFAULTS,
        }
        (tmp / "assay.json").write_text(json.dumps(meta, indent=2) + "\n")
        if path.exists():
            import shutil

            shutil.rmtree(path)
        os.replace(tmp, path)
    return path


def _train_with_bar(spec: PriorSpec, name: str, quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        f"building organism prior '{name}'",
        BarColumn(),
        MofNCompleteColumn(),
        "loss {task.fields[loss]:.3f}",
        TimeRemainingColumn(),
        disable=quiet,
        transient=True,
    ) as bar:
        job = bar.add_task("sft", total=spec.sft_steps, loss=float("nan"))

        def report(step: int, total: int, loss: float) -> None:
            bar.update(job, completed=step, loss=loss)

        return train_prior(spec, report)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `assay.json` next to a model (env options and training defaults), or {}."""
    meta = Path(path) / "assay.json"
    if not meta.is_file():
        return {}
    return json.loads(meta.read_text())
