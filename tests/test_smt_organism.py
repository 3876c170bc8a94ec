"""The smt organism: its supervised answers are right by the smt env's own verifier, its
prompts fit its alphabet and position table, and `assay train --env smt` runs offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assay.organism import get_skill, make_spec
from assay.organism.smt import make_examples, organism_env


def test_taught_answers_are_correct_and_fit_the_model():
    skill = get_skill("smt")
    spec = make_spec("smt", answer_noise=0.0)
    examples = make_examples(spec, 64, seed=3)
    env = organism_env()
    tasks = env.generate(64, seed=3)
    try:
        verdicts = env.verify_many([(t, reply) for t, (_, reply) in zip(tasks, examples, strict=True)])
    finally:
        env.close()
    assert all(v.correct for v in verdicts), [v for v in verdicts if not v.correct]
    assert {reply == "unsat" for _, reply in examples} == {True, False}
    for prompt, reply in examples:
        assert set(prompt + reply) <= set(skill.alphabet), prompt + reply
        assert len(prompt) + len(reply) + 1 <= skill.max_positions


def test_noise_moves_some_answers():
    noisy = make_examples(make_spec("smt", answer_noise=0.5), 64, seed=3)
    clean = make_examples(make_spec("smt", answer_noise=0.0), 64, seed=3)
    assert [p for p, _ in noisy] == [p for p, _ in clean]
    assert 0 < sum(a != b for (_, a), (_, b) in zip(noisy, clean, strict=True)) < 64


@pytest.mark.slow
def test_train_smt_offline_with_a_random_init_organism(assay, tmp_path):
    out = tmp_path / "run"
    run = assay("train", "--env", "smt", "--model", "organism:smt", "--set", "prior.sft_steps=0",
                "--steps", "2", "--set", "prompts_per_step=4", "--set", "group_size=4",
                "--set", "eval_every=0", "--quiet", "--out", str(out), timeout=600)
    assert run.returncode == 0, run.stderr
    metrics = [json.loads(line) for line in Path(out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:  # every completion got a verdict from the smt env
        assert sum(m[f"verdicts/{s}"] for s in ("correct", "incorrect", "invalid", "timeout", "error")) == 16
    config = (out / "config.yaml").read_text()
    assert "prompt_style: compact" in config and "env: smt" in config
