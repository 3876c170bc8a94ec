"""Episodes as token sequences: the model's replies and the observations between them,
with a mask that keeps observations out of the loss."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
from gguf_fixture import write_tiny_gguf

from assay.envs.registry import get_env
from assay.organism.tokenizer import make_tokenizer
from assay.training.batch import RolloutBatch
from assay.training.episodes import observation_ids, play_episodes
from assay.training.rollout import Generation

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

#: every printable ASCII character and the newline: a plain tokenizer for any text here
PLAIN = make_tokenizer("".join(chr(c) for c in range(32, 127)) + "\n")


def _ids(text: str) -> list[int]:
    return list(PLAIN(text, add_special_tokens=False)["input_ids"])


def _scripted(replies: list[str], seen: list):
    """A stand-in engine: turn t's reply is replies[t] (ended by the end token)."""
    def sample(contexts, n, turn):
        seen.append((turn, [list(c) for c in contexts], n))
        ids = _ids(replies[turn]) + [PLAIN.eos_token_id]
        return [[Generation(list(ids), True) for _ in range(n)] for _ in contexts]
    return sample


def test_an_episode_is_its_replies_and_observations_with_only_replies_trained():
    env = get_env("countdown", tools="python")
    task = env.make_task({"numbers": [3, 4, 5], "target": 17})
    prompt = _ids(task.prompt)
    replies = ["<python>print(3*4+5)</python>", "<answer>3*4+5</answer>"]
    seen: list = []
    try:
        generations, episodes = play_episodes(env, PLAIN, [task], [prompt], 2,
                                              _scripted(replies, seen), chat=False)
    finally:
        env.close()
    assert len(generations) == 1 and len(generations[0]) == 2 and len(episodes) == 2
    first = _ids(replies[0]) + [PLAIN.eos_token_id]
    shown = _ids(episodes[0].observations[0])
    second = _ids(replies[1]) + [PLAIN.eos_token_id]
    assert "17" in episodes[0].observations[0] and episodes[0].replies == replies
    for g in generations[0]:
        assert g.token_ids == first + shown + second and g.finished
        assert g.model_mask == [1] * len(first) + [0] * len(shown) + [1] * len(second)
    # turn 0 samples the group from the prompt; turn 1 continues each episode on its own
    assert seen[0] == (0, [prompt], 2)
    assert seen[1] == (1, [prompt + first + shown] * 2, 1)

    # the loss mask is the model mask: observation tokens are never trained on
    batch = RolloutBatch.build([prompt], generations, PLAIN.pad_token_id)
    mask = torch.tensor(generations[0][0].model_mask, dtype=torch.float32)
    assert torch.equal(batch.loss_mask[0, : len(mask)], mask)
    assert batch.loss_mask.sum() == 2 * (len(first) + len(second))


def test_a_single_turn_env_plays_one_reply_with_every_token_trained():
    env = get_env("countdown")
    task = env.make_task({"numbers": [3, 4, 5], "target": 17})
    seen: list = []
    generations, episodes = play_episodes(env, PLAIN, [task], [_ids(task.prompt)], 3,
                                          _scripted(["<python>print(1)</python>"], seen),
                                          chat=False)
    assert len(seen) == 1 and all(e.turns == 1 and e.done for e in episodes)
    g = generations[0][0]
    assert g.model_mask == [1] * len(g.token_ids)


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory):
    from assay.training.policy import load_policy, resolve_model_path

    gguf = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    with pytest.MonkeyPatch.context() as patch:  # the conversion lands in a cache of its own
        patch.setenv("ASSAY_CACHE", str(tmp_path_factory.mktemp("cache")))
        _, tokenizer = load_policy(str(Path(resolve_model_path(str(gguf), quiet=True))))
    return tokenizer


@pytest.mark.parametrize("ended", [True, False])
def test_an_observation_reads_as_the_chat_template_shows_it(chat_tokenizer, ended):
    from assay.training.policy import encode_prompt

    tok = chat_tokenizer
    prompt = encode_prompt(tok, "What is 6 * 7?", chat=True)
    reply = list(tok("<python>print(6*7)</python>", add_special_tokens=False)["input_ids"])
    end = tok.convert_tokens_to_ids("<|im_end|>")
    if ended:  # the model closed its turn itself; otherwise it was cut at the length limit
        reply.append(end)
    shown = observation_ids(tok, "<output>42</output>", chat=True,
                            ended_with=end if ended else None)
    as_template = tok.apply_chat_template(
        [{"role": "user", "content": "What is 6 * 7?"},
         {"role": "assistant", "content": "<python>print(6*7)</python>"},
         {"role": "user", "content": "<output>42</output>"}],
        add_generation_prompt=True, tokenize=False)
    assert tok.decode(prompt + reply + shown) == as_template


