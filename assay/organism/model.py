"""The organism's network: a small `LlamaForCausalLM`, and greedy decoding for evaluation."""

from __future__ import annotations

from typing import Any

from assay.organism.spec import PriorSpec


def build_model(spec: PriorSpec, tokenizer: Any, max_positions: int = 64) -> Any:
    """A randomly initialised LlamaForCausalLM of the spec's shape (seeded by `spec.seed`)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(spec.seed)
    return LlamaForCausalLM(config)


def greedy_replies(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    """The model's greedy continuation of each prompt, without special tokens."""
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


def greedy_passes(env: Any, model: Any, tokenizer: Any, n: int, seed: int,
                  max_new_tokens: int) -> tuple[list[Any], list[bool]]:
    """`n` fresh tasks of `env` (generated with `seed`) and whether the model's greedy reply
    to each verifies as correct; closes the env (its workers) afterwards."""
    tasks = env.generate(n, seed=seed)
    replies = greedy_replies(model, tokenizer, [t.prompt for t in tasks], max_new_tokens)
    try:
        return tasks, [v.correct for v in env.verify_many(list(zip(tasks, replies, strict=True)))]
    finally:
        env.close()
