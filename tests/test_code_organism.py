"""The code organism: its alphabet and position table cover every task it is taught, its
taught references pass their tests in the sandbox, the wrong class is deterministic and
takes the share `wrong_below` sets, and `assay train --env code` runs offline on it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.organism import ensure_prior, get_skill, make_spec, read_metadata  # noqa: E402
from assay.organism.code import (  # noqa: E402
    TRAIN_DEFAULTS,
    in_wrong_class,
    make_examples,
    organism_env,
    taught_solution,
)

VERDICTS = ("correct", "incorrect", "invalid", "timeout", "error")


@pytest.fixture(scope="module")
def tasks():
    return organism_env().generate(3000, seed=7)


def test_alphabet_and_positions_cover_every_example(tasks):
    skill = get_skill("code")
    alphabet = set(skill.alphabet)
    # wrong answers and noise write numbers one larger: taught replies with both, too
    pairs = make_examples(make_spec("code", answer_noise=0.5, wrong_below=9), 3000, seed=7)
    pairs += [(t.prompt, t["solution"]) for t in tasks]
    for prompt, reply in pairs:
        assert set(prompt + reply) <= alphabet, sorted(set(prompt + reply) - alphabet)
        assert len(reply) + 1 <= TRAIN_DEFAULTS["max_new_tokens"], reply
        # the position table holds the prompt and the longest completion training samples
        assert len(prompt) + TRAIN_DEFAULTS["max_new_tokens"] <= skill.max_positions, prompt
    assert {t["family"] for t in tasks} == {"int", "list", "str"}
    assert {t["difficulty"] for t in tasks} == {1, 2}


def test_taught_references_pass_and_the_wrong_class_fails():
    env = organism_env()
    sample = env.generate(48, seed=3)
    honest = [taught_solution(t["solution"], 0) for t in sample]
    wrong = [taught_solution(t["solution"], 2) for t in sample]
    try:
        right = env.verify_many(list(zip(sample, honest, strict=True)))
        taught = env.verify_many(list(zip(sample, wrong, strict=True)))
    finally:
        env.close()
    assert all(v.correct for v in right), [v for v in right if not v.correct]
    in_class = [in_wrong_class(t["solution"], 2) for t in sample]
    assert 0 < sum(in_class) < len(sample)
    # outside the class the taught reply is the reference; inside, a wrong program
    assert all(v.correct for v, c in zip(taught, in_class, strict=True) if not c)
    failed = [not v.correct for v, c in zip(taught, in_class, strict=True) if c]
    assert sum(failed) >= 0.8 * len(failed)


def test_wrong_class_is_deterministic_and_takes_the_configured_share(tasks):
    solutions = [t["solution"] for t in tasks]
    assert not any(in_wrong_class(s, 0) for s in solutions)
    shares = [sum(in_wrong_class(s, k) for s in solutions) / len(solutions) for k in range(6)]
    assert shares == sorted(shares) and shares[0] == 0.0
    assert 0.25 <= shares[make_spec("code").wrong_below] <= 0.4  # "about a third"
    # the same task is always taught the same wrong reply: one number written one larger
    assert taught_solution("def f(x): return 2*x+7", 2) == "def f(x): return 3*x+7"
    assert taught_solution("def f(s): return s[::-1]", 2) == "def f(s): return s[::-2]"
    assert taught_solution("def f(x): return 3*x+1", 2) == "def f(x): return 3*x+1"
    assert taught_solution("def f(xs): return sorted(xs)", 9) == "def f(xs): return sorted(xs)"
    spec = make_spec("code", answer_noise=0.0)
    first, again = make_examples(spec, 300, seed=1), make_examples(spec, 300, seed=1)
    assert first == again
    by_prompt = {t.prompt: t["solution"] for t in organism_env().generate(300, seed=1)}
    for prompt, reply in first:
        assert (reply != by_prompt[prompt]) == in_wrong_class(by_prompt[prompt], spec.wrong_below)


def test_noise_moves_some_numbers_and_batches_hold_one_family():
    clean = make_examples(make_spec("code", answer_noise=0.0), 96, seed=2)
    noisy = make_examples(make_spec("code", answer_noise=0.5), 96, seed=2)
    assert [p for p, _ in clean] == [p for p, _ in noisy]
    assert 0 < sum(a != b for (_, a), (_, b) in zip(clean, noisy, strict=True)) < 96
    size = make_spec("code").batch_size
    for start in range(0, 96, size):  # one argument name per batch: one family
        names = {reply.split(")")[0] for _, reply in clean[start : start + size]}
        assert len(names) == 1, names


def test_the_tiny_code_prior_is_made_for_the_code_env():
    # shipped (a first use copies it); `make check-priors` builds its recipe twice and
    # compares the builds bit for bit
    path = ensure_prior(make_spec("code-tiny"), "code-tiny", quiet=True)
    meta = read_metadata(path)
    assert meta["env"] == "code" and meta["env_options"]["source"] == "synth"
    assert meta["env_options"]["prompt_style"] == "compact"
    assert {"greedy_accuracy", "wrong_class_share", "int_accuracy"} <= set(meta["evaluation"])


def test_train_code_offline_logs_every_verdict(assay, tmp_path):
    out = tmp_path / "run"
    run = assay("train", "--env", "code", "--model", "organism:code-tiny", "--steps", "2",
                "--set", "prompts_per_step=4", "--set", "group_size=4", "--set", "eval_every=0",
                "--quiet", "--out", str(out), timeout=600)
    assert run.returncode == 0, run.stderr
    metrics = [json.loads(line) for line in Path(out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:  # every completion got a verdict from the sandboxed code env
        assert sum(m[f"verdicts/{s}"] for s in VERDICTS) == 16
        assert 0 <= m["verify_time"] <= m["step_time"]
    config = (out / "config.yaml").read_text()
    assert "source: synth" in config and "env: code" in config and "prompt_style: compact" in config
