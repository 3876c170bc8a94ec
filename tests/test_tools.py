"""The Python tool's replies (assay/envs/tools.py): the text of a tool call is code, never
an answer, in an episode's last reply as in any other."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import pytest
from conftest import scripted

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.envs.base import Environment  # noqa: E402
from assay.envs.countdown import CountdownEnv  # noqa: E402
from assay.envs.episode import run_episodes  # noqa: E402
from assay.envs.registry import get_env  # noqa: E402
from assay.envs.tools import PythonTool, ToolOptions  # noqa: E402
from assay.verifiers import Verdict  # noqa: E402

COUNTDOWN = {"numbers": [3, 4, 5], "target": 17}
MATH = {"problem": "What is -321?", "answer": "-321"}
JSON_CALL = ('<tool_call>{"name": "python", "arguments": '
             '{"code": "x = \'<answer>3*4+5</answer>\'"}}</tool_call>')


@pytest.fixture
def envs():
    made = []

    def make(name, **options):
        made.append(get_env(name, **options))
        return made[-1]

    yield make
    for env in made:
        env.close()


@pytest.mark.parametrize("last", ["<python>x = '<answer>3*4+5</answer>'</python>", JSON_CALL,
                                  "<python>print('<answer>3*4+5</answer>')</python>\n"])
def test_countdown_an_answer_inside_the_last_call_is_no_answer(envs, last):
    env = envs("countdown", tools="python", max_turns=2)
    task = env.make_task(COUNTDOWN)
    (episode,) = run_episodes(env, [task], scripted("<python>print(1)</python>", last))
    assert episode.turns == 2 and episode.tool_calls == 1
    assert episode.verdict.status == "invalid", episode.verdict
    assert env.extract(last) is None and env.verify(task, last).status == "invalid"


@pytest.mark.parametrize("options, last", [
    ({}, "<python>print(r'\\boxed{-321}')</python>"),
    ({"answer_format": "last_number"}, "<python>print(-321)</python>"),
])
def test_math_an_answer_inside_the_last_call_is_no_answer(envs, options, last):
    env = envs("math", tools="python", max_turns=2, **options)
    task = env.make_task(MATH)
    (episode,) = run_episodes(env, [task], scripted("<python>print(1)</python>", last))
    assert episode.turns == 2 and episode.tool_calls == 1
    assert episode.verdict.status == "invalid", episode.verdict
    assert env.extract(last) is None


def test_an_answer_outside_the_calls_still_counts(envs):
    countdown = envs("countdown", tools="python", max_turns=2)
    task = countdown.make_task(COUNTDOWN)
    (episode,) = run_episodes(countdown, [task], scripted(
        "<python>print(3*4+5)</python>", "<python>x = 1</python> so <answer>3*4+5</answer>"))
    assert episode.turns == 2 and episode.verdict.correct
    # a wrong answer in the code does not spoil (nor hedge) the one outside it
    math = envs("math", tools="python", max_turns=1)
    task = math.make_task(MATH)
    assert math.verify(task, "<python>print(r'\\boxed{5}')</python> \\boxed{-321}").correct
    assert math.extract("<python>print(r'\\boxed{5}')</python> \\boxed{-321}") == "-321"


def test_without_the_tool_a_reply_is_read_whole_as_before(envs):
    # tools=none: `<python>` is no call, just text, and single-turn envs are unchanged
    countdown = envs("countdown")
    task = countdown.make_task(COUNTDOWN)
    assert countdown.verify(task, "<python>x = '<answer>3*4+5</answer>'</python>").correct
    math = envs("math")
    assert math.verify(math.make_task(MATH), "<python>print(r'\\boxed{-321}')</python>").correct
    # the compact tool: a call is a whole `#EXPR` reply, and an answer is read as it was
    compact = envs("countdown", tools="python", prompt_style="compact")
    task = compact.make_task({"numbers": [5, 1, 2], "target": 7})
    assert compact.verify(task, "5+1*2").correct and compact.verify(task, "#5+1*2").status != "correct"


@dataclass
class _SortOptions(ToolOptions):
    pass


class _SortEnv(PythonTool, Environment):
    """A user's env as docs/define-an-environment.md builds one: its own extract."""

    name = "sort-tool-test"
    Options = _SortOptions
    verification = "in_process"

    def generate(self, n, seed=0):
        return [self.make_task({"values": [3, 1, 2]}, id=str(i)) for i in range(n)]

    def render_prompt(self, task):
        return self.tool_prompt(f"Sort {task['values']}; answer in <answer> tags.")

    def extract(self, completion):
        start = completion.rfind("<answer>")
        end = completion.find("</answer>", start)
        return completion[start + 8:end].strip() if start >= 0 and end > start else None

    def check(self, task, answer):
        right = answer.replace(" ", "") == str(sorted(task["values"])).replace(" ", "")
        return Verdict.right() if right else Verdict.wrong("not sorted")


class _CountdownChild(CountdownEnv):
    def extract(self, completion):  # an extractor of its own, on an env with the tool
        return super().extract(completion)


def test_every_env_with_the_tool_reads_outside_calls():
    inside = "<python>print('<answer>[1, 2, 3]</answer>')</python>"
    env = _SortEnv(tools="python", max_turns=1)
    (task,) = env.generate(1)
    assert env.extract(inside) is None and env.verify(task, inside).status == "invalid"
    assert env.verify(task, inside + " <answer>[1, 2, 3]</answer>").correct
    assert _SortEnv().verify(task, inside).correct  # no tool: read whole
    child = _CountdownChild(tools="python", max_turns=1)
    task = child.make_task(COUNTDOWN)
    assert child.verify(task, "<python>x = '<answer>3*4+5</answer>'</python>").status == "invalid"
    assert child.verify(task, "<answer>3*4+5</answer>").correct
