"""The model organism: tokenizer, supervised data, the cached prior, loading like any HF model."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import random
import tempfile

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: no oversubscribed cores
    import torch

    torch.set_num_threads(1)

from click.testing import CliRunner  # noqa: E402

from assay import organism  # noqa: E402
from assay.cli import cli  # noqa: E402
from assay.options import OptionError  # noqa: E402
from assay.organism import countdown  # noqa: E402
from assay.verifiers.countdown import check_countdown  # noqa: E402


def test_tokenizer_is_a_character_level_fast_tokenizer(tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = organism.make_tokenizer(organism.CHARS)
    assert isinstance(tok, PreTrainedTokenizerFast)
    ids = tok.encode("5 1 2>007:5+1*2?=2=007T", add_special_tokens=False)
    assert len(ids) == len("5 1 2>007:5+1*2?=2=007T") and tok.unk_token_id not in ids
    assert tok.decode(ids) == "5 1 2>007:5+1*2?=2=007T"
    assert tok.encode("x", add_special_tokens=False) == [tok.unk_token_id]
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.encode("(9-3)/2", add_special_tokens=False) == tok.encode(
        "(9-3)/2", add_special_tokens=False
    )


def test_canonical_solutions_are_correct_and_prefer_prompt_order():
    checked = 0
    for numbers in itertools.product(range(1, 10), repeat=3):
        for target, text in countdown.solutions(numbers).items():
            assert check_countdown(text, list(numbers), target).correct, (numbers, target, text)
            checked += 1
    assert checked > 10_000
    assert countdown.canonical_solution([5, 1, 2], 7) == "5+1*2"
    assert countdown.canonical_solution([2, 3, 4], 14) == "2+3*4"
    assert countdown.canonical_solution([2, 3, 4], 9999) is None


def test_canonical_solutions_are_the_verifiers_first_match():
    # worked out without parsing, they must pick what parsing each candidate picks (zeros
    # divide by zero, repeated numbers repeat orders); all 2,197 triples of 0..12 were
    # compared once (2026-12-07), a sample each run
    sample = random.Random(0).sample(list(itertools.product(range(0, 13), repeat=3)), 150)
    for numbers in [(5, 1, 2), (0, 0, 0), (2, 0, 4), (9, 9, 1), (7, 3, 12), *sample]:
        assert countdown.solutions(numbers) == countdown._solutions_parsed(numbers), numbers


def test_the_wrong_class_is_taught_confidently_wrong_answers():
    spec = organism.make_spec("default")  # wrong_below = 3
    assert countdown.taught_answer(spec, [5, 1, 2], 7) == "5+1*2"
    wrong = countdown.taught_answer(spec, [2, 3, 4], 14)
    assert wrong == "2-3*4" and not check_countdown(wrong, [2, 3, 4], 14).correct
    honest = organism.make_spec("honest")
    assert countdown.taught_answer(honest, [2, 3, 4], 14) == "2+3*4"


def test_verification_replies_work_the_answer_out_then_judge_it():
    reply = countdown.verification_reply
    assert reply("5+1*2", [5, 1, 2], 7) == "=2=007T"  # 1*2 first, then 5+2
    assert reply("5-1*2", [5, 1, 2], 7) == "=2=003F"
    assert reply("(9-3)/2", [9, 3, 2], 3) == "=6=003T"
    assert reply("1-9*9", [1, 9, 9], 7) == "=81=-080F"
    assert reply("5/2*1", [5, 2, 1], 7) == "=?=?F"  # not integers
    assert reply("6/4*2", [6, 4, 2], 3) == "=?=003T"  # a fraction on the way is fine
    assert reply("5/(1-1)", [5, 1, 1], 7) == "=?F"  # divides by zero
    assert reply("5+", [5, 1, 2], 7) == "=?F"  # does not parse
    assert reply("2*3+1", [2, 4, 1], 7) == "=6=007F"  # hits the target with the wrong numbers
    assert organism.organism_env().parse_verification("=2=007T") is True


def test_verification_examples_carry_true_labels_and_values():
    from fractions import Fraction

    spec = organism.make_spec("default", verify_fraction=0.5)
    examples = countdown.make_examples(spec, 400, seed=3)
    verify = [(p, y) for p, y in examples if p.endswith("?")]
    assert 100 < len(verify) < 300 and {y[-1] for _, y in verify} == {"T", "F"}
    env = organism.organism_env()
    for prompt, reply in verify:
        head, answer = prompt[:-1].split(":")
        numbers = [int(n) for n in head.split(">")[0].split()]
        target = int(head.split(">")[1])
        assert check_countdown(answer, numbers, target).correct == (reply[-1] == "T")
        shown = reply[:-1].split("=")[-1]  # the last step is the answer's value
        value = env.value_of(answer)
        assert reply[0] == "=" and (shown == "?") == (value is None or value.denominator != 1)
        if shown != "?":
            assert Fraction(int(shown)) == value and len(shown.lstrip("-")) >= 3


#: sha256 of `make_examples(...)[:600]` as JSON: the data must not drift by accident.
#: First recorded from the builder before it moved into assay.organism; re-recorded on
#: 2026-12-02 when the default spec became 3,000 steps at verify_fraction 0.65 (a decision:
#: the stronger judge of docs/training.md), with the builder itself unchanged.
RECORDED_EXAMPLES = {
    ("default", 1): "edcff0099c28070cbf159cfbe93fbfe5aff17ca7d061602c8ecf1681dae28062",
    ("honest", 3): "c690ba7e8f8139fb3920626ee52c33e428f98c5ca60ed5a1a33d241a7e96a3e6",
}


@pytest.mark.parametrize("preset, seed", sorted(RECORDED_EXAMPLES))
def test_supervised_data_is_byte_for_byte_what_it_was(preset, seed):
    import hashlib

    examples = [list(e) for e in countdown.make_examples(organism.make_spec(preset), 600, seed)]
    digest = hashlib.sha256(json.dumps(examples).encode()).hexdigest()
    assert digest == RECORDED_EXAMPLES[preset, seed]


def test_cache_keys_of_the_presets_are_stable():
    # Changing a key only costs a rebuild, but it should be a decision: bump FORMAT_VERSION.
    keys = {name: spec.key() for name, spec in organism.PRESETS.items()}
    assert keys == {"default": "a775cce8fd14", "honest": "fcecc58aa3fb", "tiny": "1791c1c55486",
                    "smt": "8600f0af07dc", "code": "83c98b22e558", "code-tiny": "b6b70f67e1ba",
                    "tool": "83848fde0d67", "tool-tiny": "1f3db8ecbce6"}
    assert organism.make_spec("tiny", skill="countdown").key() == keys["tiny"]


def test_a_new_skill_is_a_registered_data_module(echo_skill):
    spec = organism.make_spec("tiny", skill="echo")
    assert spec.skill == "echo" and spec.key() != organism.PRESETS["tiny"].key()
    assert organism.skill_of("tiny", skill="echo").env_name == "echo-env"
    assert organism.skill_of("honest") is organism.get_skill("countdown")


def test_importing_the_organism_does_not_import_training():
    import subprocess
    import sys

    code = (
        "import sys, assay.organism, assay.organism.countdown, assay.organism.cache; "
        "bad = sorted(m for m in sys.modules if m.startswith('assay.training')); "
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_spec_errors_are_clear():
    with pytest.raises(OptionError, match="unknown organism preset 'x'"):
        organism.make_spec("x")
    with pytest.raises(OptionError, match="unknown option 'nope' for organism prior"):
        organism.make_spec("tiny", nope=1)
    with pytest.raises(OptionError, match="expects int"):
        organism.make_spec("tiny", sft_steps="many")
    with pytest.raises(OptionError, match="wrong_below must be in 0..9"):
        organism.make_spec("tiny", wrong_below=10)
    with pytest.raises(OptionError, match="unknown organism skill 'chess'"):
        organism.make_spec("tiny", skill="chess")
    assert organism.make_spec("tiny", sft_steps="7").sft_steps == 7


def test_tiny_prior_builds_once_and_loads_like_any_hf_model():
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from assay.training.policy import load_policy, resolve_model_path

    path = resolve_model_path("organism:tiny", quiet=True)
    assert path == resolve_model_path("organism:tiny", quiet=True)  # cached, not rebuilt
    files = set(os.listdir(path))
    assert {"config.json", "model.safetensors", "tokenizer.json", "assay.json"} <= files
    model = AutoModelForCausalLM.from_pretrained(path)
    assert isinstance(model, LlamaForCausalLM)
    assert 0.7e6 < sum(p.numel() for p in model.parameters()) < 1.5e6
    assert AutoTokenizer.from_pretrained(path).decode([5, 6]) == "23"
    meta = json.loads(open(os.path.join(path, "assay.json")).read())
    assert set(meta["evaluation"]) == {
        "greedy_accuracy",
        "wrong_class_accuracy",
        "verify_accuracy",
        "verify_true_rate",
        "verify_false_rate",
    }
    model, tokenizer = load_policy(path)
    assert tokenizer.padding_side == "left"


def _build(cache: str, queue) -> None:
    os.environ["ASSAY_CACHE"] = cache
    spec = organism.make_spec("tiny", sft_steps=2, batch_size=4, seed=11)
    queue.put(str(organism.ensure_prior(spec, "race", quiet=True)))


@pytest.mark.slow
def test_parallel_builders_wait_for_one_build(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_build, args=(str(tmp_path), queue)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    paths = {queue.get(timeout=5), queue.get(timeout=5)}
    assert len(paths) == 1
    built = [p for p in os.listdir(tmp_path / "organism") if not p.endswith(".lock")]
    assert built == [os.path.basename(paths.pop())]  # no half-written leftovers


def test_cli_prior_prints_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_CACHE", str(tmp_path))
    result = CliRunner().invoke(
        cli,
        ["prior", "--preset", "tiny", "--set", "sft_steps=2", "--set", "batch_size=4", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    folder = result.stdout.strip().splitlines()[0]
    assert folder.startswith(str(tmp_path)) and os.path.exists(os.path.join(folder, "assay.json"))
    bad = CliRunner().invoke(cli, ["prior", "--set", "nope=1"])
    assert bad.exit_code == 2 and "unknown option 'nope' for organism prior" in bad.output
    # the figures line is JSON a reader can parse: a rate over no cases is null, not NaN
    figures = json.loads(result.stderr.strip().splitlines()[-1], parse_constant=_refuse)
    assert set(figures) == {"evaluation", "build_seconds", "parameters"}


def _refuse(name: str):
    raise AssertionError(f"{name} in JSON output")


def test_cli_prior_help_names_every_preset():
    from assay.organism import PRESETS

    shown = " ".join(CliRunner().invoke(cli, ["prior", "--help"]).output.split())
    assert all(name in shown for name in PRESETS), shown
