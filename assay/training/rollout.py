"""Rollout engines: sample completions from the policy behind one interface.

`HFEngine` uses transformers' `generate` (CPU and GPU; the default). `VLLMEngine` uses
vLLM (the `vllm` extra, imported only when asked for); it needs a GPU and has not been
run on the machines this project is tested on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


class EngineError(RuntimeError):
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
    """transformers `generate` with the KV cache, on the training model itself."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id

    @torch.no_grad()
    def generate(
        self, prompts, n, *, temperature=1.0, top_p=1.0, max_new_tokens=64, greedy=False, seed=0
    ):
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every prompt ends at the same column
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        torch.manual_seed(seed)  # sampling depends on (seed) only: reproducible and resumable
        sampling = {} if greedy else {"temperature": temperature, "top_p": top_p, "top_k": 0}
        was_training = self.model.training
        self.model.eval()
        out = self.model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            do_sample=not greedy,
            num_return_sequences=1 if greedy else n,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
            **sampling,
        )
        self.model.train(was_training)
        completions = out[:, width:].tolist()
        rows = [_cut(row, self.eos_id) for row in completions]
        if greedy:  # one greedy completion per prompt, repeated n times
            return [[rows[i]] * n for i in range(len(prompts))]
        return [rows[i * n : (i + 1) * n] for i in range(len(prompts))]


def _cut(row: list[int], eos_id: int) -> Generation:
    """Tokens up to and including the first end token (generate pads after it)."""
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
