"""Test feedback for the code env (`feedback=tests`): a failed submission is shown the
visible tests it failed, never a hidden one; the hidden tests decide the verdict. Real
sandbox runs throughout."""

from __future__ import annotations

import pytest
from conftest import scripted

from assay.envs.code_feedback import visible_tests
from assay.envs.episode import max_turns, run_episodes
from assay.envs.registry import get_env
from assay.training.episodes import play_episodes
from assay.training.rollout import Generation

#: 2 shown examples of x -> 3x, 3 hidden ones
TESTS = ("assert f(1) == 3\nassert f(2) == 6\n"
         "assert f(5) == 15\nassert f(7) == 21\nassert f(0) == 0\n")
TASK = {"entry_point": "f", "tests": TESTS, "shown": 2}
WRONG = "```python\ndef f(x):\n    return 2 * x\n```"  # passes only f(0) (hidden)
RIGHT = "```python\ndef f(x):\n    return 3 * x\n```"
#: passes the two shown examples (by table) and none of the three hidden ones
MEMORISED = "```python\ndef f(x):\n    return {1: 3, 2: 6}.get(x, -1)\n```"



@pytest.fixture
def env():
    env = get_env("code", feedback="tests", timeout=2.0)
    yield env
    env.close()


def test_visible_tests_are_what_the_prompt_shows():
    code = get_env("code")
    synth = code.make_task(TASK)
    assert [t["tests"] for t in visible_tests(synth)] == ["assert f(1) == 3\n",
                                                          "assert f(2) == 6\n"]
    listed = code.make_task({"entry_point": "f", "tests": TESTS})  # the prompt lists all
    assert len(visible_tests(listed)) == 5
    io = code.make_task({"io": [{"stdin": "1\n", "stdout": "2\n"}, {"stdin": "2\n", "stdout": "3\n"}]})
    assert [t["io"] for t in visible_tests(io)] == [[{"stdin": "1\n", "stdout": "2\n"}]]
    humaneval = code.make_task({"code_prompt": "def f(x):\n", "test": "def check(c): pass",
                                "entry_point": "f"})
    assert visible_tests(humaneval) == []


def test_a_failed_submission_sees_the_failed_visible_tests_and_no_hidden_one(env):
    task = env.make_task(TASK)
    (episode,) = run_episodes(env, [task], scripted(WRONG, RIGHT))
    assert episode.turns == 2 and episode.verdict.correct
    seen = episode.observations[0]
    assert "failed 2 of the 2 visible tests" in seen
    assert "assert f(1) == 3" in seen and "assert f(2) == 6" in seen
    for hidden in ("f(5)", "f(7)", "f(0)"):
        assert hidden not in seen
    assert episode.tool_calls == 2  # both submissions checked: the second passed, and ended it


def test_the_hidden_tests_decide_after_the_visible_ones_pass(env):
    task = env.make_task(TASK)
    (episode,) = run_episodes(env, [task], scripted(MEMORISED, RIGHT))
    # the visible tests pass: the episode ends, and the hidden tests fail the submission
    assert episode.turns == 1 and episode.observations == []
    assert not episode.verdict.correct and episode.verdict.detail.startswith("2/5 tests passed")


def test_up_to_max_turns_submissions_then_the_last_is_verified():
    env = get_env("code", feedback="tests", max_turns=4, timeout=2.0)
    try:
        assert max_turns(env) == 4
        (episode,) = run_episodes(env, [env.make_task(TASK)], scripted(WRONG))
        assert episode.turns == 4 and len(episode.observations) == 3
        assert episode.verdict.score == pytest.approx(1 / 5)  # f(0) == 0 passes
    finally:
        env.close()


def test_code_that_does_not_parse_is_told_so(env):
    (episode,) = run_episodes(env, [env.make_task(TASK)], scripted("def f(x) return", RIGHT))
    assert "not a program that runs" in episode.observations[0] and "line 1" in episode.observations[0]
    assert episode.verdict.correct


def test_compact_prompts_get_the_failed_examples_as_a_compact_prompt():
    env = get_env("code", feedback="tests", prompt_style="compact", timeout=2.0)
    try:
        task = env.make_task(TASK)
        assert task.prompt == "f(1)=3 f(2)=6:"
        half = "def f(x): return 3 if x == 1 else 0"
        (episode,) = run_episodes(env, [task], scripted(half, RIGHT))
        assert episode.observations == ["f(2)=6:"]
    finally:
        env.close()


@pytest.mark.parametrize("code", [
    "import os\nwhile True:\n    os.fork()",  # fork bomb
    "print('x' * 10_000_000)",  # output flood
    "import time\ntime.sleep(60)",  # sleeping past the limit
])
def test_hostile_submissions_are_failed_tests_not_errors(env, code):
    hostile = f"```python\n{code}\ndef f(x):\n    return 2 * x\n```"
    (episode,) = run_episodes(env, [env.make_task(TASK)], scripted(hostile, RIGHT))
    assert episode.turns == 2 and "failed 2 of the 2 visible tests" in episode.observations[0]
    assert len(episode.observations[0]) < 300  # what the program printed is not shown
    assert episode.tool_errors == 0 and episode.verdict.correct
    if "sleep" in code:
        assert episode.tool_timeouts == 1


