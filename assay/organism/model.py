"""The organism's network: a small Llama, made and evaluated without transformers.

`build_model` gives a `NativeLlama` (assay/native_llama.py) whose weights are, bit for
bit, those of transformers' `LlamaForCausalLM(LlamaConfig(...))` under the same seed, and
whose saved folder is transformers' (the same config fields, tensors and tokenizer files).
`greedy_replies` decodes it as transformers' `generate(do_sample=False)` does: the same
calls of the same shapes, so the same tokens (tests/test_organism_build.py compares both).
A build process therefore never imports transformers (about 4 s of each build on 2 cores).
"""

from __future__ import annotations

from typing import Any

from assay.organism.spec import PriorSpec


def llama_fields(spec: PriorSpec, tokenizer: Any, max_positions: int) -> dict[str, Any]:
    """config.json of the spec's `LlamaConfig` (the rest at transformers' defaults), as
    transformers writes it, less the version of transformers that wrote it."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": tokenizer.eos_token_id,
        "dtype": "float32",
        "eos_token_id": tokenizer.eos_token_id,
        "head_dim": spec.hidden_size // spec.heads,
        "hidden_act": "silu",
        "hidden_size": spec.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": spec.intermediate_size,
        "max_position_embeddings": max_positions,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": spec.heads,
        "num_hidden_layers": spec.layers,
        "num_key_value_heads": spec.heads,
        "pad_token_id": tokenizer.pad_token_id,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-06,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "tie_word_embeddings": True,
        "use_cache": True,
        "vocab_size": len(tokenizer),
    }


def build_model(spec: PriorSpec, tokenizer: Any, max_positions: int) -> Any:
    """A randomly initialised Llama of the spec's shape, seeded by `spec.seed`."""
    import torch

    from assay.native_llama import NativeConfig, NativeLlama

    fields = llama_fields(spec, tokenizer, max_positions)
    generation = {"_from_model_config": True, "bos_token_id": fields["bos_token_id"],
                  "eos_token_id": fields["eos_token_id"], "output_attentions": False,
                  "output_hidden_states": False, "pad_token_id": fields["pad_token_id"],
                  "use_cache": True}
    model = NativeLlama(NativeConfig(fields), generation)
    torch.manual_seed(spec.seed)
    model.initialise()
    return model


def left_padded(tokenizer: Any, prompts: list[str]) -> tuple[Any, Any]:
    """(ids, mask), each (B, P): the prompts' tokens, padded on the left with the pad token
    as a transformers tokenizer pads with `padding_side="left"`."""
    from assay.plain_llama import left_pad

    rows = [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    return left_pad(rows, tokenizer.pad_token_id)


def greedy_replies(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    """The model's greedy continuation of each prompt, without special tokens."""
    import torch

    if getattr(model, "computed_by_plain_pass", False):
        rows = greedy_tokens(model, tokenizer, prompts, max_new_tokens)
        return tokenizer.batch_decode(rows, skip_special_tokens=True)
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


def greedy_tokens(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int,
                  logits: list[Any] | None = None) -> list[list[int]]:
    """The tokens transformers' greedy `generate` adds to the prompts (a row that has ended
    filled with the pad token), made in the plain pass call for call: the prompts read
    whole with their last position's logits, then one token per call over a cache that
    grows by concatenation; every row stays in the batch until all have ended or
    `max_new_tokens` are made. Positions count real tokens (0 on the padding), as
    `generate` numbers them. `logits`, if given, receives each step's (B, V) logits (as
    `generate(output_logits=True)` returns them)."""
    import torch

    from assay.plain_llama import plain_forward

    plain = plain_forward(model)
    ids, mask = left_padded(tokenizer, prompts)  # (B, P) each
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # (B, P)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    tokens = []
    with torch.no_grad():
        out, cache = plain(ids, mask, positions, None, 1)  # (B, 1, V)
        unfinished = torch.ones(ids.shape[0], dtype=torch.bool)  # (B,)
        for step in range(max_new_tokens):
            scores = out[:, -1, :].float()  # (B, V)
            if logits is not None:
                logits.append(scores)
            chosen = scores.argmax(-1)  # (B,)
            chosen = torch.where(unfinished, chosen, pad)
            tokens.append(chosen)
            unfinished &= chosen != eos
            if step + 1 == max_new_tokens or not unfinished.any():
                break
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)  # (B, K)
            positions = positions[:, -1:] + 1  # (B, 1)
            out, cache = plain(chosen[:, None], mask, positions, cache, 1)
    return torch.stack(tokens, 1).tolist()


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
