"""scripts/gpu_check.sh: its CPU dry run does every step a CPU can (bundle, calibration, encoder
benchmark) for real and lists the GPU steps it skipped; usage errors are refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils timeout")


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_cpu_dry_run_does_the_cpu_steps_and_lists_the_gpu_ones(tiny_vision_bundle, drive_videos, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "tensorrt-10.8.0-py3-none-any.whl").write_bytes(b"not installed in a dry run")
    before = (tiny_vision_bundle / "manifest.json").read_text()
    out = tmp_path / "out"
    proc = _run("--cpu-dry-run", "--bundle", str(tiny_vision_bundle), "--videos", str(drive_videos[0].parent),
                "--wheels", str(wheels), "--bench-clips", "2", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr + (out / "gpu_check.log").read_text()
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["mode"] == "cpu-dry-run" and summary["failed"] == {}
    assert summary["ok"] == ["versions", "bundle", "calibrate", "bench_encoder"]
    skipped = summary["skipped"]
    assert set(skipped) == {"gpu_probe", "install_wheels", "trt_fp16", "trt_int8", "pytest_gpu"}
    assert "would install 1 wheel(s)" in skipped["install_wheels"]
    assert "edge export trt --precision int8" in skipped["trt_int8"]
    assert "pytest -m gpu" in skipped["pytest_gpu"]
    assert summary["within_budget"] and summary["elapsed_s"] < summary["budget_s"]
    # The benchmark really ran on the freshly calibrated copy: fp32 and INT8 on the CPU.
    bench = json.loads((out / "bench_encoder.json").read_text())
    assert bench["results"]["onnx_int8_cpu"]["n"] == 2 and bench["ratios"]["fp32_over_int8_median"] > 0
    assert summary["bench_encoder"]["ratios"] == bench["ratios"]
    log = (out / "gpu_check.log").read_text()
    assert "INT8 model vision/vision_int8.onnx" in log
    # The given bundle is copied, never changed.
    assert (tiny_vision_bundle / "manifest.json").read_text() == before


def test_usage_errors_are_refused(tmp_path):
    proc = _run("--cpu-dry-run")
    assert proc.returncode == 2 and "OUT_DIR is required" in proc.stderr
    proc = _run("--bundle", str(tmp_path), str(tmp_path / "out"))
    assert proc.returncode == 2 and "is not a bundle" in proc.stderr
    proc = _run("--frobnicate", str(tmp_path / "out"))
    assert proc.returncode == 2 and "unknown option --frobnicate" in proc.stderr