def test_nothing_a_submission_writes_reaches_the_next_episode(env):
    writes = ("```python\nopen('/tmp/note', 'w').write('x'); open('note', 'w').write('x')\n"
              "def f(x):\n    return 0\n```")
    reads = ("```python\nimport os\nSEEN = os.path.exists('/tmp/note') or os.path.exists('note')\n"
             "def f(x):\n    return 3 * x + SEEN\n```")
    task = env.make_task(TASK)
    run_episodes(env, [task], scripted(writes, writes))
    (episode,) = run_episodes(env, [task], scripted(reads))
    assert episode.turns == 1 and episode.verdict.correct  # it saw no note: SEEN is False


def test_all_submissions_of_a_turn_go_to_the_sandbox_as_one_batch(env):
    batches = []
    check = env._verify_answers

    def counting(pairs, **kw):
        batches.append(len(pairs))
        return check(pairs, **kw)

    env._verify_answers = counting
    tasks = [env.make_task(TASK) for _ in range(3)]
    run_episodes(env, tasks, scripted(WRONG, WRONG, RIGHT), verify=False)
    assert batches == [6, 6]  # 3 episodes x 2 visible tests, on each of 2 turns


@pytest.mark.parametrize("options", [{"feedback": "hints"}, {"max_turns": 17, "feedback": "tests"},
                                     {"max_turns": 2}, {"turn_discount": 0.5},
                                     {"turn_discount": 0, "feedback": "tests"},
                                     {"turn_discount": 1.5, "feedback": "tests"},
                                     {"turn_discount": float("nan"), "feedback": "tests"}])
def test_bad_feedback_options_are_refused_by_name(options):
    with pytest.raises(ValueError) as info:
        get_env("code", **options)
    assert next(iter(options)) in str(info.value)  # the field at fault is named


def test_a_turn_discount_lowers_a_later_submissions_score_but_not_its_status():
    env = get_env("code", feedback="tests", max_turns=3, turn_discount=0.5, timeout=2.0)
    try:
        first, second, never = (run_episodes(env, [env.make_task(TASK)], scripted(*script))[0]
                                for script in [(RIGHT,), (WRONG, RIGHT), (WRONG,)])
    finally:
        env.close()
    assert first.turns == 1 and first.verdict.score == 1.0
    assert second.turns == 2 and second.verdict.correct and second.verdict.score == 0.5
    assert never.turns == 3 and never.verdict.status == "incorrect"
    assert never.verdict.score == pytest.approx(1 / 5 * 0.25)  # f(0) == 0, two turns late


def test_an_episode_ends_where_the_model_has_no_room_to_reply(env):
    """A model with a table of positions: an observation that would fill the context
    ends the episode instead of overflowing it."""
    task = env.make_task(TASK)
    prompt = [1] * 20

    def sample(contexts, n, turn):
        return [[Generation([5] * 10, True) for _ in range(n)] for _ in contexts]

    class Chars:  # a character per token
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [7] * len(text)}

        def decode(self, ids, skip_special_tokens=True):
            return WRONG

    _, (episode,) = play_episodes(env, Chars(), [task], [prompt], 1, sample, chat=False,
                                  positions=20 + 10 + 60)
    assert episode.turns == 1 and episode.observations == []  # the feedback is ~130 chars
    _, (episode,) = play_episodes(env, Chars(), [task], [prompt], 1, sample, chat=False,
                                  positions=None)
    assert episode.turns == 3
    # the run's token budget: a turn whose observation and reply could cross it is not played
    observed = len(episode.observations[0])
    for budget, turns in ((10 + observed + 10, 2), (10 + observed + 9, 1)):
        _, (episode,) = play_episodes(env, Chars(), [task], [prompt], 1, sample, chat=False,
                                      max_tokens=budget, reply_tokens=10)
        assert episode.turns == turns, budget


def test_the_episode_token_budget_must_leave_room_for_a_reply():
    from assay.training import resolve
    from assay.training.config import ConfigError

    with pytest.raises(ConfigError, match="max_episode_tokens"):
        resolve(sets={"max_episode_tokens": "8", "max_new_tokens": "12"},
                flags={"model": "organism:tiny"})


