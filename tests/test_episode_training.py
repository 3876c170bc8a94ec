"""The trainer on a multi-turn env: a step plays whole episodes (a tool call, its output,
the answer), trains only the model's tokens, logs turns and tool calls, and stores every
turn."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from gguf_fixture import write_tiny_gguf

from assay.training import Trainer, resolve
from assay.training import trainer as trainer_module
from assay.training.rollout import Generation
from assay.training.rollout_store import read_rollouts
from assay.training.tracking import read_metrics

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

CALL, ANSWER = "<python>print(3*4+5)</python>", "<answer>3*4+5</answer>"


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> str:
    from assay.training.policy import resolve_model_path

    gguf = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_CACHE", str(tmp_path_factory.mktemp("cache")))
        return str(Path(resolve_model_path(str(gguf), quiet=True)))


def _trainer(chat_model: str, out: Path) -> Trainer:
    config = resolve(
        sets={"env.tools": "python", "prompts_per_step": "2", "group_size": "2",
              "eval_every": "0", "max_new_tokens": "24", "save_every": "0", "progress": "false",
              "train_file": "", "env.min_numbers": "3", "env.max_numbers": "3",
              "env.max_turns": "2"},  # the fewest turns that make an episode: a call, an answer
        flags={"model": chat_model, "env": "countdown", "reward": "verifier", "steps": 1,
               "out": str(out)},
    )
    trainer = Trainer(config, quiet=True)
    end = trainer.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def scripted(contexts, n, **kwargs):
        """Turn 0 (a context that is a prompt) calls the tool; a later turn answers."""
        first = trainer.tokenizer.decode(contexts[0]).count("<|im_start|>assistant") == 1
        ids = trainer.tokenizer(CALL if first else ANSWER, add_special_tokens=False)["input_ids"]
        return [[Generation(list(ids) + [end], True) for _ in range(n)] for _ in contexts]

    trainer.engine.generate = scripted
    return trainer


def test_a_step_plays_episodes_and_trains_only_the_models_tokens(chat_model, tmp_path, monkeypatch):
    trainer = _trainer(chat_model, tmp_path / "run")
    built = []
    real_build = trainer_module.RolloutBatch.build

    def keep(*args, **kwargs):
        built.append(real_build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(trainer_module.RolloutBatch, "build", keep)
    try:
        metrics = trainer.step()
    finally:
        trainer.log.close()
        trainer.env.close()
    assert metrics["turns"] == 2 and metrics["tool_calls"] == 1
    assert metrics["tool_errors"] == 0 and metrics["tool_timeouts"] == 0
    (batch,) = built
    tok = trainer.tokenizer
    for row, g in enumerate(batch.completions):
        text = tok.decode(g.token_ids)
        assert text.startswith(CALL) and ANSWER in text and "<output" in text
        # the loss sees the two replies (and their end tokens), never the observation
        trained = [t for t, m in zip(g.token_ids, batch.loss_mask[row].tolist(), strict=False) if m]
        assert tok.decode(trained) == CALL + "<|im_end|>" + ANSWER + "<|im_end|>"
        assert "<output" not in tok.decode(trained)
    # the last reply (an answer) was verified, not the first (a tool call, no answer)
    assert metrics["answer_rate"] == 1.0 and metrics["verdicts/invalid"] == 0
    assert metrics["completion_length"] == pytest.approx(
        len(tok(CALL + ANSWER, add_special_tokens=False)["input_ids"]) + 2)
    # every turn is stored
    rows = read_rollouts(tmp_path / "run" / "rollouts.jsonl.gz")
    assert rows and all(r["turns"]["replies"] == [CALL, ANSWER] for r in rows)
    assert all("17" in r["turns"]["observations"][0] for r in rows)
    assert read_metrics(tmp_path / "run")[0]["turns"] == 2
