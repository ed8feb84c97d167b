#!/usr/bin/env bash
# The README's main job, from a fresh clone: set up, build the built-in model bundle if it is
# missing, render a synthetic drive, replay it through the runtime (advice lines print as they
# arrive) and end with the report's path.
#
#   ./scripts/demo.sh [SCENARIO] [SEED]        (default: red_light 7; `edge scene --list` lists them)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

scenario="${1:-red_light}"
seed="${2:-7}"
out="${EDGE_DEMO_OUT:-$repo/out/demo}"
edge=.venv/bin/edge

echo "[demo] model bundle (built once from models/default, then cached)" >&2
bundle="$(.venv/bin/python -c 'from train.default import ensure_default_bundle; print(ensure_default_bundle())')"

echo "[demo] rendering scenario '$scenario' (seed $seed)" >&2
"$edge" scene --scenario "$scenario" --seed "$seed" --out "$out/scene" --quiet

echo "[demo] replaying it through the runtime; one line per advice:" >&2
"$edge" sim --bundle "$bundle" --video "$out/scene/video.mp4" --out "$out/report"
