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
from assay.plain_llama import KVCache, left_pad, plain_forward
from assay.training.policy import forward, prefill, stop_token_ids


class EngineError(AssayError, RuntimeError):
    """A rollout engine that cannot be used here (e.g. vLLM not installed)."""


@dataclass
class Generation:
    """One sampled completion: its token ids (the end token included when it finished).

    A multi-turn episode's completion also holds the environment's observations between
    the model's replies; `model_mask` then marks each token 1 (the model's) or 0 (an
    observation's, never trained on). None: every token is the model's.
    """

    token_ids: list[int]
    finished: bool
    model_mask: list[int] | None = None


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
        self.stop_ids = stop_token_ids(model, tokenizer)  # end of sequence, end of turn
        self.pad_id = tokenizer.pad_token_id
        self.max_positions = learned_positions(model)

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
        if self.max_positions is not None:  # a table of positions ends; rotary ones do not
            if width >= self.max_positions:
                raise EngineError(
                    f"a prompt of {width} tokens fills the model's {self.max_positions} "
                    "positions, leaving none for the completion; shorten the prompt"
                )
            max_new_tokens = min(max_new_tokens, self.max_positions - width)  # cut: truncated
        ids, mask = left_pad(prompts, self.pad_id)  # (B, P) each
        ids, mask = ids.to(device), mask.to(device)
        # Sampling depends on (seed) only: reproducible and resumable.
        generator = torch.Generator(device=device).manual_seed(seed)
        was_training = model.training
        # The plain pass has no dropout to switch off; switching a transformers model's
        # mode costs milliseconds (its hub-kernel bookkeeping), twice a rollout.
        switch = plain_forward(model) is None
        if switch:
            model.eval()
        # Each prompt once; its cache rows are then repeated for its copies.
        last, cache = prefill(model, ids, mask)
        if isinstance(cache, KVCache):  # with room for the completions: written in place
            cache.batch_repeat_interleave(copies, room=max_new_tokens)
        else:
            cache.batch_repeat_interleave(copies)
        logits = last.repeat_interleave(copies, 0)
        mask = mask.repeat_interleave(copies, 0)
        position = mask.sum(-1, keepdim=True)  # of the next token
        live = torch.arange(len(prompts) * copies, device=device)  # rows still generating
        tokens = torch.full((len(live), max_new_tokens), self.pad_id, device=device)
        stops = torch.tensor(self.stop_ids, device=device)
        for t in range(max_new_tokens):
            nxt = _draw(logits, temperature, top_p, greedy, generator)
            tokens[live, t] = nxt
            ended = torch.isin(nxt, stops)
            if t == max_new_tokens - 1 or bool(ended.all()):
                break
            if bool(ended.any()):  # ended rows leave the batch, cache included
                keep = (~ended).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                live, nxt, mask, position = live[keep], nxt[keep], mask[keep], position[keep]
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], 1)
            logits, cache = forward(model, nxt[:, None], mask, position, cache)
            logits = logits[:, -1]  # (rows, V)
            position = position + 1
        if switch:
            model.train(was_training)
        rows = [_cut(row, self.stop_ids) for row in tokens.tolist()]
        if greedy:
            return [[rows[i]] * n for i in range(len(prompts))]
        return [rows[i * n : (i + 1) * n] for i in range(len(prompts))]


def learned_positions(model) -> int | None:
    """How many positions a model with a learned position table (GPT-2's `wpe`, OPT's
    `embed_positions`) has; None for rotary or relative positions, which have no end.
    Past the table a forward pass fails with an IndexError deep inside the model."""
    names = ("wpe", "embed_positions", "position_embeddings")
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and name.rsplit(".", 1)[-1] in names:
            return module.num_embeddings
    return None


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


def _cut(row: list[int], stop_ids: list[int]) -> Generation:
    """Tokens up to and including the first end token (padding follows it)."""
    end = next((i for i, token in enumerate(row) if token in stop_ids), None)
    if end is not None:
        return Generation(row[: end + 1], True)
    return Generation(row, False)


