"""The built-in default bundle: built once from the shipped checkpoint (models/default/) and cached.

    from train.default import ensure_default_bundle
    bundle = ensure_default_bundle()   # ~/.cache/edge-runtime/default-bundle-<sha>/ (or $EDGE_CACHE_DIR)

Contents: the fp32 vision ONNX, decoders f16 (reference) and q4_k_m (what ships), and an INT8 vision
model calibrated (`calib.calibrate_bundle`) on a few rendered training scenes. The cache folder is
named after the checkpoint's weights hash and BUNDLE_FORMAT, so new weights (or a new export format)
never reuse an old bundle; it is built beside its final place and renamed into it only when
complete. While building, everything that would go to standard output goes to standard error
instead: callers (scripts/demo.sh) read the folder's path from standard output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from edge.manifest import BundleError, load_bundle
from train.advice_stats import ADVICE_STATS_NAME

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO_ROOT / "models" / "default"
PROFILE = {"width": 448, "height": 256, "frames": 4}
QUANTS = ("f16", "q4_k_m")
# Part of the cache key: bump it when `edge export bundle` changes what it writes for the same weights.
# 2: the vision graph takes uint8 levels and normalises them itself.
# 3: the vision graph takes whole frames and cuts the patches itself (manifest schema 2).
# 4: the manifest records the driving agreement of int8+q4_k_m on train.gate.GATE_SCENES.
# 5: the bundle carries the checkpoint's advice_stats.json (out-of-domain statistics, confidence calibration).
BUNDLE_FORMAT = 5
CACHE_ENV = "EDGE_CACHE_DIR"


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edge-runtime"


def checkpoint_digest(checkpoint: Path) -> str:
    """sha256 over the bundle format, the checkpoint's config, weights and training record (what
    decides the bundle: the manifest carries training.json as its provenance, so the same weights
    recorded with another command make another bundle)."""
    digest = hashlib.sha256(f"bundle format {BUNDLE_FORMAT}\n".encode())
    files = [checkpoint / "config.json", *sorted(checkpoint.glob("*.safetensors"))]
    if (checkpoint / "training.json").is_file():  # export.bundle copies it into the manifest
        files.append(checkpoint / "training.json")
    if (checkpoint / ADVICE_STATS_NAME).is_file():  # written into the bundle (train.advice_stats)
        files.append(checkpoint / ADVICE_STATS_NAME)
    for path in files:
        if not path.is_file():
            raise BundleError(f"default checkpoint is incomplete: {path} is missing")
        digest.update(path.name.encode())
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _usable(bundle: Path) -> bool:
    """A complete bundle whose files match their manifest hashes (it is small: ~30 MB, ~0.1 s)."""
    try:
        manifest, _ = load_bundle(bundle, verify_hashes=True)
    except BundleError:
        return False
    return bool(manifest.decoder) and bool(manifest.vision)


def build_default_bundle(out: Path, checkpoint: Path = DEFAULT_CHECKPOINT, *, calibrate: bool = True,
                         record_agreement: bool = True, progress: bool = True) -> Path:
    """Export + INT8 calibration + driving agreement into `out` (which must not exist or be a previous bundle)."""
    from export.bundle import build_bundle
    from train.recipe import CALIBRATION, render_recipe

    log = (lambda line: print(line, file=sys.stderr)) if progress else (lambda line: None)
    log(f"building the default bundle from {checkpoint} into {out}")
    build_bundle(checkpoint, out, PROFILE["width"], PROFILE["height"], PROFILE["frames"], quants=QUANTS,
                 progress=progress, overwrite=True)
    if calibrate:
        from calib.calibrate import CalibrationOptions, calibrate_bundle

        with tempfile.TemporaryDirectory(prefix="edge-calib-scenes-") as tmp:
            render_recipe(CALIBRATION, tmp, progress=log)
            videos = sorted(str(p) for p in Path(tmp).rglob("video.mp4"))
            result = calibrate_bundle(out, videos, CalibrationOptions(progress=progress, log=log))
        log(f"INT8 vision: worst held-out cosine {result.accuracy.worst_cosine:.5f} "
            f"({'adopted' if result.adopted else 'not adopted'})")
    stats = checkpoint / ADVICE_STATS_NAME
    if stats.is_file():
        from train.advice_stats import apply_to_bundle

        apply_to_bundle(out, json.loads(stats.read_text()))
        log(f"out-of-domain statistics and confidence calibration from {stats}")
    if record_agreement:
        _record_driving_agreement(out, log)
    return out


def _record_driving_agreement(bundle: Path, log) -> None:
    """The checkpoint was trained on the built-in scenarios: measure how often the shipped precisions
    decide as the reference does on a few labelled scenes, and record it in the manifest."""
    from train.gate import GATE_SCENES, record_agreement
    from train.recipe import render_recipe

    with tempfile.TemporaryDirectory(prefix="edge-gate-scenes-") as tmp:
        render_recipe(GATE_SCENES, tmp, progress=log)
        record = record_agreement(bundle, tmp, progress=log)
    for combo, value in record["agreement"].items():
        log(f"driving agreement {combo} vs {record['reference']}: {value:.1%} over {record['cycles']} cycles")


def ensure_default_bundle(out_dir: Path | None = None, *, checkpoint: Path = DEFAULT_CHECKPOINT,
                          calibrate: bool = True, progress: bool = True) -> Path:
    """The default bundle's folder, building it when missing (about a minute on 2 cores)."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise BundleError(f"the default checkpoint {checkpoint} is missing (train it with `edge train`)")
    if out_dir is None:
        out_dir = cache_root() / f"default-bundle-{checkpoint_digest(checkpoint)[:16]}"
    out_dir = Path(out_dir)
    if _usable(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with _stdout_to_stderr():
            build_default_bundle(staging / "bundle", checkpoint, calibrate=calibrate, progress=progress)
        if out_dir.exists() and not _usable(out_dir):  # an unusable leftover (e.g. a copy cut short)
            shutil.rmtree(out_dir)
        try:
            (staging / "bundle").rename(out_dir)
        except OSError:
            if not _usable(out_dir):  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


@contextlib.contextmanager
def _stdout_to_stderr():
    """Route Python's and native code's (llama.cpp, ONNX) standard output to standard error."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
