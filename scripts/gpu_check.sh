#!/usr/bin/env bash
# GPU check for a short hardware slot (about 8 minutes, no internet):
#   install the GPU wheels brought along, build the tiny bundle (or take one), calibrate it to INT8,
#   build its TensorRT engines (fp16, int8), run the TensorRT / ONNX Runtime CUDA tests (pytest -m gpu)
#   and `edge bench encoder`; everything lands as JSON in OUT_DIR.
#
# usage: scripts/gpu_check.sh [options] OUT_DIR
#   --cpu-dry-run     do every step a CPU can do, skip (and list) the GPU steps; what the tests run
#   --wheels DIR      folder of .whl files to install offline (default: .whl in the repo root)
#   --bundle DIR      use this bundle (copied, never changed) instead of building the tiny one
#   --videos DIR      calibration videos (default: data/drive, the drives shipped with the repo)
#   --budget-s N      overall time budget in seconds (default 480); steps that no longer fit are skipped
#   --bench-clips N   timed clips per encoder variant (default 10; 3 in a dry run)
# env: PYTHON (default python3)
#
# Files written to OUT_DIR: gpu_check.json (summary: GPU, versions, each step's status and time),
# gpu_check.log (all step output), bench_encoder.json, pytest_gpu.xml (GPU mode).
# Exit status: 0 when no step failed (skipped steps are not failures), 1 otherwise, 2 on bad usage.

set -u -o pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

DRY_RUN=0
WHEELS=""
GIVEN_BUNDLE=""
VIDEOS=""
BUDGET_S=480
BENCH_CLIPS=""
OUT_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY_RUN=1 ;;
    --wheels) WHEELS="${2:?--wheels needs a folder}"; shift ;;
    --bundle) GIVEN_BUNDLE="${2:?--bundle needs a folder}"; shift ;;
    --videos) VIDEOS="${2:?--videos needs a folder}"; shift ;;
    --budget-s) BUDGET_S="${2:?--budget-s needs seconds}"; shift ;;
    --bench-clips) BENCH_CLIPS="${2:?--bench-clips needs a number}"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gpu_check: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) [ -z "$OUT_DIR" ] || { echo "gpu_check: one OUT_DIR only" >&2; exit 2; }; OUT_DIR="$1" ;;
  esac
  shift
done
[ -n "$OUT_DIR" ] || { echo "gpu_check: OUT_DIR is required" >&2; usage >&2; exit 2; }
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
[ -z "$WHEELS" ] || WHEELS="$(abspath "$WHEELS")"
[ -z "$VIDEOS" ] || VIDEOS="$(abspath "$VIDEOS")"
if [ -n "$GIVEN_BUNDLE" ]; then
  GIVEN_BUNDLE="$(abspath "$GIVEN_BUNDLE")"
  [ -f "$GIVEN_BUNDLE/manifest.json" ] || { echo "gpu_check: $GIVEN_BUNDLE is not a bundle (no manifest.json)" >&2; exit 2; }
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
LOG="$OUT_DIR/gpu_check.log"
STEPS="$WORK/steps.jsonl"
: >"$LOG"
: >"$STEPS"
[ -n "$WHEELS" ] || WHEELS="$REPO/.whl"
[ -n "$BENCH_CLIPS" ] || BENCH_CLIPS=$([ "$DRY_RUN" = 1 ] && echo 3 || echo 10)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
START=$(date +%s)
BUNDLE="$WORK/bundle"
cd "$REPO" || exit 2

remaining() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

# record NAME STATUS MILLISECONDS DETAIL
record() {
  "$PY" - "$STEPS" "$1" "$2" "$3" "$4" <<'EOF'
import json, sys
path, name, status, ms, detail = sys.argv[1:]
with open(path, "a") as f:
    f.write(json.dumps({"step": name, "status": status, "seconds": round(int(ms) / 1000, 2), "detail": detail}) + "\n")
EOF
}

skip() {  # skip NAME REASON
  echo "== $1: skipped ($2)" >>"$LOG"
  record "$1" skipped 0 "$2"
}