class VLLMEngine(RolloutEngine):
    """vLLM sampling, colocated with training: the policy's weights are copied in after each
    update (`sync_weights`), and vLLM's prefix cache is reset so that no prompt is read
    with the keys and values of the old weights.

    What runs without a GPU is tested (tests/test_vllm_engine.py, against a stand-in for
    the `vllm` module): the engine's construction arguments, the sampling parameters, the
    request batching and the order of results, and the weight-sync calls. vLLM itself has
    not run on the machines this project is tested on; `bench/gpu.sh` runs `assay train
    --engine vllm` where vLLM is installed.
    """

    def __init__(self, model_path: str, tokenizer, *, gpu_memory_utilization: float = 0.3,
                 seed: int = 0, dtype: str = "auto"):
        try:
            from vllm import LLM
        except ImportError:
            raise EngineError(
                "engine 'vllm' needs the vllm package: pip install 'assay[vllm]' (GPU only)"
            ) from None
        self.llm = LLM(**llm_arguments(model_path, gpu_memory_utilization, seed, dtype))
        self.eos_id = tokenizer.eos_token_id

    def generate(
        self, prompts, n, *, temperature=1.0, top_p=1.0, max_new_tokens=64, greedy=False, seed=0
    ):
        from vllm import SamplingParams

        params = SamplingParams(**sampling_arguments(
            n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
            greedy=greedy, seed=seed, eos_id=self.eos_id,
        ))
        # one request per distinct prompt, n samples each: vLLM returns them in request order
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False
        )
        if len(outputs) != len(prompts):
            raise EngineError(f"vLLM returned {len(outputs)} results for {len(prompts)} prompts")
        result = []
        for out in outputs:
            gens = [Generation(list(c.token_ids), c.finish_reason == "stop") for c in out.outputs]
            result.append(gens * n if greedy else gens)  # greedy: one sample stands for all n
        return result

    def sync_weights(self, model) -> None:
        weights = [(name, param.detach()) for name, param in model.state_dict().items()]
        load_into_vllm(self.llm, weights)
        self.llm.reset_prefix_cache()  # cached prompt keys/values came from the old weights


def llm_arguments(model_path: str, gpu_memory_utilization: float, seed: int,
                  dtype: str) -> dict:
    """`vllm.LLM(...)` arguments for a colocated engine: a share of the GPU beside training."""
    if not 0.0 < gpu_memory_utilization < 1.0:
        raise EngineError("vLLM's gpu_memory_utilization must be in (0, 1): training shares the GPU")
    return {"model": model_path, "gpu_memory_utilization": gpu_memory_utilization,
            "enable_prefix_caching": True, "seed": seed, "dtype": dtype}


def sampling_arguments(n: int, *, temperature: float, top_p: float, max_new_tokens: int,
                       greedy: bool, seed: int, eos_id: int) -> dict:
    """`vllm.SamplingParams(...)` arguments: our sampling settings in vLLM's names. Greedy
    decoding asks for one sample (all n would be the same)."""
    return {
        "n": 1 if greedy else n,
        "temperature": 0.0 if greedy else temperature,
        "top_p": 1.0 if greedy else top_p,
        "max_tokens": max_new_tokens,
        "seed": seed,
        "stop_token_ids": [eos_id],
        "skip_special_tokens": False,
    }


#: where a vLLM engine keeps its model, by version (the in-process engine only)
_MODEL_PATHS = (
    ("llm_engine", "model_executor", "driver_worker", "model_runner", "model"),  # v0
    ("llm_engine", "model_executor", "driver_worker", "worker", "model_runner", "model"),  # v1
)


def load_into_vllm(llm, weights: list) -> None:
    """Copy (name, tensor) pairs into the model vLLM samples from.

    The model is found in-process where the engine keeps it (TRL's colocate mode reaches
    it the same way); otherwise through `LLM.apply_model`, which runs a function in each
    worker. Neither: one clear error naming the vLLM version, not a deep AttributeError.
    """
    for path in _MODEL_PATHS:
        target = llm
        for attr in path:
            target = getattr(target, attr, None)
            if target is None:
                break
        if target is not None:
            target.load_weights(weights)
            return
    if hasattr(llm, "apply_model"):
        llm.apply_model(lambda model: model.load_weights(weights))
        return
    import importlib.metadata

    try:
        version = importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    raise EngineError(f"cannot reach the model inside this vLLM ({version}) to update its weights")


def make_engine(name: str, model, tokenizer, model_path: str) -> RolloutEngine:
    if name == "hf":
        return HFEngine(model, tokenizer)
    if name == "vllm":
        engine = VLLMEngine(model_path, tokenizer)
        # vLLM loads `model_path`; a resumed run's policy is its checkpoint: start from it
        engine.sync_weights(model)
        return engine
    raise ValueError(f"unknown engine {name!r} (hf, vllm)")