def test_a_tool_output_is_a_tool_message_where_the_template_has_that_role(chat_tokenizer):
    tok, out = chat_tokenizer, "<output>42</output>"
    conversation = [{"role": "user", "content": "x"},
                    {"role": "assistant", "content": "<python>print(6*7)</python>"}]

    def template(role):
        return tok.apply_chat_template(conversation + [{"role": role, "content": out}],
                                       add_generation_prompt=True, tokenize=False)

    reply = list(tok(conversation[1]["content"], add_special_tokens=False)["input_ids"])
    from assay.training.policy import encode_prompt

    start = encode_prompt(tok, "x", chat=True)
    shown = observation_ids(tok, out, chat=True, ended_with=None, role="tool")
    assert tok.decode(start + reply + shown) == template("tool")
    assert "<|im_start|>tool\n" in tok.decode(shown)

    # a template that knows no tool role (it raises on it) shows the output as a user's
    ours = tok.chat_template
    loop = "{% for message in messages %}"
    tok.chat_template = ours.replace(loop, loop + "{% if message['role'] not in ['user', "
                                     "'assistant'] %}{{ raise_exception('no such role') }}{% endif %}")
    try:
        assert "raise_exception" in tok.chat_template
        shown = observation_ids(tok, out, chat=True, ended_with=None, role="tool")
        assert tok.decode(start + reply + shown) == template("user")
    finally:
        tok.chat_template = ours


def test_a_tool_env_shows_its_outputs_as_tool_messages_and_feedback_as_user_ones():
    from assay.envs.episode import run_episodes

    tools = get_env("countdown", tools="python")
    feedback = get_env("code", feedback="tests", timeout=2.0)
    try:
        (call,) = run_episodes(tools, [tools.make_task({"numbers": [3, 4, 5], "target": 17})],
                               lambda eps: ["<python>print(17)</python>" if e.turns == 0
                                            else "<answer>3*4+5</answer>" for e in eps])
        (fix,) = run_episodes(feedback, [feedback.make_task({"entry_point": "f", "shown": 1,
                                                             "tests": "assert f(1) == 2\n"})],
                              lambda eps: ["```python\ndef f(x):\n    return x\n```"] * len(eps))
    finally:
        tools.close()
        feedback.close()
    assert [m["role"] for m in call.messages()] == ["user", "assistant", "tool", "assistant"]
    assert [m["role"] for m in fix.messages()][:3] == ["user", "assistant", "user"]


@pytest.mark.parametrize("ended", [True, False], ids=["ended", "cut-off"])
def test_an_episode_under_a_chat_template_reads_as_the_template_shows_it(chat_tokenizer, ended):
    """Through play_episodes: a reply that ended itself keeps its one end-of-turn token, a
    reply cut at the length limit gets the template's, and the second turn continues the
    conversation exactly as the template renders it."""
    from assay.training.policy import encode_prompt

    tok = chat_tokenizer
    env = get_env("countdown", tools="python")
    task = env.make_task({"numbers": [3, 4, 5], "target": 17})
    prompt = encode_prompt(tok, task.prompt, chat=True)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    call, answer = "<python>print(3*4+5)</python>", "<answer>3*4+5</answer>"

    def sample(contexts, n, turn):
        ids = list(tok(call if turn == 0 else answer, add_special_tokens=False)["input_ids"])
        if turn > 0 or ended:
            ids.append(end)
        return [[Generation(list(ids), turn > 0 or ended) for _ in range(n)] for _ in contexts]

    try:
        (generations,), (episode,) = play_episodes(env, tok, [task], [prompt], 1, sample, chat=True)
    finally:
        env.close()
    conversation = [{"role": "user", "content": task.prompt}, {"role": "assistant", "content": call},
                    {"role": "tool", "content": episode.observations[0]},
                    {"role": "assistant", "content": answer}]
    rendered = tok.apply_chat_template(conversation, tokenize=False)
    assert tok.decode(prompt + generations[0].token_ids) == rendered.rstrip("\n")
    assert generations[0].token_ids.count(end) == 3  # reply, observation, reply: one end each


@pytest.mark.parametrize("last", ["<|endoftext|>", None], ids=["other-stop-token", "empty-reply"])
def test_a_reply_that_stopped_without_the_end_of_turn_still_gets_the_templates(chat_tokenizer, last):
    """A reply that ended on another stop token, or ended at once with no token, has no
    end-of-turn in place: the observation brings the template's own."""
    tok = chat_tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    reply = [] if last is None else [tok.convert_tokens_to_ids(last)]
    shown = observation_ids(tok, "<output>42</output>", chat=True,
                            ended_with=reply[-1] if reply else None)
    assert shown[0] == end  # the template closes the model's turn first

    env = get_env("code", feedback="tests", max_turns=2, timeout=2.0)
    task = env.make_task({"entry_point": "f", "shown": 1, "tests": "assert f(1) == 2\n"})

    def sample(contexts, n, turn):
        return [[Generation(list(reply), True) for _ in range(n)] for _ in contexts]

    try:
        (generations,), _ = play_episodes(env, tok, [task], [[1, 2]], 1, sample, chat=True)
    finally:
        env.close()
    ids = generations[0].token_ids
    # one observation: the end of the model's turn, then the message's own
    assert ids[len(reply)] == end and ids.count(end) == 2


def test_a_template_that_drops_a_role_it_does_not_know_shows_the_output_as_a_users(chat_tokenizer):
    tok = chat_tokenizer
    ours = tok.chat_template
    loop = "{% for message in messages %}"
    # renders only user and assistant messages, silently skipping any other
    tok.chat_template = ours.replace(loop, loop + "{% if message['role'] in ['user', 'assistant'] %}") \
        .replace("{% endfor %}", "{% endif %}{% endfor %}")
    try:
        shown = tok.decode(observation_ids(tok, "<output>42</output>", chat=True, ended_with=None,
                                          role="tool"))
    finally:
        tok.chat_template = ours
    assert "<output>42</output>" in shown and "<|im_start|>user\n" in shown
