"""Calibration fixtures: the tiny vision bundle calibrated once per session on the drive videos."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def calibrated(tiny_vision_bundle, drive_videos, tmp_path_factory):
    """(bundle folder, CalibrationResult, log lines): 4 calibration + 2 held-out drive clips,
    threshold 0.99. Read-only by convention: copy before changing it."""
    pytest.importorskip("onnx")
    from calib.calibrate import calibrate_bundle

    out = tmp_path_factory.mktemp("calibrated") / "bundle"
    shutil.copytree(tiny_vision_bundle, out)
    lines: list[str] = []
    result = calibrate_bundle(out, drive_videos, clips=4, heldout=2, threshold=0.99, progress=False, log=lines.append)
    return out, result, lines
