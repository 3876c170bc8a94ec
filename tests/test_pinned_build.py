"""A prior is built in a process of its own on pinned kernels: the same bits whatever
vector instructions the calling process's torch and MKL would have chosen."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest

from assay.organism import cache, pinned
from assay.organism.spec import PRESETS


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return " avx2" in info.read()
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_avx2(), reason="the kernels are pinned to AVX2; this CPU has no AVX2")

#: a short build: the kernels' order of summation shows in the first steps' bits
SHORT = dataclasses.replace(PRESETS["tiny"], sft_steps=20)


def _build(tmp_path, monkeypatch, name: str, **env: str):
    from safetensors.torch import load_file

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ASSAY_CACHE", str(tmp_path / name))
    path = cache.ensure_prior(SHORT, "tiny", quiet=True, rebuild=True)
    return load_file(path / "model.safetensors"), json.loads((path / "assay.json").read_text())


@pytest.mark.slow
def test_the_build_gives_the_same_bits_whatever_kernels_its_caller_would_use(tmp_path, monkeypatch):
    wide, meta = _build(tmp_path, monkeypatch, "wide")
    # what a narrower CPU would choose: ATen's plain kernels and MKL's AVX2 path
    narrow, _ = _build(tmp_path, monkeypatch, "narrow", ATEN_CPU_CAPABILITY="default",
                       MKL_ENABLE_INSTRUCTIONS="AVX2")
    differ = [k for k in wide if not bool((wide[k] == narrow[k]).all())]
    assert not differ, f"{len(differ)} of {len(wide)} tensors differ"
    assert meta["build_kernels"] == "ATen AVX2, MKL_CBWR=AVX2"
    assert not list((tmp_path / "wide" / "organism").glob(f"*/{pinned.REPORT}")), "the build report was left"
    assert meta["build_cpu"] == pinned.cpu_name() and meta["build_threads"] == pinned.BUILD_THREADS


def test_a_failed_build_names_the_prior_and_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_CACHE", str(tmp_path))
    # a build process that dies half-way: its folder begun, no report
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nmkdir -p "$5" && echo half > "$5/model.safetensors"\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    with pytest.raises(pinned.PriorBuildError, match=r"building organism prior 'tiny' failed .*exit 1"):
        cache.ensure_prior(SHORT, "tiny", quiet=True)
    assert not list((tmp_path / "organism").glob("tiny-*/")), "a half-written prior was left"


def test_a_skill_registered_at_run_time_is_built_here_and_says_so(tmp_path, monkeypatch, echo_skill):
    # a new process cannot find a skill that exists only in this one
    monkeypatch.setenv("ASSAY_CACHE", str(tmp_path))
    path = cache.ensure_prior(dataclasses.replace(SHORT, skill="echo"), "tiny", quiet=True)
    meta = json.loads((path / "assay.json").read_text())
    assert meta["evaluation"] == {"echoed": 1.0} and meta["env"] == "echo-env"
    assert meta["build_kernels"].endswith("(unpinned: built in the calling process)"), meta["build_kernels"]


def test_ctrl_c_during_a_build_is_one_line_and_leaves_no_folder(tmp_path):
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    from conftest import sigint_as_at_a_terminal

    assay = str(Path(sys.executable).parent / "assay")
    proc = subprocess.Popen(
        [assay, "prior", "--preset", "tiny", "--set", "sft_steps=100000", "--rebuild", "--quiet"],
        env={**os.environ, "ASSAY_CACHE": str(tmp_path)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=sigint_as_at_a_terminal,
    )
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 60
    while not children.read_text().strip():  # until the build process has started
        assert proc.poll() is None and time.monotonic() < deadline, "no build process started"
        time.sleep(0.2)
    time.sleep(3)  # into its training
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "assay: interrupted", err
    assert not [p for p in (tmp_path / "organism").iterdir() if p.is_dir()], "a half-written prior was left"
