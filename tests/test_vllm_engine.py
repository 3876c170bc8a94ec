"""The vLLM rollout engine's own plumbing, against a stand-in for the `vllm` module.

vLLM cannot run here (no GPU): the stand-in records what the engine asks of vLLM and
answers like vLLM's `LLM.generate` does, so the construction arguments, the sampling
parameters, the request batching, the order of results and the weight sync are checked.
vLLM's own behaviour is not (bench/gpu.sh runs the real engine where vLLM is installed).
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest
import torch

from assay.training import rollout
from assay.training.rollout import EngineError, VLLMEngine, make_engine


class FakeLLM:
    """Where `vllm.LLM` would be: records calls; sample i of prompt p is [p[0], i, eos]."""

    instances: list[FakeLLM] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[tuple] = []
        self.loaded: list = []
        self.resets = 0
        runner = SimpleNamespace(model=SimpleNamespace(load_weights=self.loaded.append))
        self.llm_engine = SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner)))
        FakeLLM.instances.append(self)

    def generate(self, requests, params, use_tqdm=True):
        self.calls.append((requests, params))
        out = []
        for r in requests:
            first = r["prompt_token_ids"][0]
            samples = [SimpleNamespace(token_ids=[first, i, 99], finish_reason="stop")
                       for i in range(params.kwargs["n"])]
            out.append(SimpleNamespace(outputs=samples))
        return out

    def reset_prefix_cache(self):
        self.resets += 1


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.fixture
def fake_vllm(monkeypatch):
    FakeLLM.instances.clear()
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


TOKENIZER = SimpleNamespace(eos_token_id=99)


def test_requests_params_and_order(fake_vllm):
    engine = VLLMEngine("/models/m", TOKENIZER, gpu_memory_utilization=0.4, seed=3)
    llm = FakeLLM.instances[-1]
    assert llm.kwargs == {"model": "/models/m", "gpu_memory_utilization": 0.4,
                          "enable_prefix_caching": True, "seed": 3, "dtype": "auto"}
    out = engine.generate([[5, 1], [7, 2, 3]], 3, temperature=0.8, top_p=0.9,
                          max_new_tokens=12, seed=11)
    requests, params = llm.calls[-1]
    assert requests == [{"prompt_token_ids": [5, 1]}, {"prompt_token_ids": [7, 2, 3]}]  # batched
    assert params.kwargs == {"n": 3, "temperature": 0.8, "top_p": 0.9, "max_tokens": 12,
                             "seed": 11, "stop_token_ids": [99], "skip_special_tokens": False}
    assert [[g.token_ids for g in gens] for gens in out] == [
        [[5, 0, 99], [5, 1, 99], [5, 2, 99]], [[7, 0, 99], [7, 1, 99], [7, 2, 99]]]
    assert all(g.finished for gens in out for g in gens)


def test_greedy_asks_once_and_repeats(fake_vllm):
    engine = VLLMEngine("/m", TOKENIZER)
    out = engine.generate([[4]], 5, greedy=True, temperature=0.7, top_p=0.5)
    params = FakeLLM.instances[-1].calls[-1][1].kwargs
    assert params["n"] == 1 and params["temperature"] == 0.0 and params["top_p"] == 1.0
    assert len(out[0]) == 5 and {tuple(g.token_ids) for g in out[0]} == {(4, 0, 99)}


def test_weight_sync_copies_every_tensor_and_resets_the_prefix_cache(fake_vllm):
    model = torch.nn.Linear(2, 2)
    engine = make_engine("vllm", model, TOKENIZER, "/m")  # syncs once at the start
    llm = FakeLLM.instances[-1]
    assert len(llm.loaded) == 1 and llm.resets == 1
    with torch.no_grad():
        model.weight.add_(1.0)  # an update
    engine.sync_weights(model)
    names = [name for name, _ in llm.loaded[-1]]
    assert names == ["weight", "bias"] and llm.resets == 2
    assert torch.equal(dict(llm.loaded[-1])["weight"], model.weight)


def test_a_vllm_whose_model_cannot_be_reached_is_one_clear_error(fake_vllm):
    engine = VLLMEngine("/m", TOKENIZER)
    engine.llm.llm_engine = SimpleNamespace()  # a layout we do not know, no apply_model
    with pytest.raises(EngineError, match="cannot reach the model inside this vLLM"):
        engine.sync_weights(torch.nn.Linear(1, 1))


def test_apply_model_is_the_fallback(fake_vllm):
    engine = VLLMEngine("/m", TOKENIZER)
    seen = []
    engine.llm.llm_engine = SimpleNamespace()
    engine.llm.apply_model = lambda fn: fn(SimpleNamespace(load_weights=seen.append))
    engine.sync_weights(torch.nn.Linear(1, 1))
    assert [n for n, _ in seen[0]] == ["weight", "bias"]


def test_a_short_result_is_an_error(fake_vllm):
    engine = VLLMEngine("/m", TOKENIZER)
    engine.llm.generate = lambda requests, params, use_tqdm=False: []
    with pytest.raises(EngineError, match="0 results for 1 prompts"):
        engine.generate([[1]], 2)


def test_memory_share_is_checked():
    with pytest.raises(EngineError, match="gpu_memory_utilization"):
        rollout.llm_arguments("/m", 1.0, 0, "auto")
