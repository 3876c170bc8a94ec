"""The organism's folders loaded without transformers (`native_llama`) against the same
folders loaded through transformers: the same token ids and texts, the same logits and
gradients bit for bit, a saved folder that transformers loads back, and a process that
trains without ever importing transformers."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

import torch  # noqa: E402

from assay.native_llama import NativeLlama, NativeTokenizer, load_native  # noqa: E402
from assay.plain_llama import never_plain, plain_forward  # noqa: E402
from assay.training.policy import (  # noqa: E402
    completion_stats,
    load_policy,
    resolve_model_path,
    run_checkpoint,
    stop_token_ids,
)


@pytest.fixture(scope="module")
def folder() -> str:
    return resolve_model_path("organism:tiny", quiet=True)


@pytest.fixture(scope="module")
def both(folder):
    """(native model, native tokenizer, transformers model, transformers tokenizer)."""
    mine, my_tokenizer = load_policy(folder)
    theirs, their_tokenizer = load_policy(folder, native=False)
    assert isinstance(mine, NativeLlama) and isinstance(my_tokenizer, NativeTokenizer)
    assert type(theirs).__name__ == "LlamaForCausalLM"
    return mine, my_tokenizer, theirs, their_tokenizer


TEXTS = ["5 1 2>007:", "9 3 4>039:", "", "  ", "12+(3*4)=", "héllo\n\x00🙂", "<eos>", "<pad>x<eos>",
         "a<unk>b", "7 7 7>", "\r\n\t"]


def test_the_tokenizer_gives_transformers_ids_and_texts(both):
    _, mine, _, theirs = both
    for attribute in ("pad_token_id", "eos_token_id", "pad_token", "eos_token", "padding_side",
                      "chat_template"):
        assert getattr(mine, attribute) == getattr(theirs, attribute), attribute
    for text in TEXTS:
        for special in (True, False):
            assert mine(text, add_special_tokens=special)["input_ids"] == \
                theirs(text, add_special_tokens=special)["input_ids"], (text, special)
        assert mine.encode(text) == theirs.encode(text)
    assert mine(TEXTS)["input_ids"] == theirs(TEXTS)["input_ids"]
    assert len(mine) == len(theirs)
    generator = torch.Generator().manual_seed(0)
    vocab = len(mine._tokenizer.get_vocab())
    rows = [torch.randint(0, vocab, (n,), generator=generator).tolist() for n in range(0, 30, 3)]
    for skip in (True, False):
        assert mine.batch_decode(rows, skip_special_tokens=skip) == \
            theirs.batch_decode(rows, skip_special_tokens=skip)
        for row in rows:
            assert mine.decode(row, skip_special_tokens=skip) == theirs.decode(row, skip_special_tokens=skip)
    assert mine.decode(1) == theirs.decode(1)


def test_logits_and_gradients_are_transformers_bit_for_bit(both):
    mine, tokenizer, theirs, _ = both
    assert stop_token_ids(mine, tokenizer) == stop_token_ids(theirs, tokenizer)
    mine_names = dict(mine.named_parameters())
    assert mine_names.keys() == dict(theirs.named_parameters()).keys()
    assert torch.equal(mine.model.rotary_emb.inv_freq, theirs.model.rotary_emb.inv_freq)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 20, (4, 14), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # a left-padded prompt
    mask[2, -4:] = 0  # a shorter completion
    ids = ids * mask
    # transformers' own forward pass: the native model's logits are its bits
    twin = copy.deepcopy(theirs)
    never_plain(twin)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        assert torch.equal(mine(ids, mask, positions).logits,
                           twin(input_ids=ids, attention_mask=mask, position_ids=positions).logits)
    # the trainer's pass (packed completions): the same numbers and gradients on both
    a = completion_stats(mine, ids, mask, 6, 0.7)
    b = completion_stats(theirs, ids, mask, 6, 0.7)
    assert torch.equal(a.logprobs, b.logprobs) and torch.equal(a.entropies, b.entropies)
    (a.logprobs.sum() + a.entropies.sum()).backward()
    (b.logprobs.sum() + b.entropies.sum()).backward()
    for name, parameter in theirs.named_parameters():
        assert torch.equal(mine_names[name].grad, parameter.grad), name
    mine.zero_grad()
    theirs.zero_grad()


def test_a_saved_folder_loads_back_both_ways(both, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assay.training.checkpoint import write_model

    mine = copy.deepcopy(both[0])
    tokenizer = both[1]
    with torch.no_grad():  # a trained model's weights: no longer the folder's
        mine.model.layers[0].mlp.up_proj.weight.add_(0.25)
    write_model(tmp_path / "saved", mine, tokenizer, {"step": 1})
    # a checkpoint written by a tokenizer whose own folder is gone (rotated away)
    shutil.copytree(tmp_path / "saved", tmp_path / "older")
    _, from_older = load_native(str(tmp_path / "older"))
    shutil.rmtree(tmp_path / "older")
    write_model(tmp_path / "newer", mine, from_older, {"step": 2})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "newer" / name).read_bytes() == (tmp_path / "saved" / name).read_bytes()
    again, again_tokenizer = load_native(str(tmp_path / "saved"))
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    their_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert again_tokenizer(TEXTS)["input_ids"] == their_tokenizer(TEXTS)["input_ids"]
    assert torch.equal(again.lm_head.weight, again.model.embed_tokens.weight)  # tied, as saved
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        expected = mine(ids).logits
        assert torch.equal(again(ids).logits, expected)
        never_plain(theirs)
        assert torch.equal(theirs(input_ids=ids).logits, expected)


def test_other_folders_go_to_transformers(folder, tmp_path):
    def variant(name: str, config: dict | None = None, tokenizer: dict | None = None):
        copy = tmp_path / name
        shutil.copytree(folder, copy)
        for file, change in (("config.json", config), ("tokenizer_config.json", tokenizer)):
            if change:
                fields = json.loads((copy / file).read_text())
                fields.update(change)
                (copy / file).write_text(json.dumps(fields))
        return str(copy)

    assert load_native(str(tmp_path / "nowhere")) is None
    plain = variant("plain")
    assert load_native(plain) is not None
    assert load_native(plain, dtype="bfloat16") is None
    chat = load_native(variant("chat", tokenizer={"chat_template": "{{ messages[0].content }}{{ eos_token }}"}))
    assert chat is not None
    assert chat[1].apply_chat_template([{"role": "user", "content": "5 1"}], tokenize=False) == "5 1<eos>"
    with pytest.raises(TypeError, match="tokenize=False"):
        chat[1].apply_chat_template([{"role": "user", "content": "5 1"}])
    with pytest.raises(ValueError, match="no chat template"):
        load_native(plain)[1].apply_chat_template([{"role": "user", "content": "5 1"}], tokenize=False)
    assert load_native(variant("tracked", tokenizer={  # transformers' assistant-mask tag
        "chat_template": "{% generation %}{{ messages }}{% endgeneration %}"})) is None
    assert load_native(variant("named", tokenizer={  # templates by name: transformers chooses
        "chat_template": [{"name": "default", "template": "{{ messages }}"}]})) is None
    assert load_native(variant("bias", config={"attention_bias": True})) is None
    assert load_native(variant("qwen", config={"architectures": ["Qwen2ForCausalLM"]})) is None
    assert load_native(variant("rope", config={"rope_parameters": {"rope_type": "linear"}})) is None
    assert load_native(variant("cleanup", tokenizer={"clean_up_tokenization_spaces": True})) is None
    deeper = variant("deeper", config={"num_hidden_layers": 5})  # weights of 4 layers
    assert load_native(deeper) is None
    model, _ = load_policy(deeper)  # transformers loads it (and says what it made of it)
    assert type(model).__name__ == "LlamaForCausalLM"


def test_native_models_refuse_what_would_not_run(both):
    mine = both[0]
    with pytest.raises(TypeError, match="native=False"):
        never_plain(mine)
    hooked = copy.deepcopy(mine)
    hooked.model.layers[0].register_forward_hook(lambda *args: None)
    with pytest.raises(TypeError, match="hooks"):
        plain_forward(hooked)


def test_training_the_organism_never_imports_transformers(tmp_path):
    script = (
        "import sys\n"
        "from assay.cli import main\n"
        "sys.argv = ['assay', 'train', '--model', 'organism:tiny', '--steps', '2', '--quiet',\n"
        f"            '--out', {str(tmp_path / 'run')!r}, '--set', 'prompts_per_step=2',\n"
        "            '--set', 'group_size=2', '--set', 'eval_every=1', '--set', 'val_size=2',\n"
        "            '--set', 'save_every=1']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))\n"
    )
    resolve_model_path("organism:tiny", quiet=True)  # built or copied before: not this test's
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    saved, _ = load_policy(run_checkpoint(str(tmp_path / "run")))  # its checkpoint, natively
    assert isinstance(saved, NativeLlama)


def test_a_damaged_folder_gets_transformers_one_line_error(folder, tmp_path):
    from assay.training.policy import ModelLoadError

    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    (damaged / "model.safetensors").write_bytes(b"\x00" * 20)  # a truncated download
    assert load_native(str(damaged)) is None
    with pytest.raises(ModelLoadError, match="cannot load model"):
        load_policy(str(damaged))
    wider = tmp_path / "wider"  # weights of another shape under the same names
    shutil.copytree(folder, wider)
    fields = json.loads((wider / "config.json").read_text())
    fields["intermediate_size"] = 2 * fields["intermediate_size"]
    (wider / "config.json").write_text(json.dumps(fields))
    assert load_native(str(wider)) is None


def test_a_tokenizer_that_adds_special_tokens_adds_them_as_transformers_does(folder, tmp_path):
    """The organism's tokenizer adds none; one whose template appends the end token shows
    that each call's `add_special_tokens` (and its default) is transformers'."""
    from transformers import AutoTokenizer

    appends = tmp_path / "appends"
    shutil.copytree(folder, appends)
    spec = json.loads((appends / "tokenizer.json").read_text())
    eos = json.loads((appends / "tokenizer_config.json").read_text())["eos_token"]
    eos_id = next(t["id"] for t in spec["added_tokens"] if t["content"] == eos)
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {eos: {"id": eos, "ids": [eos_id], "tokens": [eos]}},
    }
    (appends / "tokenizer.json").write_text(json.dumps(spec))
    _, mine = load_native(str(appends))
    theirs = AutoTokenizer.from_pretrained(appends)
    for text in TEXTS:
        assert mine.encode(text) == theirs.encode(text) and mine.encode(text)[-1] == eos_id
        assert mine(text)["input_ids"] == theirs(text)["input_ids"]
        assert mine(text, add_special_tokens=False)["input_ids"] == \
            theirs(text, add_special_tokens=False)["input_ids"]
        assert mine.encode(text, add_special_tokens=False) == theirs.encode(text, add_special_tokens=False)
