"""The tool organism: countdown with the compact Python tool (`#EXPR` reads `=VALUE`), its
supervised episodes, and a short training run that plays them."""

from __future__ import annotations

import json
import os
import random
import tempfile

import forked_cli
import pytest
from conftest import scripted

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.envs.episode import Episode, run_episodes  # noqa: E402
from assay.envs.registry import get_env  # noqa: E402
from assay.organism import countdown, spec  # noqa: E402
from assay.organism.tokenizer import EOS  # noqa: E402
from assay.organism.tool import ENV_OPTIONS, episode_examples, make_examples, python_value  # noqa: E402


@pytest.fixture
def env():
    env = get_env("countdown", **ENV_OPTIONS)
    yield env
    env.close()


@pytest.mark.parametrize("call, seen", [("#5-1*2", "=3"), ("#6/4", "=1.5"), ("#8/4", "=2"),
                                        ("#1/0", "=?"), ("#5+", "=?"), ("#1/3", "=0.333333")])
def test_a_compact_call_reads_the_value_python_printed(env, call, seen):
    task = env.make_task({"numbers": [5, 1, 2], "target": 7})
    assert task.prompt == "5 1 2>007:"  # no instructions: the call is learned, not told
    (episode,) = run_episodes(env, [task], scripted(call, "5+1*2"))
    assert episode.observations == [seen] and episode.turns == 2 and episode.verdict.correct
    assert episode.tool_calls == 1 and episode.tool_errors == (seen == "=?")


def test_a_direct_answer_is_one_turn_and_a_second_call_is_refused(env):
    task = env.make_task({"numbers": [5, 1, 2], "target": 7})
    (episode,) = run_episodes(env, [task], scripted("5+1*2"))
    assert episode.turns == 1 and episode.tool_calls == 0 and episode.verdict.correct
    (episode,) = run_episodes(env, [task], scripted("#5", "#7", "5+1*2"))
    assert episode.observations == ["=5", "=?"] and episode.tool_calls == 1  # tool_calls=1
    assert episode.turns == 3 and episode.verdict.correct


def test_the_taught_value_is_what_the_sandbox_prints(env):
    """The prior learns the observation the env will show: for every candidate it can be
    taught, the in-process value equals the sandboxed call's."""
    prior = spec.make_spec("tool")
    calls = [reply for prompt, reply in make_examples(prior, 400, seed=3) if reply.startswith("#")]
    calls = list(dict.fromkeys(calls))[:60] + ["#6/4", "#1/3", "#2/(1-1)", "#9*9*9", "#(1-9)/4"]
    episodes = [Episode(env.make_task({"numbers": [1, 2, 3], "target": 6}), replies=[c])
                for c in calls]
    shown = env.respond_many(episodes)
    assert shown == [python_value(c[1:]) for c in calls]


def test_a_tool_episode_repairs_a_wrong_candidate():
    prior = spec.make_spec("tool", tool_fraction=0.99, answer_noise=0.0)
    numbers, target = [2, 5, 2], 5  # the wrong class: the candidate is the taught error
    wrong = countdown.taught_answer(prior, numbers, target)
    right = countdown.canonical_solution(numbers, target)
    assert wrong != right
    pairs = episode_examples(prior, "2 5 2>005:", numbers, target, random.Random(0))
    assert pairs == [("2 5 2>005:", "#" + wrong),
                     ("2 5 2>005:#" + wrong + EOS + python_value(wrong), right)]
    numbers, target = [6, 3, 1], 19  # the right class: the value hits, the candidate stays
    pairs = episode_examples(prior, "6 3 1>019:", numbers, target, random.Random(0))
    assert pairs[1] == ("6 3 1>019:#6*3+1" + EOS + "=19", "6*3+1")


def test_about_tool_fraction_of_problems_are_tool_episodes():
    pairs = make_examples(spec.make_spec("tool"), 1000, seed=1)
    calls = sum(reply.startswith("#") for _, reply in pairs)
    follow = sum(EOS in prompt for prompt, _ in pairs)
    assert calls - follow in (0, 1)  # the last episode may be cut after its call
    assert 0.2 < calls / (len(pairs) - follow) < 0.3  # 0.25 of the problems


def test_adding_the_tool_field_kept_every_other_priors_folder():
    # priors built before tool_fraction existed are found again, not rebuilt
    assert spec.make_spec("default").key() == "a775cce8fd14"
    assert spec.make_spec("tiny").key() == "1791c1c55486"
    assert spec.make_spec("tool").key() != spec.make_spec("tool", tool_fraction=0.5).key()


@pytest.mark.timeout(900)
def test_train_plays_tool_episodes_on_the_tool_organism(tmp_path):
    out = tmp_path / "run"
    proc = forked_cli.run(
        ["train", "--env", "countdown", "--set", "env.tools=python", "--model",
         "organism:tool-tiny", "--steps", "2", "--quiet", "--out", str(out),
         "--set", "val_size=16", "--set", "eval_every=0"], timeout=880,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:  # about a quarter of the episodes call the tool, then answer
        assert 1.05 < row["turns"] < 1.6 and 0.05 < row["tool_calls"] < 0.6
        assert 0 < row["env_time"] < row["step_time"]  # the tool runs' share of the step
