"""Building a prior on pinned CPU kernels, in a process of its own.

A build's last bits depend on the order of its float sums, and on x86 that order is
chosen when torch loads, from the CPU's vector instructions: ATen's own kernels (softmax,
norms, the optimizer's updates) by their widest instruction set, the matrix products by
MKL's code path. A build that is to give the same bits on any Intel CPU with AVX2
therefore runs in a fresh interpreter started with both pinned to AVX2 (`PINNED_ENV`), on
a fixed number of threads (the sums inside a matrix product are split by thread). On an
AMD CPU, MKL's AVX2 branch still sums otherwise: measured 2026-12-07 on an AMD EPYC, its
pinned builds repeat bit for bit but differ from the Intel-built ones (docs/development.md).

Measured on an AVX512 Xeon (2026-12-06): a pinned build of the `tiny` prior equals, bit
for bit, one made with MKL limited to AVX2 and ATen to AVX2, as an AVX2-only Intel CPU
would run it; unpinned, the two differ by up to 5e-5. A CPU without AVX2 falls back to
narrower kernels and builds other bits; the build records what it ran on (`build_cpu`,
`build_kernels` in assay.json).

Skills registered at run time (not importable by name in a new process) are built in
the calling process instead, unpinned, and their `build_kernels` says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from assay.errors import AssayError
from assay.organism.skills import importable
from assay.organism.spec import PriorSpec

#: set before torch loads: ATen's dispatch width, and MKL's conditional numerical
#: reproducibility branch (the same code path, and so the same sums, on every CPU with AVX2)
PINNED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}

#: torch threads a prior is built with: part of the recipe, since the sums inside a
#: matrix product are split by thread and float addition is not associative
BUILD_THREADS = 2

#: what the build process leaves beside the model for its parent: evaluation and machine
REPORT = "build-report.json"


class PriorBuildError(AssayError, RuntimeError):
    """The build process of a prior failed; its own error was printed above."""


def cpu_name() -> str:
    """The processor's name and machine, e.g. 'x86_64 Intel(R) Xeon(R) Processor'."""
    import platform

    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            name = next((line.split(":", 1)[1].strip() for line in info
                         if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{platform.machine()} {name}".strip()


def kernels() -> str:
    """The kernels this process's torch chose, and MKL's pinned branch if any."""
    import torch

    return f"ATen {torch.backends.cpu.get_cpu_capability()}, MKL_CBWR={os.environ.get('MKL_CBWR', 'unset')}"


def build_pinned(spec: PriorSpec, name: str, folder: Path, *, quiet: bool) -> dict[str, Any]:
    """Train the prior `spec` (preset `name`) and save it, with its tokenizer, in `folder`;
    returns {"evaluation", "parameters", "build_cpu", "build_kernels"}."""
    if not importable(spec.skill):  # an unknown skill too: an OptionError here, not in a child
        return _build_here(spec, name, folder, quiet=quiet)
    env = {**os.environ, **PINNED_ENV,
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    # -c, not -m: the package imports this module before `-m` would run it as __main__
    command = [sys.executable, "-c", "import sys; from assay.organism.pinned import main; main(sys.argv[1:])",
               json.dumps(dataclasses.asdict(spec)), name, str(folder)] + (["--quiet"] if quiet else [])
    done = subprocess.run(command, env=env, check=False)
    report = folder / REPORT
    if done.returncode != 0 or not report.is_file():
        raise PriorBuildError(
            f"building organism prior '{name}' failed in its build process (exit "
            f"{done.returncode}); its error is printed above"
        )
    result = json.loads(report.read_text(encoding="utf-8"))
    report.unlink()
    return result


def _build_here(spec: PriorSpec, name: str, folder: Path, *, quiet: bool) -> dict[str, Any]:
    import torch

    from assay.organism.prior import train_prior_with_bar

    before = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        model, tokenizer, scores = train_prior_with_bar(spec, name, quiet)
    finally:
        torch.set_num_threads(before)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    pinned = all(os.environ.get(k, "").lower() == v.lower() for k, v in PINNED_ENV.items())
    return {"evaluation": scores, "parameters": sum(p.numel() for p in model.parameters()),
            "build_cpu": cpu_name(),
            "build_kernels": kernels() + ("" if pinned else " (unpinned: built in the calling process)")}


def main(argv: list[str]) -> None:
    """The build process: `SPEC_JSON NAME FOLDER [--quiet]`; leaves `REPORT` in FOLDER."""
    spec_json, name, folder = argv[:3]
    quiet = "--quiet" in argv[3:]
    try:
        result = _build_here(PriorSpec(**json.loads(spec_json)), name, Path(folder), quiet=quiet)
    except KeyboardInterrupt:  # Ctrl-C reaches both processes: the parent says it, once
        sys.exit(130)
    (Path(folder) / REPORT).write_text(json.dumps(result) + "\n", encoding="utf-8")

