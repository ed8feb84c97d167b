#!/usr/bin/env bash
# One-shot set-up for a fresh machine: creates .venv at the repo root and installs the project
# with the extras a CPU box needs. Idempotent: a second run only checks.
#
# Why the special steps:
# - torch is pinned to the CPU build (2.13.0). An unpinned torch pulls a multi-GB CUDA build.
# - llama-cpp-python compiles llama.cpp from source (~6 min on 2 cores). The built wheel is
#   cached under $EDGE_WHEEL_CACHE, keyed by version and the CPU's SIMD flags, so later runs
#   (CI included) install it in seconds.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
TORCH_VERSION="2.13.0"
# The llama-cpp-python pin lives in pyproject.toml; the build script is the one reader of it.
LLAMA_VERSION="$(bash scripts/build_llama_wheel.sh --print-version)"
cache="${EDGE_WHEEL_CACHE:-$HOME/.cache/edge-runtime/wheels}"

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
py=.venv/bin/python
# This machine's pip config names local index folders that do not exist for every package; pip
# warns about each one. Those lines are noise; everything else pip says is kept.
pip() { "$py" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

# The llama-cpp-python wheel: build once, keep it. The key includes the SIMD flags because
# llama.cpp is compiled for the host CPU.
simd_key="$(grep -m1 -o -w -E 'avx512f|avx2|avx|neon|asimd' /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' '-' || true)"
wheel_dir="$cache/llama-cpp-python-$LLAMA_VERSION-${simd_key:-generic}"
if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  log "building llama-cpp-python $LLAMA_VERSION (one time, several minutes) into $wheel_dir"
  # Same script (other --target) as docker/Dockerfile.*: one source of truth for the cmake flags.
  PYTHON="$py" bash scripts/build_llama_wheel.sh --target native "$wheel_dir"
fi

log "installing torch $TORCH_VERSION (CPU build) and the project"
pip install "torch==$TORCH_VERSION"
pip install --find-links "$wheel_dir" "llama-cpp-python==$LLAMA_VERSION"
pip install -e ".[export,dev]"
log "ready: $("$py" -c 'import sys; print(sys.version.split()[0])') in $repo/.venv"
