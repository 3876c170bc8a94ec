"""Environments from installed packages (the `assay.envs` entry points) that do not load:
listed with the reason, and one line from every command that names them."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from assay.envs import get_env
from assay.envs.registry import PluginError

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

ENTRY_POINTS = textwrap.dedent('''
    [assay.envs]
    missing_module = assay_toy_missing:Env
    not_an_env = json:dumps
''')


@pytest.fixture
def installed(tmp_path, monkeypatch) -> Path:
    """A package's dist-info as pip leaves it, naming a module that is not there and a
    function that is not an env."""
    info = tmp_path / "assay_toy_envs-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: assay-toy-envs\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name, words", [
    ("missing_module", ["env 'missing_module'", "cannot be loaded", "ModuleNotFoundError"]),
    ("not_an_env", ["env 'not_an_env'", "json:dumps", "not an Environment subclass"]),
])
def test_a_plug_in_env_that_does_not_load_is_one_error(installed, name, words):
    with pytest.raises(PluginError) as err:
        get_env(name)
    assert all(w in str(err.value) for w in words), err.value


@pytest.mark.parametrize("command", [
    ["sample", "missing_module", "-n", "1"],
    ["verify", "not_an_env", "/dev/null"],
    ["train", "--env", "missing_module", "--steps", "1"],
])
def test_every_command_naming_a_broken_plug_in_says_so_in_one_line(installed, command, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    if command[0] == "train":
        command = [*command, "--out", str(tmp_path / "run")]
    proc = subprocess.run([sys.executable, "-m", "assay.cli", *command], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and ("cannot be loaded" in lines[0] or "not an Environment" in lines[0]), lines
    assert "Traceback" not in proc.stderr


def test_the_listing_names_the_reason_once(installed):
    proc = subprocess.run([sys.executable, "-m", "assay.cli", "envs"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(installed)})
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("missing_module"))
    assert line.count("cannot be loaded") == 1 and "ModuleNotFoundError" in line, line
