"""What an environment tells the lab and the audit about itself: a plug-in env gets the
same treatment as a built-in one."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.audit.probes import find_wrapper  # noqa: E402
from assay.envs import get_env  # noqa: E402
from assay.envs.registry import _registered, get_env_class, register_env  # noqa: E402
from assay.lab.presets import with_lab_options  # noqa: E402
from assay.lab.runs import resolve_runs  # noqa: E402


@pytest.fixture
def descending_lab_env():
    """The example plug-in, with a lab option of its own (its lab runs sort descending)."""
    base = get_env_class("sorting")
    cls = type("DescendingLabSorting", (base,), {"name": "sorting-lab",
                                                 "lab_options": {"descending": "true"}})
    register_env(cls)
    yield cls
    _registered.pop("sorting-lab", None)


def test_the_lab_sets_an_envs_lab_options_unless_the_run_sets_them(descending_lab_env):
    assert with_lab_options("sorting-lab", {"steps": "3"}) == {"env.descending": "true", "steps": "3"}
    assert with_lab_options("sorting-lab", {"env.descending": "false"}) == {"env.descending": "false"}
    assert with_lab_options("sorting", {"steps": "3"}) == {"steps": "3"}
    assert with_lab_options("countdown", {}) == {"env.vote_key": "value"}
    sets, config, env = resolve_runs("sharpen", {}, {"env": "sorting-lab", "model": "organism:tiny"})
    assert config.env_options == {"descending": "true"} and env.options.descending is True
    sets, config, env = resolve_runs("sharpen", {"env.descending": "false"},
                                     {"env": "sorting-lab", "model": "organism:tiny"})
    assert env.options.descending is False


@pytest.mark.parametrize("name, template", [("countdown", "<answer>{}</answer>"),
                                            ("math", "\\boxed{{{}}}"),
                                            ("sorting", "<answer>{}</answer>")])
def test_the_audit_writes_answers_in_the_envs_own_template(name, template):
    env = get_env(name)
    try:
        assert env.answer_template == template
        assert find_wrapper(env, [], {}) == template  # declared: nothing tried
    finally:
        env.close()


def test_compare_plans_an_envs_lab_options_into_every_run(descending_lab_env, tmp_path):
    from assay.lab.compare import plan

    on_plugin = plan(tmp_path / "a", preset="smoke", env="sorting-lab", rewards=["verifier"])
    assert on_plugin.settings["sets"]["env.descending"] == "true"
    told = plan(tmp_path / "b", preset="smoke", env="sorting-lab", rewards=["verifier"],
                sets={"env.descending": "false"})
    assert told.settings["sets"]["env.descending"] == "false"
    on_countdown = plan(tmp_path / "c", preset="smoke", rewards=["verifier"])
    assert on_countdown.settings["sets"]["env.vote_key"] == "value"
