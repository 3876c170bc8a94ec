"""Rollout engines: sample completions from the policy behind one interface.

`HFEngine` (the default; CPU and GPU) is a sampling loop of its own on the training model
with its KV cache, not transformers' `generate`: it reads each distinct prompt once and
drops finished completions from the batch (see `HFEngine` and docs/training.md, "Speed").
`VLLMEngine` uses vLLM (the `vllm` extra, imported only when asked for); it needs a GPU
and has not been run on the machines this project is tested on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from assay.errors import AssayError
from assay.training.policy import cache_argument, prefill


class EngineError(AssayError, RuntimeError):
    """A rollout engine that cannot be used here (e.g. vLLM not installed)."""


@dataclass
class Generation:
    """One sampled completion: its token ids (the end token included when it finished)."""

    token_ids: list[int]
    finished: bool


class RolloutEngine(ABC):
    """Samples `n` completions for each prompt (token ids in, token ids out)."""

    @abstractmethod
    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        greedy: bool = False,
        seed: int = 0,
    ) -> list[list[Generation]]:
        """For each prompt, `n` generations (a list per prompt, in prompt order)."""

    def sync_weights(self, model) -> None:  # noqa: B027 - engines sharing the model need nothing
        """Make the engine sample from the current weights of `model` (after an update)."""


class HFEngine(RolloutEngine):
    """Sampling on the training model itself (any Hugging Face causal LM), with its KV cache.

    A plain loop rather than transformers' `generate`, for two savings `generate` cannot
    make: each distinct prompt is read once and its keys and values repeated for its `n`
    completions (`generate` reads every copy), and a completion that has ended leaves the
    batch instead of being carried to the end as padding. On the organism that halves the
    rollout time. Each token is drawn from softmax(logits / temperature), cut to the top-p
    nucleus when top_p < 1: the distribution the loss's log-probs are taken under.
    """

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id

    # no_grad rather than inference_mode: a model may refresh a buffer in its forward (dynamic
    # RoPE does), and an inference tensor kept in the model would break the training pass.
    @torch.no_grad()
    def generate(
        self, prompts, n, *, temperature=1.0, top_p=1.0, max_new_tokens=64, greedy=False, seed=0
    ):
        model = self.model
        device = next(model.parameters()).device
        copies = 1 if greedy else n  # one greedy completion per prompt, repeated n times below
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every prompt ends at the same column
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        # Sampling depends on (seed) only: reproducible and resumable.
        generator = torch.Generator(device=device).manual_seed(seed)
        was_training = model.training
        model.eval()
        # Each prompt once; its cache rows are then repeated for its copies.
        last, cache = prefill(model, ids, mask)
        cache_arg = cache_argument(model)
        cache.batch_repeat_interleave(copies)
        logits = last.repeat_interleave(copies, 0)
        mask = mask.repeat_interleave(copies, 0)
        position = mask.sum(-1, keepdim=True)  # of the next token
        live = torch.arange(len(prompts) * copies, device=device)  # rows still generating
        tokens = torch.full((len(live), max_new_tokens), self.pad_id, device=device)
        for t in range(max_new_tokens):
            nxt = _draw(logits, temperature, top_p, greedy, generator)
            tokens[live, t] = nxt
            ended = nxt == self.eos_id
            if t == max_new_tokens - 1 or bool(ended.all()):
                break
            if bool(ended.any()):  # ended rows leave the batch, cache included
                keep = (~ended).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                live, nxt, mask, position = live[keep], nxt[keep], mask[keep], position[keep]
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], 1)
            logits = model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=position,
                use_cache=True,
                **{cache_arg: cache},
            ).logits[:, -1]
            position = position + 1
        model.train(was_training)
        rows = [_cut(row, self.eos_id) for row in tokens.tolist()]
        if greedy:
            return [[rows[i]] * n for i in range(len(prompts))]
        return [rows[i * n : (i + 1) * n] for i in range(len(prompts))]


def _draw(logits, temperature, top_p, greedy, generator) -> torch.Tensor:
    """One token per row: the argmax, or a sample from softmax(logits / T) within top-p."""
    if greedy:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_p < 1.0:  # keep the most likely tokens until their mass reaches top_p (at least one)
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        outside = probs.cumsum(-1) - probs >= top_p  # the mass before this token is enough
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(outside, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)


def _cut(row: list[int], eos_id: int) -> Generation:
    """Tokens up to and including the first end token (padding follows it)."""
    if eos_id in row:
        end = row.index(eos_id)
        return Generation(row[: end + 1], True)
    return Generation(row, False)


class VLLMEngine(RolloutEngine):
    """vLLM sampling, with the policy's weights copied in after each update.

    Untested here (it needs a GPU and the `vllm` extra); the weight copy uses vLLM's
    `load_weights`, whose location has moved between vLLM versions.
    """

    def __init__(self, model_path: str, tokenizer, *, gpu_memory_utilization: float = 0.3):
        try:
            from vllm import LLM
        except ImportError:
            raise EngineError(
                "engine 'vllm' needs the vllm package: pip install 'assay[vllm]' (GPU only)"
            ) from None
        self.llm = LLM(
            model=model_path,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
        )
        self.eos_id = tokenizer.eos_token_id

    def generate(
        self, prompts, n, *, temperature=1.0, top_p=1.0, max_new_tokens=64, greedy=False, seed=0
    ):
        from vllm import SamplingParams

        params = SamplingParams(
            n=1 if greedy else n,
            temperature=0.0 if greedy else temperature,
            top_p=top_p,
            max_tokens=max_new_tokens,
            seed=seed,
            stop_token_ids=[self.eos_id],
        )
        outputs = self.llm.generate(
            [{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False
        )
        result = []
        for out in outputs:
            gens = [Generation(list(c.token_ids), c.finish_reason == "stop") for c in out.outputs]
            result.append(gens * n if greedy else gens)
        return result

    def sync_weights(self, model) -> None:
        engine = self.llm.llm_engine
        runner = engine.model_executor.driver_worker.model_runner
        runner.model.load_weights(model.state_dict().items())


def make_engine(name: str, model, tokenizer, model_path: str) -> RolloutEngine:
    if name == "hf":
        return HFEngine(model, tokenizer)
    if name == "vllm":
        return VLLMEngine(model_path, tokenizer)
    raise ValueError(f"unknown engine {name!r} (hf, vllm)")
