"""Multi-turn episodes and the Python tool: the env answers a reply that runs code with
the code's output, in the real sandbox; hostile tool calls are observations."""

from __future__ import annotations

import pickle

import pytest
from conftest import scripted

from assay.envs.episode import max_turns, run_episodes
from assay.envs.registry import get_env
from assay.envs.tools import observation, tool_call
from assay.sandbox.execution import Execution


def _countdown(**options):
    env = get_env("countdown", tools="python", **options)
    task = env.make_task({"numbers": [3, 4, 5], "target": 17})
    return env, task


def test_single_turn_envs_are_unchanged():
    env = get_env("countdown")
    task = env.make_task({"numbers": [3, 4, 5], "target": 17})
    assert "<python>" not in task.prompt
    (episode,) = run_episodes(env, [task], scripted("<python>print(1)</python>",
                                                     "<answer>3*4+5</answer>"))
    # no tool: the first reply ends the episode and is verified as it always was
    assert episode.turns == 1 and episode.observations == [] and episode.tool_calls == 0
    assert episode.verdict == env.verify(task, "<python>print(1)</python>")


def test_a_tool_call_is_run_and_its_output_read_before_the_answer():
    env, task = _countdown()
    try:
        assert "<python>" in task.prompt and max_turns(env) == 3
        (episode,) = run_episodes(env, [task], scripted(
            "Let me check.\n<python>print(3 * 4 + 5)</python>", "<answer>3*4+5</answer>"))
        assert episode.turns == 2 and episode.tool_calls == 1
        assert "17" in episode.observations[0] and 'status="exit 0"' in episode.observations[0]
        assert 0 < episode.env_seconds < 30  # the wall time of the turn that ran the call
        assert episode.verdict.correct
        # the model saw the prompt, its call, the output, then answered
        roles = [m["role"] for m in episode.messages()]
        assert roles == ["user", "assistant", "tool", "assistant"]  # the output: a tool message
    finally:
        env.close()


def test_an_answer_ends_the_episode_even_beside_code():
    env, task = _countdown()
    try:
        (episode,) = run_episodes(env, [task], scripted(
            "<python>print(1)</python> <answer>3*4+5</answer>"))
        assert episode.turns == 1 and episode.tool_calls == 0 and episode.verdict.correct
    finally:
        env.close()


def test_budgets_bound_tool_runs_and_turns():
    env, task = _countdown(tool_calls=1, max_turns=4)
    try:
        (episode,) = run_episodes(env, [task], scripted("<python>print(2)</python>"))
        # one run, then refusals; the episode stops at max_turns with no answer
        assert episode.turns == 4 and episode.tool_calls == 1
        assert len(episode.observations) == 3  # nothing answers the last turn: it is verified
        assert all("no tool runs left" in o for o in episode.observations[1:])
        assert episode.verdict.status == "invalid"
    finally:
        env.close()
    env, task = _countdown(tool_seconds=0.6, tool_timeout=0.5, tool_calls=5, max_turns=4)
    try:
        (episode,) = run_episodes(env, [task], scripted(
            "<python>import time\ntime.sleep(30)</python>"))
        # the per-episode time runs out after the first timeout: the rest are refused
        assert episode.tool_timeouts >= 1 and episode.tool_seconds <= 0.6 + 0.5 + 1.0
        assert "no tool runs left" in episode.observations[-1]
    finally:
        env.close()


def test_the_episodes_tool_time_left_bounds_the_next_runs_timeout():
    # 2.6 s for the episode: the first run sleeps 1.2 s, so the second, which would sleep
    # 1.8 s (inside its own 2 s), has at most 1.4 s left and times out
    env, task = _countdown(tool_seconds=2.6, tool_timeout=2.0, tool_calls=3, max_turns=3)
    sleeps = ["<python>import time\ntime.sleep(1.2)\nprint(1)</python>",
              "<python>import time\ntime.sleep(1.8)\nprint(2)</python>"]
    try:
        (episode,) = run_episodes(env, [task], scripted(*sleeps), verify=False)
    finally:
        env.close()
    assert 'status="exit 0"' in episode.observations[0]
    assert 'status="timeout"' in episode.observations[1] and episode.tool_timeouts == 1
    assert episode.tool_seconds < 2.6 + 0.5


def test_a_run_past_two_seconds_times_out_by_default():
    from assay.envs.tools import ToolOptions

    assert ToolOptions().tool_timeout == 2.0  # the documented default (define-an-environment.md)
    env, task = _countdown()
    try:
        (episode,) = run_episodes(env, [task], scripted(
            "<python>import time\ntime.sleep(3)\nprint(1)</python>"), verify=False)
    finally:
        env.close()
    assert 'status="timeout"' in episode.observations[0]


@pytest.mark.parametrize("code, status", [
    ("import os\nwhile True:\n    os.fork()", None),  # fork bomb: bounded by the process limit
    ("print('x' * 10_000_000)", "exit 0"),  # output flood: cut to the observation's size
    ("import time\ntime.sleep(60)", "timeout"),  # sleeping past the limit
    ("import sys\nsys.exit(3)", "exit 3"),
    ("x = bytearray(2_000_000_000)", "memory"),
])
def test_hostile_tool_calls_are_observations(code, status):
    env, task = _countdown(tool_timeout=2.0, tool_output_chars=200)
    try:
        (episode,) = run_episodes(env, [task], scripted(f"<python>{code}</python>",
                                                         "<answer>1</answer>"))
        seen = episode.observations[0]
        assert episode.turns == 2 and episode.tool_calls == 1
        if status is not None:
            assert f'status="{status}"' in seen, seen
        assert len(seen) < 200 + 120  # the output is cut to tool_output_chars (+ the frame)
    finally:
        env.close()


