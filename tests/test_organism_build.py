"""A prior is built without transformers (assay/organism/model.py) and is still, bit for
bit, what transformers would make: the seeded network, the saved config and tokenizer
files, the training loss and its gradients, and greedy decoding's tokens, each compared
here with transformers' own. `make check-priors` then rebuilds the shipped priors (built
through transformers before) bit for bit, weights and evaluations."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

import torch  # noqa: E402

from assay.native_llama import NativeConfig, NativeLlama, NativeTokenizer  # noqa: E402
from assay.organism.countdown import organism_env  # noqa: E402
from assay.organism.model import (  # noqa: E402
    build_model,
    greedy_passes,
    greedy_replies,
    greedy_tokens,
    left_padded,
    llama_fields,
)
from assay.organism.prior import collate, supervised_loss  # noqa: E402
from assay.organism.skills import get_skill  # noqa: E402
from assay.organism.spec import make_spec  # noqa: E402
from assay.organism.tokenizer import make_tokenizer, native_tokenizer  # noqa: E402
from assay.training.policy import load_policy, resolve_model_path  # noqa: E402


def transformers_model(spec, tokenizer, max_positions: int, **changes):
    """`LlamaForCausalLM` as prior builds made it before, seeded by `spec.seed`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{
        "vocab_size": len(tokenizer), "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size, "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads, "num_key_value_heads": spec.heads,
        "max_position_embeddings": max_positions, "tie_word_embeddings": True,
        "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.eos_token_id, **changes,
    })
    torch.manual_seed(spec.seed)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("preset, changes", [
    ("tiny", {}), ("code-tiny", {"seed": 5}), ("smt", {"layers": 2, "hidden_size": 64, "heads": 2}),
])
def test_the_seeded_network_and_its_files_are_transformers_own(preset, changes, tmp_path):
    spec = make_spec(preset, **changes)
    skill = get_skill(spec.skill)
    tokenizer = native_tokenizer(skill.alphabet)
    mine = build_model(spec, tokenizer, max_positions=skill.max_positions)
    theirs = transformers_model(spec, make_tokenizer(skill.alphabet), skill.max_positions)
    ours, reference = mine.state_dict(), theirs.state_dict()
    assert ours.keys() == reference.keys()
    assert [k for k in ours if not torch.equal(ours[k], reference[k])] == []
    mine.save_pretrained(tmp_path / "mine")
    theirs.save_pretrained(tmp_path / "theirs")
    for name in ("config.json", "generation_config.json"):
        written = json.loads((tmp_path / "mine" / name).read_text())
        expected = json.loads((tmp_path / "theirs" / name).read_text())
        expected.pop("transformers_version")
        assert written == expected, name


def test_the_draws_are_transformers_own_untied_and_after():
    """An untied head keeps its own draws; and the generator ends where transformers' does."""
    spec = make_spec("tiny", layers=1, hidden_size=32, heads=2, intermediate_size=64, seed=3)
    tokenizer = native_tokenizer(get_skill(spec.skill).alphabet)
    fields = {**llama_fields(spec, tokenizer, 16), "tie_word_embeddings": False}
    mine = NativeLlama(NativeConfig(fields))
    torch.manual_seed(spec.seed)
    mine.initialise()
    after_mine = torch.rand(4)
    theirs = transformers_model(spec, make_tokenizer(get_skill(spec.skill).alphabet), 16,
                                tie_word_embeddings=False)
    after_theirs = torch.rand(4)
    reference = theirs.state_dict()
    assert all(torch.equal(t, reference[k]) for k, t in mine.state_dict().items())
    assert not torch.equal(reference["lm_head.weight"], reference["model.embed_tokens.weight"])
    assert torch.equal(after_mine, after_theirs)


@pytest.mark.parametrize("skill", ["countdown", "code", "tool", "smt"])
def test_the_tokenizer_files_are_those_transformers_saves(skill, tmp_path):
    alphabet = get_skill(skill).alphabet
    theirs = make_tokenizer(alphabet)
    theirs(["1", "22"], padding=True)  # as every prior's evaluation pads a batch
    theirs.save_pretrained(tmp_path)
    mine = native_tokenizer(alphabet)
    (tmp_path / "mine").mkdir()
    mine.save_pretrained(tmp_path / "mine")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "mine" / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert len(mine) == len(theirs)
    text = alphabet[::-1] + "\x00"
    assert mine.encode(text, add_special_tokens=False) == theirs.encode(text, add_special_tokens=False)


