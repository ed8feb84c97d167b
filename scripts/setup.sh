#!/usr/bin/env bash
# One-shot set-up for a fresh machine: creates .venv at the repo root and installs the project
# with the extras a CPU box needs. Idempotent: a second run only checks.
#
# Why the special steps:
# - torch is pinned to the CPU build (2.13.0). An unpinned torch pulls a multi-GB CUDA build.
# - llama-cpp-python compiles llama.cpp from source (~6 min on 2 cores) for this CPU's SIMD
#   extensions, AMX never (scripts/build_llama_wheel.sh says why). The built wheel is cached under
#   $EDGE_WHEEL_CACHE, keyed by version and the exact cmake flags, so later runs (CI included)
#   install it in seconds.
# - The set-up ends with llama.cpp's self-test (python -m edge.llm.selftest). If the native build
#   fails it, the set-up says so, rebuilds once with the safe flag set and tests again.
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

# The llama-cpp-python wheel: built once per set of cmake flags and kept. The cache key is the
# version plus a hash of the flags actually used (build_llama_wheel.sh --print-cache-key), so a
# wheel built with other flags is never picked up.
wheel_dir_for() { echo "$cache/llama-cpp-python-$(bash scripts/build_llama_wheel.sh --target "$1" --print-cache-key)"; }
ensure_wheel() {  # target -> folder holding the wheel
  local dir
  dir="$(wheel_dir_for "$1")"
  if ! ls "$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    log "building llama-cpp-python $LLAMA_VERSION for target '$1' (one time, several minutes) into $dir"
    # Same script (other --target) as docker/Dockerfile.*: one source of truth for the cmake flags.
    PYTHON="$py" bash scripts/build_llama_wheel.sh --target "$1" "$dir" >&2
  fi
  echo "$dir"
}
install_wheel() {  # folder -> installs its wheel into .venv unless that very build is installed
  if [ "$(cat .venv/.llama-wheel 2>/dev/null)" != "$1" ]; then
    "$py" -m pip uninstall -q -y llama-cpp-python >/dev/null 2>&1 || true
    # --no-index: the wheel comes from this folder, never from pip's cache or a registry.
    # --no-deps: its dependencies (numpy, diskcache) are not in that folder; the project install
    # below resolves them from the registry (a fresh venv has no numpy: torch does not pull it).
    pip install --no-index --no-deps --find-links "$1" "llama-cpp-python==$LLAMA_VERSION"
    echo "$1" > .venv/.llama-wheel
  fi
}
selftest() { "$py" -m edge.llm.selftest; }

# A native build that failed its self-test on this machine is marked, so later set-ups go straight
# to the safe build instead of rebuilding and failing again.
target=native
if [ -f "$(wheel_dir_for native)/SELFTEST_FAILED" ]; then
  log "the native llama.cpp build failed its self-test here before: using the safe build"
  target=safe
fi
wheel_dir="$(ensure_wheel "$target")"

log "installing torch $TORCH_VERSION (CPU build) and the project"
pip install "torch==$TORCH_VERSION"
install_wheel "$wheel_dir"
pip install -e ".[export,dev]"

# Prove the build works on this CPU before saying "ready" (edge/llm/selftest.py: a multi-threaded
# decode in a child process, checked against a single-threaded one).
if ! result="$(selftest)"; then
  if [ "$target" = safe ]; then
    log "FAILED: $result"
    log "the safe llama.cpp build does not run on this machine either; stopping"
    exit 1
  fi
  log "$result"
  log "the native llama.cpp build does not work on this CPU; rebuilding once with the safe flag set"
  log "  ($(bash scripts/build_llama_wheel.sh --target safe --print-cmake-args))"
  echo "$result" > "$wheel_dir/SELFTEST_FAILED"
  install_wheel "$(ensure_wheel safe)"
  if ! result="$(selftest)"; then
    log "FAILED: $result"
    log "the safe llama.cpp build does not run on this machine either; stopping"
    exit 1
  fi
fi
log "$result"
log "ready: $("$py" -c 'import sys; print(sys.version.split()[0])') in $repo/.venv"
