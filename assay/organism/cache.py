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

from assay.organism.pinned import BUILD_THREADS, build_pinned
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
#: and every machine then starts from the same weights. `scripts/ship-priors.sh` rebuilds
#: them; tests/test_shipped_priors.py checks that each still matches its preset's spec and
#: that its recipe reproduces it (builds run on pinned kernels: `pinned.py`).
SHIPPED = Path(__file__).with_name("shipped")


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
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            built = build_pinned(spec, name, tmp, quiet=quiet)
        except BaseException:  # a failed or interrupted build leaves no half-written folder
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        meta = {
            "organism": name,
            "spec": dataclasses.asdict(spec),
            "format_version": FORMAT_VERSION,
            "evaluation": built["evaluation"],
            "build_seconds": round(time.perf_counter() - start, 1),
            "build_threads": BUILD_THREADS,
            "build_cpu": built["build_cpu"],
            "build_kernels": built["build_kernels"],
            "parameters": built["parameters"],
            "env": skill.env_name,
            "env_options": skill.env_options,
            "train_defaults": skill.train_defaults,
        }
        (tmp / "assay.json").write_text(json.dumps(meta, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    return path


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
