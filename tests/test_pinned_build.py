"""A prior is built in a process of its own on pinned kernels: the same bits whatever
vector instructions the calling process's torch and MKL would have chosen."""

from __future__ import annotations

import dataclasses
import json
import shutil
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


def test_the_build_gives_the_same_bits_whatever_kernels_its_caller_would_use(tmp_path, monkeypatch):
    wide, meta = _build(tmp_path, monkeypatch, "wide")
    # what a narrower CPU would choose: ATen's plain kernels and MKL's AVX2 path
    narrow, _ = _build(tmp_path, monkeypatch, "narrow", ATEN_CPU_CAPABILITY="default",
                       MKL_ENABLE_INSTRUCTIONS="AVX2")
    differ = [k for k in wide if not bool((wide[k] == narrow[k]).all())]
    assert not differ, f"{len(differ)} of {len(wide)} tensors differ"
    assert meta["build_kernels"] == "ATen AVX2, MKL_CBWR=AVX2"
    assert meta["build_cpu"] == pinned.cpu_name() and meta["build_threads"] == pinned.BUILD_THREADS


def test_a_failed_build_names_the_prior_and_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_CACHE", str(tmp_path))
    monkeypatch.setattr(sys, "executable", shutil.which("false"))  # a build process that fails
    with pytest.raises(pinned.PriorBuildError, match=r"building organism prior 'tiny' failed .*exit 1"):
        cache.ensure_prior(SHORT, "tiny", quiet=True)
    assert not list((tmp_path / "organism").glob("tiny-*/")), "a half-written prior was left"


def test_a_skill_registered_at_run_time_is_built_here_and_says_so(tmp_path, monkeypatch):
    # a new process cannot find a skill that exists only in this one
    from assay.organism import skills

    class Echo:
        name, env_name, alphabet, max_positions = "echo", "echo-env", "ab:", 16
        env_options = {"width": 2}
        train_defaults = {"group_size": 4}

        def examples(self, spec, n, seed):
            return [("ab:", "ab")] * n

        def evaluate(self, spec, model, tokenizer):
            return {"echoed": 1.0}

    monkeypatch.setitem(skills._SKILLS, "echo", Echo())
    monkeypatch.setenv("ASSAY_CACHE", str(tmp_path))
    path = cache.ensure_prior(dataclasses.replace(SHORT, skill="echo"), "tiny", quiet=True)
    meta = json.loads((path / "assay.json").read_text())
    assert meta["evaluation"] == {"echoed": 1.0} and meta["env"] == "echo-env"
    assert meta["build_kernels"].endswith("(unpinned: built in the calling process)"), meta["build_kernels"]
