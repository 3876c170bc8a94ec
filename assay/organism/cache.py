"""The prior cache: one Hugging Face model folder per preset and spec, built on first use.

Folders live under `$ASSAY_CACHE/organism/` (default `~/.cache/assay/organism/`), named
`<preset>-<spec hash>`. Each holds config.json, model.safetensors, the tokenizer and an
`assay.json` with what the trainer needs to know about the model: the env it was built
for, that env's options, recommended training settings, the spec and its evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from assay.hf import quiet_transformers
from assay.organism.prior import train_prior_with_bar
from assay.organism.skills import get_skill
from assay.organism.spec import FORMAT_VERSION, PriorSpec

#: What a model folder's `assay.json` without an "env" entry was built for: priors
#: written before the entry existed were all countdown.
LEGACY_ENV = "countdown"


def cache_root() -> Path:
    """The folder holding every built prior."""
    root = os.environ.get("ASSAY_CACHE") or os.path.join(Path.home(), ".cache", "assay")
    return Path(root) / "organism"


def prior_path(spec: PriorSpec, name: str = "default") -> Path:
    """Where the prior of `spec` (built under the preset name `name`) lives."""
    return cache_root() / f"{name}-{spec.key()}"


#: priors built once and shipped inside assay, `shipped/<preset>-<spec hash>/`: a first use
#: copies one into the cache in a second instead of building it (minutes on two cores),
#: and every machine then starts from the same weights (a build's last bits depend on the
#: CPU's kernels). `scripts/ship-priors.sh` rebuilds them; tests/test_shipped_priors.py
#: checks that each still matches its preset's spec and that its recipe reproduces it.
SHIPPED = Path(__file__).with_name("shipped")

#: torch threads a prior is built with: part of the recipe, since the sums inside a
#: matrix product are split by thread and float addition is not associative
BUILD_THREADS = 2


def shipped_prior(spec: PriorSpec, name: str) -> Path | None:
    """The shipped folder of `spec` under preset `name`, or None."""
    folder = SHIPPED / f"{name}-{spec.key()}"
    return folder if (folder / "assay.json").is_file() else None


def ensure_prior(
    spec: PriorSpec, name: str = "default", *, quiet: bool = False, rebuild: bool = False
) -> Path:
    """The directory of a built prior: cached, else copied from the shipped priors, else
    built (`rebuild` always builds).

    Parallel callers (pytest-xdist workers) wait on a file lock; the build happens in a
    temporary folder renamed into place, so no one ever loads a half-written prior.
    """
    from filelock import FileLock

    quiet_transformers()
    path = prior_path(spec, name)
    if (path / "assay.json").exists() and not rebuild:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / "assay.json").exists() and not rebuild:
            return path
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        shipped = None if rebuild else shipped_prior(spec, name)
        if shipped is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(shipped, tmp)
            if path.exists():  # a half-written folder of an older build
                shutil.rmtree(path)
            os.replace(tmp, path)
            return path
        skill = get_skill(spec.skill)
        start = time.perf_counter()
        model, tokenizer, scores = build_with_threads(spec, name, quiet)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {
            "organism": name,
            "spec": dataclasses.asdict(spec),
            "format_version": FORMAT_VERSION,
            "evaluation": scores,
            "build_seconds": round(time.perf_counter() - start, 1),
            "build_threads": BUILD_THREADS,
            "build_cpu": cpu_kernels(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "env": skill.env_name,
            "env_options": skill.env_options,
            "train_defaults": skill.train_defaults,
        }
        (tmp / "assay.json").write_text(json.dumps(meta, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    return path


def cpu_kernels() -> str:
    """The CPU a build ran on, as far as its float sums depend on it: the machine, the
    vector instructions torch chose (e.g. AVX512) and the processor's name. Two builds
    with the same threads and the same `cpu_kernels()` give the same bits."""
    import platform

    import torch

    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            name = next((line.split(":", 1)[1].strip() for line in info
                         if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()} {name}".strip()


def build_with_threads(spec: PriorSpec, name: str, quiet: bool) -> tuple[Any, Any, dict]:
    """`train_prior_with_bar` on `BUILD_THREADS` torch threads (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        return train_prior_with_bar(spec, name, quiet)
    finally:
        torch.set_num_threads(before)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `assay.json` next to a model (env, env options, training defaults), or {}.

    A file with env options but no "env" entry predates it: its env is `LEGACY_ENV`.
    """
    file = Path(path) / "assay.json"
    if not file.is_file():
        return {}
    meta = json.loads(file.read_text(encoding="utf-8"))
    if isinstance(meta, dict) and "env_options" in meta:
        meta.setdefault("env", LEGACY_ENV)
    return meta
