"""Rewards from installed packages: the `assay.rewards` entry points, by name in Python
and on the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from assay.rewards import get_reward, reward_names
from assay.rewards.base import RewardError

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

PLUGIN = textwrap.dedent('''
    from assay.rewards import Reward, register_reward

    class Shortness(Reward):
        """1 for the shortest completion of the group, else 0 (a toy intrinsic reward)."""
        name = "shortness"
        kind = "intrinsic"

        def score(self, group):
            lengths = [len(c.token_ids) for c in group.completions]
            return [float(n == min(lengths)) for n in lengths]

    @register_reward("has_answer", kind="external")
    def has_answer(group):
        return [float("<answer>" in c.text or bool(c.text)) for c in group.completions]

    not_a_reward = 42
''')
ENTRY_POINTS = textwrap.dedent('''
    [assay.rewards]
    shortness = assay_toy_rewards:Shortness
    has_answer = assay_toy_rewards:has_answer
    broken = assay_toy_rewards:not_a_reward
    missing = assay_toy_missing:nothing
''')


@pytest.fixture
def installed(tmp_path, monkeypatch) -> Iterator[Path]:
    """A package installed the way pip leaves one: its module and its dist-info."""
    (tmp_path / "assay_toy_rewards.py").write_text(PLUGIN)
    info = tmp_path / "assay_toy_rewards-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: assay-toy-rewards\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    from assay.rewards import registry

    before = dict(registry._registered)
    yield tmp_path
    # the rest of the suite knows nothing of the plug-in
    registry._registered.clear()
    registry._registered.update(before)
    sys.modules.pop("assay_toy_rewards", None)


def test_plug_in_rewards_are_found_by_name(installed):
    assert {"shortness", "has_answer", "broken"} <= set(reward_names())
    assert get_reward("shortness").kind == "intrinsic"
    assert get_reward("has_answer").kind == "external"
    combined = get_reward("0.5*shortness + 0.5*verifier")
    assert combined.kind == "mixed"


@pytest.mark.parametrize("name, words", [
    ("broken", ["broken", "neither a Reward subclass"]),
    ("missing", ["missing", "cannot be loaded", "ModuleNotFoundError"]),
])
def test_a_bad_plug_in_is_one_clear_error(installed, name, words):
    with pytest.raises(RewardError) as err:
        get_reward(name)
    assert all(w in str(err.value) for w in words), err.value


def test_a_plug_in_reward_trains_from_the_command_line(installed, tmp_path):
    assay = str(Path(sys.executable).parent / "assay")
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = tmp_path / "run"
    proc = subprocess.run([assay, "train", "--model", "organism:tiny", "--reward", "shortness",
                           "--steps", "2", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    # the shortest of each group got 1: the mean reward is at least 1/G and below 1
    assert all(0 < r["reward"] < 1 for r in rows)