def test_a_function_prompt_hides_its_tests_and_io_feedback_names_input_and_output(env):
    # a task shown as a signature (code_prompt) keeps every test hidden, `tests` or not
    signature = env.make_task({"code_prompt": "def f(x):\n", "tests": TESTS, "entry_point": "f"})
    assert visible_tests(signature) == []
    io = env.make_task({"io": [{"stdin": "3\n", "stdout": "6\n"}, {"stdin": "5\n", "stdout": "10\n"}]})
    (episode,) = run_episodes(env, [io], scripted("print(0)", "print(int(input()) * 2)"))
    assert 'input "3\\n", expected output "6\\n"' in episode.observations[0]
    assert "5" not in episode.observations[0] and episode.verdict.correct


def test_an_empty_submission_is_told_there_is_no_code(env):
    (episode,) = run_episodes(env, [env.make_task(TASK)], scripted("   ", RIGHT))
    assert "no code found" in episode.observations[0] and episode.verdict.correct
    assert episode.tool_calls == 1  # the empty one ran nothing; the second was checked


def test_a_compact_unreadable_submission_is_shown_the_prompt_again_as_a_prompt():
    from assay.envs.code_feedback import unreadable_message
    from assay.envs.task import Task

    assert unreadable_message("no code", Task("t", "f(1)=2 f(2)=4:", {}), compact=True) == "f(1)=2 f(2)=4:"
    # a task file's own prompt need not end the compact way: the colon that asks is added
    assert unreadable_message("no code", Task("t", "f(1)=2", {}), compact=True) == "f(1)=2:"


def test_a_sandbox_that_fails_is_one_tool_error_and_ends_the_episode(env, monkeypatch):
    from assay.verifiers import Verdict

    def broken(pairs, **_):  # the sandbox itself failed on every visible test
        return [Verdict.error("sandbox: worker lost") for _ in pairs]

    monkeypatch.setattr(env, "_verify_answers", broken)
    (episode,) = run_episodes(env, [env.make_task(TASK)], scripted(WRONG, RIGHT), verify=False)
    assert (episode.turns, episode.tool_calls, episode.tool_errors) == (1, 1, 1)
    assert episode.observations == []  # nothing to show the model: its last submission stands


def test_a_visible_test_runs_with_the_imports_and_helpers_before_it(env):
    """The prompt shows every line of `tests`; an assert needing `math` or a helper defined
    above it passes on a right program, which ends the episode at once."""
    tests = "import math\ndef twice(x):\n    return 2 * x\nassert f(16) == math.sqrt(16) * 2\nassert f(1) == twice(1)\n"
    task = env.make_task({"tests": tests, "entry_point": "f"})
    assert [t["tests"] for t in visible_tests(task)] == ["assert f(16) == math.sqrt(16) * 2\n",
                                                         "assert f(1) == twice(1)\n"]
    (episode,) = run_episodes(env, [task], scripted("```python\ndef f(x):\n    return 2 * x ** 0.5 if x != 1 else 2\n```"))
    assert episode.turns == 1 and episode.verdict.correct and episode.observations == [], episode.observations


def test_a_task_with_its_own_prompt_shows_only_the_tests_that_prompt_holds(env):
    hidden = env.make_task({"prompt": "Write a function f(x) that doubles x.", "entry_point": "f",
                            "tests": "assert f(1) == 2\nassert f(5) == 10\nassert f(-3) == -6\n"})
    assert visible_tests(hidden) == []  # none shown: none may be fed back
    some = env.make_task({"prompt": "Write f(x) that doubles x, e.g.\nassert f(1) == 2\n", "entry_point": "f",
                          "tests": "assert f(1) == 2\nassert f(5) == 10\n"})
    assert [t["tests"] for t in visible_tests(some)] == ["assert f(1) == 2\n"]
    (episode,) = run_episodes(env, [some], scripted(WRONG, RIGHT))
    assert "f(5)" not in " ".join(episode.observations)


def test_an_assert_over_several_lines_is_one_visible_test(env):
    task = env.make_task({"tests": "assert f(\n    1) == 2\nassert f(2) == 4\n", "entry_point": "f"})
    assert [t["tests"] for t in visible_tests(task)] == ["assert f(\n    1) == 2\n", "assert f(2) == 4\n"]
    (episode,) = run_episodes(env, [task], scripted("```python\ndef f(x):\n    return 0\n```",
                                                    "```python\ndef f(x):\n    return 2 * x\n```"))
    assert episode.tool_errors == 0 and episode.turns == 2 and episode.verdict.correct
    assert "failed 2 of the 2 visible tests" in episode.observations[0]


def test_without_feedback_every_episode_ends_and_a_humaneval_row_shows_no_test():
    plain = get_env("code")
    try:
        task = plain.make_task(TASK)
        assert plain.respond_many([type("E", (), {"task": task, "final_reply": WRONG})()] * 2) == [None, None]
    finally:
        plain.close()
    row = get_env("code").make_task({"prompt": "def f(x):\n", "test": "def check(c):\n    assert c(1) == 3\n",
                                     "entry_point": "f"})
    assert visible_tests(row) == []  # HumanEval's hidden tests, its prompt the code