def test_nothing_a_tool_call_writes_reaches_the_next_episode():
    env, task = _countdown()
    try:
        writes = "<python>open('/tmp/note', 'w').write('secret'); open('note', 'w').write('s')</python>"
        reads = ("<python>import os\nprint(os.path.exists('/tmp/note'), os.path.exists('note'))"
                 "</python>")
        run_episodes(env, [task], scripted(writes, "<answer>1</answer>"))
        (episode,) = run_episodes(env, [task], scripted(reads, "<answer>1</answer>"))
        assert "False False" in episode.observations[0]
    finally:
        env.close()


def test_the_tool_calls_of_a_turn_run_as_one_batch():
    env, task = _countdown()
    batches = []
    runs = env._tool_runs

    def counting(jobs):
        batches.append(len(jobs))
        return runs(jobs)

    env._tool_runs = counting
    try:
        episodes = run_episodes(env, [task] * 5, scripted("<python>print(6)</python>",
                                                           "<answer>3*4+5</answer>"))
        assert batches == [5] and all(e.verdict.correct for e in episodes)
    finally:
        env.close()


def test_math_reads_its_answer_outside_the_code():
    env = get_env("math", tools="python", answer_format="last_number")
    task = env.make_task({"problem": "What is 6 * 7?", "answer": "42"})
    try:
        # the code holds numbers, but no answer stands outside it: the tool runs
        (episode,) = run_episodes(env, [task], scripted("<python>print(6 * 7)</python>",
                                                         "It is 42."))
        assert episode.tool_calls == 1 and "42" in episode.observations[0]
        assert episode.verdict.correct
        pickle.dumps(env)  # an env with a live sandbox still travels to verifier workers
    finally:
        env.close()


def test_observation_and_tool_call_parsing():
    assert tool_call("a <python>x=1</python> b <python>\nprint(2)\n</python>") == "print(2)"
    assert tool_call("no code") is None
    # a tool-calling chat template's JSON form, for the tool `python` only
    hermes = '<tool_call>\n{"name": "python", "arguments": {"code": "print(7)"}}\n</tool_call>'
    assert tool_call("Let me run it. " + hermes) == "print(7)"
    assert tool_call(hermes + " then <python>print(8)</python>") == "print(8)"  # the last
    assert tool_call('<tool_call>{"name": "search", "arguments": {"code": "x"}}</tool_call>') is None
    assert tool_call("<tool_call>{not json}</tool_call>") is None
    flood = Execution("ok", 0, "a" * 1000, "", 0.1, stdout_truncated=True)
    shown = observation(flood, 100)
    assert shown.splitlines()[1].count("a") == 100 and "[cut]" in shown
    failed = Execution("error", 1, "partial\n", "Traceback...\n" + "e" * 500 + "ValueError: bad\n", 0.1)
    shown = observation(failed, 120)
    assert 'status="exit 1"' in shown and "ValueError: bad" in shown and "partial" in shown
    both = Execution("error", 1, "o" * 500, "e" * 500, 0.1)
    shown = observation(both, 120)
    assert shown.count("o") + shown.count("e") <= 120 + 10  # + the frame's letters
    assert shown.count("e") >= 30 and shown.count("o") >= 60  # room for both streams
    # stderr the sandbox already cut is marked cut, however little of it is left
    cut_err = Execution("error", 1, "", "Traceback (most recent call last):\n", 0.1,
                        stderr_truncated=True)
    assert "stderr: [cut] Traceback" in observation(cut_err, 400)
    whole = Execution("error", 1, "", "Traceback (most recent call last):\n", 0.1)
    assert "[cut]" not in observation(whole, 400)


@pytest.mark.parametrize("option, value", [("tools", "bash"), ("max_turns", 17),
                                           ("tool_timeout", 0), ("tool_output_chars", 5)])
def test_bad_tool_options_are_refused_by_name(option, value):
    with pytest.raises(Exception, match=option):
        get_env("countdown", **{option: value})


def test_no_tool_runs_at_all_is_a_budget_like_any_other():
    env, task = _countdown(tool_calls=0)
    try:
        (episode,) = run_episodes(env, [task], scripted("<python>print(1)</python>", "<answer>1</answer>"))
        assert episode.tool_calls == 0 and "no tool runs left" in episode.observations[0]
    finally:
        env.close()


def test_max_turns_needs_a_tool_and_defaults_by_it():
    assert max_turns(get_env("countdown")) == 1
    assert max_turns(get_env("math", tools="python")) == 3
    with pytest.raises(Exception, match="max_turns > 1 needs tools=python"):
        get_env("countdown", max_turns=3)


def test_eval_refuses_multi_turn_envs_in_one_line():
    import subprocess
    import sys
    from pathlib import Path

    assay = str(Path(sys.executable).parent / "assay")
    proc = subprocess.run([assay, "eval", "--model", "organism:tiny", "-n", "2", "--env",
                           "countdown", "--set", "env.tools=python"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "one turn per task" in lines[0] and "env.tools" in lines[0], \
        proc.stderr


def test_a_chat_templates_json_tool_call_runs_like_a_python_block():
    env, task = _countdown()
    call = '<tool_call>{"name": "python", "arguments": {"code": "print(3 * 4 + 5)"}}</tool_call>'
    try:
        (episode,) = run_episodes(env, [task], scripted(call, "<answer>3*4+5</answer>"))
        assert episode.turns == 2 and "17" in episode.observations[0] and episode.verdict.correct
        (episode,) = run_episodes(env, [task], scripted(call + " <answer>3*4+5</answer>"))
        assert episode.turns == 1 and episode.tool_calls == 0  # an answer beside it ends it
    finally:
        env.close()
