"""Fixtures shared by every test package: the tiny checkpoint (built once per session) and the drive videos."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
# Real recorded drives shipped with the repository (sources and licences: data/drive/SOURCES.md).
DRIVE_DIR = REPO_ROOT / "data" / "drive"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random Qwen3-VL-MoE checkpoint (preset "tiny", seed 0, fp32, one safetensors file).

    Session-scoped and read-only by convention: tests that need a variant (sharded, bf16, broken)
    build their own with export.tiny.make_tiny_checkpoint."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from export.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_checkpoint") / "tiny", seed=0, preset="tiny")


@pytest.fixture(scope="session")
def drive_videos() -> list[Path]:
    """The recorded Udacity drive videos (relative to the repo root), the short highway clips the
    tests use as cameras (the longer ones are there for `edge train --real` and `edge eval --real`);
    skips when none are present."""
    videos = sorted(DRIVE_DIR.glob("udacity_*.mp4"))
    if not videos:
        pytest.skip(f"no drive videos in {DRIVE_DIR}")
    return videos


@pytest.fixture(scope="session")
def tiny_vision_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    """A vision-only bundle of the tiny checkpoint (448x256, 4 frames: vision fp32 ONNX + manifest).

    Session-scoped and read-only by convention: tests that change a bundle (calibration, TensorRT
    plans) copy it first (shutil.copytree)."""
    from export.bundle import build_bundle

    out = tmp_path_factory.mktemp("tiny_vision_bundle") / "bundle"
    build_bundle(tiny_checkpoint, out, width=448, height=256, frames=4, include_decoder=False, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    """A full bundle of the tiny checkpoint (448x256, 4 frames): vision fp32 ONNX + decoder GGUFs in
    f32 (exact reference checks) and q4_k_m (what ships) + manifest.

    Session-scoped and read-only by convention: tests that change a bundle copy it first."""
    from export.bundle import build_bundle

    out = tmp_path_factory.mktemp("tiny_bundle") / "bundle"
    build_bundle(tiny_checkpoint, out, width=448, height=256, frames=4, quants=("f32", "q4_k_m"), progress=False)
    return out


@pytest.fixture(scope="session")
def calibrated(tiny_vision_bundle, drive_videos, tmp_path_factory):
    """(bundle folder, CalibrationResult, log lines): 4 calibration + 2 held-out drive clips,
    threshold 0.99. Read-only by convention: copy before changing it."""
    pytest.importorskip("onnx")
    from calib.calibrate import CalibrationOptions, calibrate_bundle

    out = tmp_path_factory.mktemp("calibrated") / "bundle"
    shutil.copytree(tiny_vision_bundle, out)
    lines: list[str] = []
    options = CalibrationOptions(clips=4, heldout=2, threshold=0.99, progress=False, log=lines.append)
    result = calibrate_bundle(out, drive_videos, options)
    return out, result, lines