# run NAME LIMIT_S CMD...: runs with a time limit (capped by the remaining budget), logs, records.
run() {
  local name="$1" limit="$2"; shift 2
  local left; left=$(remaining)
  if [ "$left" -lt 20 ]; then skip "$name" "time budget of ${BUDGET_S}s exhausted"; return 1; fi
  [ "$limit" -le "$left" ] || limit=$left
  echo "== $name (limit ${limit}s): $*" >>"$LOG"
  local t0 t1 status rc detail
  t0=$(date +%s%N)
  timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  t1=$(date +%s%N)
  status=failed
  detail="exit $rc"
  [ $rc -eq 0 ] && status=ok
  [ $rc -eq 124 ] && detail="timed out after ${limit}s"
  echo "== $name: $status ($detail)" >>"$LOG"
  record "$name" "$status" "$(( (t1 - t0) / 1000000 ))" "$detail"
  return $rc
}

# ---- 1. the GPU --------------------------------------------------------------------------------
if [ "$DRY_RUN" = 1 ]; then
  skip gpu_probe "--cpu-dry-run"
elif command -v nvidia-smi >/dev/null 2>&1; then
  run gpu_probe 30 nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv
else
  echo "== gpu_probe: nvidia-smi not found" >>"$LOG"
  record gpu_probe failed 0 "nvidia-smi not found: no NVIDIA driver on this machine"
fi

