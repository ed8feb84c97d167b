#!/usr/bin/env bash
# Builds the llama-cpp-python wheel. The ONE place that knows how: which version (read from the
# pin in pyproject.toml) and which cmake flags per target. scripts/setup.sh (this machine's CPU)
# and docker/Dockerfile.* (CUDA images) both call it, so the images run the same steps the
# project's own set-up runs every day and cannot rot unseen.
#
# usage: build_llama_wheel.sh [--target T] OUT_DIR     build the wheel into OUT_DIR
#        build_llama_wheel.sh --print-version           the pinned llama-cpp-python version
#        build_llama_wheel.sh [--target T] --print-cmake-args
# targets:
#   native  this machine's CPU (GGML_NATIVE): the set-up's default, never for images
#   a10g    x86-64 + NVIDIA A10G (Ampere, sm_86); CPU part kept to AVX2 because the image is
#           built on one host and runs on another (AWS g5 hosts have no AVX-512)
#   orin    aarch64 Jetson Orin (sm_87, JetPack 6); CPU part for the Orin's Cortex-A78AE
# env: PYTHON      python whose pip builds the wheel (default: python3)
#      CMAKE_ARGS  replaces the target's flags entirely (an escape hatch, as pip itself honours)
#      CMAKE_BUILD_PARALLEL_LEVEL  compile jobs (default: nproc; lower it on an 8 GB Orin)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target=native
action=build
out_dir=""

while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="${2:?--target needs a value}"; shift 2 ;;
    --print-version) action=version; shift ;;
    --print-cmake-args) action=cmake-args; shift ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "build_llama_wheel.sh: unknown option $1" >&2; exit 2 ;;
    *) out_dir="$1"; shift ;;
  esac
done

version="$(sed -n 's/^[[:space:]]*"llama-cpp-python==\([0-9][0-9.]*\)".*/\1/p' "$repo/pyproject.toml" | head -n 1)"
if [ -z "$version" ]; then
  echo "build_llama_wheel.sh: no \"llama-cpp-python==X.Y.Z\" pin in $repo/pyproject.toml" >&2
  exit 1
fi

common="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
# CUDA builds run where no driver is installed (an image build): libcuda.so.1 is only present at
# run time, so undefined driver symbols are allowed at link time, as llama.cpp's own images do.
cuda_link="-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined"
case "$target" in
  native) flags="-DGGML_NATIVE=ON $common" ;;
  a10g) flags="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=86 -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON $cuda_link $common" ;;
  orin) flags="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=87 -DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16 $cuda_link $common" ;;
  *) echo "build_llama_wheel.sh: unknown target '$target' (native, a10g, orin)" >&2; exit 2 ;;
esac
cmake_args="${CMAKE_ARGS:-$flags}"

case "$action" in
  version) echo "$version"; exit 0 ;;
  cmake-args) echo "$cmake_args"; exit 0 ;;
esac

if [ -z "$out_dir" ]; then
  echo "build_llama_wheel.sh: OUT_DIR missing (see --help)" >&2
  exit 2
fi
mkdir -p "$out_dir"
python="${PYTHON:-python3}"
echo "[build_llama_wheel] llama-cpp-python $version, target $target: $cmake_args" >&2
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" CMAKE_ARGS="$cmake_args" \
  "$python" -m pip --disable-pip-version-check -q wheel --no-deps -w "$out_dir" "llama-cpp-python==$version"
ls "$out_dir"/llama_cpp_python-"$version"-*.whl >/dev/null