def test_the_loss_and_its_gradients_are_transformers_own():
    spec = make_spec("tiny")
    skill = get_skill(spec.skill)
    tokenizer = native_tokenizer(skill.alphabet)
    mine = build_model(spec, tokenizer, max_positions=skill.max_positions)
    theirs = transformers_model(spec, make_tokenizer(skill.alphabet), skill.max_positions)
    pairs = skill.examples(spec, 12, seed=7)
    ids, mask, labels = collate(tokenizer, pairs)
    assert not bool(mask.all())  # rows of several lengths: the padded case
    mine.train(), theirs.train()
    loss = supervised_loss(mine, ids, mask, labels)
    expected = theirs(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert torch.equal(loss, expected)
    loss.backward()
    expected.backward()
    grads = dict(theirs.named_parameters())
    for name, parameter in mine.named_parameters():
        assert torch.equal(parameter.grad, grads[name].grad), name


def test_greedy_decoding_gives_transformers_generate_tokens():
    folder = resolve_model_path("organism:tiny", quiet=True)
    mine, my_tokenizer = load_policy(folder)
    theirs, their_tokenizer = load_policy(folder, native=False)
    assert isinstance(mine, NativeLlama) and not isinstance(theirs, NativeLlama)
    # the organism's prompts, all of one length (no padding), and its verification prompts
    # of several (padded), as a prior's evaluation asks both
    env = organism_env()
    tasks = env.generate(16, seed=3)
    asks = [env.verification_prompt(t, a) for t, a in zip(tasks, ["1", "2+3", "(4-1)*9", "7/7+1"] * 4, strict=True)]
    prompts = [t.prompt for t in tasks] + asks
    assert len({len(p) for p in asks}) > 1
    for batch in (prompts, [t.prompt for t in tasks], asks[:1]):
        for steps in (1, 3, 12):  # 3: rows still going when it ends
            enc = their_tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            made = theirs.generate(**enc, do_sample=False, max_new_tokens=steps,
                                   pad_token_id=their_tokenizer.pad_token_id,
                                   eos_token_id=their_tokenizer.eos_token_id,
                                   output_logits=True, return_dict_in_generate=True)
            logits: list = []
            assert greedy_tokens(mine, my_tokenizer, batch, steps, logits) == \
                made.sequences[:, enc["input_ids"].shape[1]:].tolist()
            assert len(logits) == len(made.logits)
            assert all(torch.equal(a, b) for a, b in zip(logits, made.logits, strict=True))
            assert greedy_replies(mine, my_tokenizer, batch, steps) == \
                greedy_replies(theirs, their_tokenizer, batch, steps)
    # rows ended at different steps: the ended ones padded while the others went on
    ends = [row.index(my_tokenizer.eos_token_id) for row in greedy_tokens(mine, my_tokenizer, prompts, 12)
            if my_tokenizer.eos_token_id in row]
    assert len(set(ends)) > 1
    ids, mask = left_padded(my_tokenizer, prompts)
    enc = their_tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert torch.equal(ids, enc["input_ids"]) and torch.equal(mask, enc["attention_mask"])
    positions = torch.arange(ids.shape[1]).unsqueeze(0)  # as the tool skill's evaluation reads
    with torch.no_grad():
        assert torch.equal(mine(input_ids=ids, attention_mask=mask, position_ids=positions).logits,
                           theirs(**enc).logits)


def test_a_build_process_never_imports_transformers(tmp_path):
    spec = make_spec("tiny", sft_steps=2, batch_size=4, seed=13)
    script = (
        "import json, sys\n"
        "from assay.organism.pinned import main\n"
        "main(sys.argv[1:])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(dataclasses.asdict(spec)),
                           "tiny", str(tmp_path / "built"), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    model, _ = load_policy(str(tmp_path / "built"), native=False)  # transformers reads it
    assert type(model).__name__ == "LlamaForCausalLM"


def test_greedy_passes_are_the_verdicts_of_the_greedy_replies_and_close_the_env():
    mine, tokenizer = load_policy(resolve_model_path("organism:tiny", quiet=True))

    class Recorded:  # the organism's env, its closing seen
        def __init__(self) -> None:
            self.env, self.closed = organism_env(), False

        def __getattr__(self, name: str):
            return getattr(self.env, name)

        def close(self) -> None:
            self.closed = True
            self.env.close()

    env = Recorded()
    tasks, passed = greedy_passes(env, mine, tokenizer, 24, seed=9, max_new_tokens=12)
    assert env.closed and len(tasks) == len(passed) == 24
    replies = greedy_replies(mine, tokenizer, [t.prompt for t in tasks], 12)
    again = organism_env()
    assert passed == [v.correct for v in again.verify_many(list(zip(tasks, replies, strict=True)))]
    assert any(passed) and not all(passed)  # the tiny prior solves some: both outcomes seen


def test_left_padding_is_transformers_whatever_the_tokenizer_adds(tmp_path):
    """The organism's tokenizer adds no special token; one that appends its end token shows
    that prompts are encoded as transformers encodes them here, without it."""
    from transformers import AutoTokenizer

    mine = native_tokenizer(get_skill("countdown").alphabet)
    (tmp_path / "appends").mkdir()
    mine.save_pretrained(tmp_path / "appends")
    spec = json.loads((tmp_path / "appends" / "tokenizer.json").read_text())
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<eos>", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<eos>": {"id": "<eos>", "ids": [1], "tokens": ["<eos>"]}},
    }
    (tmp_path / "appends" / "tokenizer.json").write_text(json.dumps(spec))
    config = json.loads((tmp_path / "appends" / "tokenizer_config.json").read_text())
    appending = NativeTokenizer.from_folder(tmp_path / "appends", config)
    assert appending.encode("12")[-1] == 1
    theirs = AutoTokenizer.from_pretrained(tmp_path / "appends")
    prompts = ["5 1 2>007:", "12", "9 9 9 9>100:"]
    ids, mask = left_padded(appending, prompts)
    enc = theirs(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert torch.equal(ids, enc["input_ids"]) and torch.equal(mask, enc["attention_mask"])