# ---- 2. offline wheels ---------------------------------------------------------------------------
shopt -s nullglob
wheels=("$WHEELS"/*.whl)
shopt -u nullglob
if [ "${#wheels[@]}" -eq 0 ]; then
  skip install_wheels "no wheels in $WHEELS: using the packages already installed"
elif [ "$DRY_RUN" = 1 ]; then
  skip install_wheels "--cpu-dry-run (would install ${#wheels[@]} wheel(s) from $WHEELS)"
else
  # --no-deps: the folder must hold every missing dependency; --target keeps the system site intact.
  if run install_wheels 180 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$WORK/site" "${wheels[@]}"; then
    export PYTHONPATH="$WORK/site:$PYTHONPATH"
  fi
fi

run versions 60 "$PY" - <<'EOF'
import importlib, importlib.metadata as md, json
info = {}
for dist in ("onnxruntime", "onnxruntime-gpu", "tensorrt", "cuda-python", "cuda-bindings", "onnx", "torch", "transformers"):
    try:
        info[dist] = md.version(dist)
    except md.PackageNotFoundError:
        pass
import onnxruntime
info["onnxruntime_providers"] = onnxruntime.get_available_providers()
from edge.vision.tensorrt import current_gpu, tensorrt_version
info["gpu"], info["compute_capability"] = current_gpu()
info["tensorrt_importable"] = tensorrt_version()
print(json.dumps(info))
EOF

# ---- 3. the bundle -------------------------------------------------------------------------------
if [ -n "$GIVEN_BUNDLE" ]; then
  run bundle 60 cp -r "$GIVEN_BUNDLE" "$BUNDLE"
else
  run tiny_checkpoint 120 "$PY" -m export.cli export tiny --out "$WORK/checkpoint" \
    && run bundle 180 "$PY" -m export.cli export bundle --checkpoint "$WORK/checkpoint" --out "$BUNDLE" \
         --width 448 --height 256 --frames 4 --vision-only --no-progress
fi

# ---- 4. INT8 calibration -------------------------------------------------------------------------
if [ ! -f "$BUNDLE/manifest.json" ]; then
  skip calibrate "no bundle"
elif "$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); sys.exit(0 if any(v['precision']=='int8' and v['format']=='onnx' for v in m['vision']) else 1)" "$BUNDLE/manifest.json"; then
  skip calibrate "the bundle already holds an INT8 model"
else
  if [ -z "$VIDEOS" ] && ls "$REPO/data/drive/"*.mp4 >/dev/null 2>&1; then
    VIDEOS="$REPO/data/drive"
  fi
  if [ -z "$VIDEOS" ]; then
    # No drive videos on this machine: a synthetic moving scene keeps the pipeline honest (real
    # decoding, real preprocessing); its accuracy figures are not drive figures, and the log says so.
    VIDEOS="$WORK/videos"
    mkdir -p "$VIDEOS"
    run synthetic_video 60 "$PY" - "$VIDEOS/synthetic.mp4" <<'EOF'
import sys
import cv2
import numpy as np
w, h, fps = 640, 360, 25.0
writer = cv2.VideoWriter(sys.argv[1], cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
base = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
for i in range(150):
    frame = np.roll(base, 4 * i, axis=1).copy()
    cv2.rectangle(frame, (20 + 3 * i, 120), (140 + 3 * i, 220), (0, 0, 255), -1)
    writer.write(frame)
writer.release()
print("synthetic video (no drive videos here):", sys.argv[1])
EOF
  fi
  # --force: the engines below need an INT8 model even if the tiny tower missed the threshold
  # (the report in the bundle keeps the real figures either way).
  run calibrate 150 "$PY" -m calib.cli --bundle "$BUNDLE" --video "$VIDEOS" --clips 4 --heldout 2 --force --no-progress
fi

# ---- 5. TensorRT engines -------------------------------------------------------------------------
for precision in fp16 int8; do
  if [ "$DRY_RUN" = 1 ]; then
    skip "trt_$precision" "--cpu-dry-run (would run: edge export trt --precision $precision)"
  elif [ ! -f "$BUNDLE/manifest.json" ]; then
    skip "trt_$precision" "no bundle"
  else
    run "trt_$precision" 150 "$PY" -m export.cli export trt --bundle "$BUNDLE" --precision "$precision" --workspace-gb 2
  fi
done

# ---- 6. GPU tests --------------------------------------------------------------------------------
if [ "$DRY_RUN" = 1 ]; then
  skip pytest_gpu "--cpu-dry-run (would run: pytest -m gpu tests/edge/test_tensorrt.py)"
else
  run pytest_gpu 240 "$PY" -m pytest -m gpu tests/edge/test_tensorrt.py -q -rs -p no:cacheprovider \
    --junitxml "$OUT_DIR/pytest_gpu.xml"
fi

# ---- 7. encoder benchmark (CPU variants always; CUDA / TensorRT where present) -------------------
if [ -f "$BUNDLE/manifest.json" ]; then
  run bench_encoder 120 "$PY" -m edge.bench.encoder --bundle "$BUNDLE" --out "$OUT_DIR/bench_encoder.json" \
    --clips "$BENCH_CLIPS" --warmup 1
else
  skip bench_encoder "no bundle"
fi

# ---- summary -------------------------------------------------------------------------------------
"$PY" - "$STEPS" "$OUT_DIR" "$DRY_RUN" "$BUDGET_S" "$START" <<'EOF'
import json, sys, time
from pathlib import Path
steps_path, out_dir, dry_run, budget_s, start = sys.argv[1:]
steps = [json.loads(line) for line in Path(steps_path).read_text().splitlines() if line.strip()]
bench = Path(out_dir) / "bench_encoder.json"
from edge.benchreport import machine_info
elapsed = time.time() - float(start)
summary = {
    "check": "gpu_check",
    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "mode": "cpu-dry-run" if dry_run == "1" else "gpu",
    "machine": machine_info(),
    "elapsed_s": round(elapsed, 1),
    "budget_s": int(budget_s),
    "within_budget": elapsed <= int(budget_s),
    "steps": steps,
    "ok": [s["step"] for s in steps if s["status"] == "ok"],
    "skipped": {s["step"]: s["detail"] for s in steps if s["status"] == "skipped"},
    "failed": {s["step"]: s["detail"] for s in steps if s["status"] == "failed"},
    "bench_encoder": json.loads(bench.read_text()) if bench.is_file() else None,
}
(Path(out_dir) / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"gpu_check ({summary['mode']}): {len(summary['ok'])} ok, {len(summary['skipped'])} skipped, "
      f"{len(summary['failed'])} failed in {elapsed:.0f}s -> {out_dir}/gpu_check.json")
for name, why in summary["failed"].items():
    print(f"  FAILED {name}: {why} (see gpu_check.log)")
for name, why in summary["skipped"].items():
    print(f"  skipped {name}: {why}")
sys.exit(1 if summary["failed"] else 0)
EOF
