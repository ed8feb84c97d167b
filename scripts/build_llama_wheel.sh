#!/usr/bin/env bash
# Builds the llama-cpp-python wheel. The ONE place that knows how: which version (read from the
# pin in pyproject.toml) and which cmake flags per target. scripts/setup.sh (this machine's CPU)
# and docker/Dockerfile.* (CUDA images) both call it, so the images run the same steps the
# project's own set-up runs every day and cannot rot unseen.
#
# usage: build_llama_wheel.sh [--target T] OUT_DIR     build the wheel into OUT_DIR
#        build_llama_wheel.sh --print-version           the pinned llama-cpp-python version
#        build_llama_wheel.sh [--target T] --print-cmake-args
#        build_llama_wheel.sh [--target T] --print-cache-key   version + hash of the cmake flags
# targets:
#   native  this machine's CPU: every SIMD extension /proc/cpuinfo lists that ggml uses (AVX2,
#           AVX-512, VNNI, BF16, ...) named one by one, AMX never. GGML_NATIVE=ON would also
#           compile the AMX kernels where the CPU advertises them, and those fault (ldtilecfg)
#           on VMs that do not grant worker threads the tile state. aarch64 keeps GGML_NATIVE.
#   safe    the fallback when a native build fails its smoke test: x86-64 AVX2+FMA+F16C+BMI2
#           where present (else SSE4.2), aarch64 generic armv8-a
#   a10g    x86-64 + NVIDIA A10G (Ampere, sm_86); CPU part kept to AVX2 because the image is
#           built on one host and runs on another (AWS g5 hosts have no AVX-512)
#   orin    aarch64 Jetson Orin (sm_87, JetPack 6); CPU part for the Orin's Cortex-A78AE
# env: PYTHON      python whose pip builds the wheel (default: python3)
#      CMAKE_ARGS  replaces the target's flags entirely (an escape hatch, as pip itself honours)
#      CMAKE_BUILD_PARALLEL_LEVEL  compile jobs (default: nproc; lower it on an 8 GB Orin)
#      EDGE_CPUINFO  file read instead of /proc/cpuinfo (tests)
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
    --print-cache-key) action=cache-key; shift ;;
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}"; exit 0 ;;
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
cpuinfo="${EDGE_CPUINFO:-/proc/cpuinfo}"
cpu_flags="$(grep -m1 -E '^(flags|Features)[[:space:]]*:' "$cpuinfo" 2>/dev/null | cut -d: -f2 || true)"
has_flag() { case " $cpu_flags " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
arch="${EDGE_ARCH:-$(uname -m)}"

# x86-64: the extensions ggml has a switch for, each on only where the CPU lists it.
x86_host_flags() {
  local out="-DGGML_NATIVE=OFF" pair
  for pair in sse4_2:SSE42 avx:AVX avx2:AVX2 bmi2:BMI2 fma:FMA f16c:F16C avx_vnni:AVX_VNNI \
              avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
    if has_flag "${pair%%:*}"; then out="$out -DGGML_${pair#*:}=ON"; else out="$out -DGGML_${pair#*:}=OFF"; fi
  done
  echo "$out -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
}
x86_safe_flags() {
  local base="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  if has_flag avx2 && has_flag fma && has_flag f16c; then
    echo "$base -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  else
    echo "$base -DGGML_SSE42=ON -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_BMI2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF"
  fi
}

case "$target:$arch" in
  native:x86_64|native:amd64) flags="$(x86_host_flags) $common" ;;
  native:*) flags="-DGGML_NATIVE=ON $common" ;;
  safe:x86_64|safe:amd64) flags="$(x86_safe_flags) $common" ;;
  safe:*) flags="-DGGML_NATIVE=OFF $common" ;;
  a10g:*) flags="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=86 -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON $cuda_link $common" ;;
  orin:*) flags="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=87 -DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16 $cuda_link $common" ;;
  *) echo "build_llama_wheel.sh: unknown target '$target' (native, safe, a10g, orin)" >&2; exit 2 ;;
esac
cmake_args="${CMAKE_ARGS:-$flags}"

# The cache key names exactly what went into the build: a wheel built with other flags never
# matches, whatever the target is called.
cache_key="$version-$(printf '%s' "$cmake_args" | sha256sum | cut -c1-12)"

case "$action" in
  version) echo "$version"; exit 0 ;;
  cmake-args) echo "$cmake_args"; exit 0 ;;
  cache-key) echo "$cache_key"; exit 0 ;;
esac

if [ -z "$out_dir" ]; then
  echo "build_llama_wheel.sh: OUT_DIR missing (see --help)" >&2
  exit 2
fi
mkdir -p "$out_dir"
python="${PYTHON:-python3}"
echo "[build_llama_wheel] llama-cpp-python $version, target $target: $cmake_args" >&2
# --no-cache-dir: pip's own wheel cache would hand back a wheel built earlier with other
# CMAKE_ARGS (it keys on the sdist, not on the environment).
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" CMAKE_ARGS="$cmake_args" \
  "$python" -m pip --disable-pip-version-check -q wheel --no-cache-dir --no-deps -w "$out_dir" \
  "llama-cpp-python==$version"
ls "$out_dir"/llama_cpp_python-"$version"-*.whl >/dev/null
