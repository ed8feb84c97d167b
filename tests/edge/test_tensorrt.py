"""TensorRT backend: the engine-compatibility check (pure, runs everywhere), the fallback to ONNX
Runtime for a plan built elsewhere, and -- on a machine with an NVIDIA GPU and TensorRT -- a real
engine compared with ONNX Runtime (`pytest -m gpu`; skipped cleanly elsewhere)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.config import VisionConfig
from edge.manifest import VisionArtifact, add_file, load_bundle, write_manifest
from edge.vision.base import VisionBackendError, random_input
from edge.vision.onnxruntime import OnnxRuntimeBackend, available_providers
from edge.vision.select import select_backend
from edge.vision.tensorrt import TensorRTBackend, check_engine_compat, current_gpu, tensorrt_version

H200 = {"gpu_name": "NVIDIA H200", "compute_capability": "9.0", "tensorrt_version": "10.8.0.43"}
A10G = {"gpu_name": "NVIDIA A10G", "compute_capability": "8.6", "tensorrt_version": "10.8.0.43"}


def _here(built_for: dict) -> tuple[str, str, str]:
    return built_for["gpu_name"], built_for["compute_capability"], built_for["tensorrt_version"]


def test_compatible_plan_has_no_reason():
    assert check_engine_compat(H200, *_here(H200)) is None
    # Driver spellings differ in case, spacing and the vendor prefix; the model is the same.
    assert check_engine_compat(H200, "nvidia  h200", "9.0", "10.8.0.43") is None
    assert check_engine_compat(H200, "H200", "9.0", "10.8.0.43") is None


def test_plan_for_another_gpu_is_refused_with_both_sides_named():
    reason = check_engine_compat(A10G, *_here(H200))
    assert reason is not None
    assert "NVIDIA A10G" in reason and "NVIDIA H200" in reason
    assert "compute capability 9.0 != 8.6" in reason
    assert "edge export trt" in reason  # says what to do


def test_same_compute_capability_other_gpu_model_is_refused():
    # A10G and RTX A6000 are both sm_86, but a plan's kernels are chosen for one GPU model.
    reason = check_engine_compat(A10G, "NVIDIA RTX A6000", "8.6", "10.8.0.43")
    assert reason and "GPU 'NVIDIA RTX A6000' != 'NVIDIA A10G'" in reason
    assert "compute capability" not in reason


def test_other_tensorrt_version_is_refused():
    reason = check_engine_compat(H200, "NVIDIA H200", "9.0", "10.9.0.34")
    assert reason and "TensorRT 10.9.0.34 != 10.8.0.43" in reason


def test_machine_without_gpu_or_tensorrt_is_refused():
    reason = check_engine_compat(H200, None, None, None)
    assert "no NVIDIA GPU" in reason and "TensorRT is not installed" in reason


@pytest.mark.parametrize("built_for", [None, {}, {"gpu_name": "NVIDIA H200", "compute_capability": "9.0"}])
def test_plan_without_build_record_is_refused(built_for):
    reason = check_engine_compat(built_for, *_here(H200))
    assert reason and "does not record" in reason


def _add_foreign_plan(bundle: Path, built_for: dict) -> VisionArtifact:
    """Put a 'plan' from another machine into the bundle. Its bytes are never deserialized: the
    compatibility check runs first (random bytes prove that)."""
    manifest, bundle_dir = load_bundle(bundle)
    fp32 = manifest.vision[0]
    rel = "vision/vision_fp16_a10g.plan"
    (bundle_dir / rel).write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    plan = fp32.model_copy(update={"path": rel, "format": "tensorrt", "precision": "fp16", "external_data": None,
                                   "accuracy": None, "built_for": dict(built_for)})
    manifest.vision.append(plan)
    add_file(manifest, bundle_dir, rel)
    write_manifest(bundle_dir, manifest)
    return plan


@pytest.fixture
def bundle_with_foreign_plan(tiny_vision_bundle, tmp_path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(tiny_vision_bundle, out)
    _add_foreign_plan(out, {**A10G, "tensorrt_version": "8.6.1"})
    return out


def test_select_falls_back_to_onnx_runtime_naming_the_reason(bundle_with_foreign_plan):
    manifest, bundle_dir = load_bundle(bundle_with_foreign_plan)
    choice = select_backend(bundle_dir, manifest, VisionConfig(backend="auto"))
    assert isinstance(choice.backend, OnnxRuntimeBackend)
    assert choice.backend.artifact.precision == "fp32"
    assert "TensorRT skipped" in choice.reason
    assert "vision/vision_fp16_a10g.plan" in choice.reason and "NVIDIA A10G" in choice.reason
    # The fallback encodes for real.
    pixels = np.zeros(tuple(choice.backend.artifact.input_shape), dtype=choice.backend.artifact.input_dtype)
    assert choice.backend.encode(pixels).shape == tuple(choice.backend.artifact.output_shape)


def test_tensorrt_required_but_plan_foreign_is_an_error(bundle_with_foreign_plan):
    manifest, bundle_dir = load_bundle(bundle_with_foreign_plan)
    with pytest.raises(VisionBackendError, match="vision.backend=tensorrt but it cannot run here:.*NVIDIA A10G"):
        select_backend(bundle_dir, manifest, VisionConfig(backend="tensorrt"))


def test_backend_refuses_non_plan_artifacts(tiny_vision_bundle):
    manifest, bundle_dir = load_bundle(tiny_vision_bundle)
    with pytest.raises(VisionBackendError, match="not a TensorRT plan"):
        TensorRTBackend(bundle_dir, manifest.vision[0])


# ---- on a GPU ---------------------------------------------------------------------------------------
def _has_gpu_tensorrt() -> bool:
    return tensorrt_version() is not None and current_gpu()[1] is not None


def _synthetic_video(path: Path, frames: int = 100, size=(640, 360), fps: float = 25.0) -> Path:
    """A moving-shapes drive-like video (the GPU machine has no copy of the drive videos)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    for i in range(frames):
        frame = np.roll(base, 4 * i, axis=1).copy()
        cv2.rectangle(frame, (20 + 3 * i, 100), (120 + 3 * i, 200), (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def _cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu_tensorrt(), reason="needs an NVIDIA GPU, tensorrt and cuda-python")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_real_engine_matches_onnx_runtime(tiny_vision_bundle, tmp_path, precision):
    pytest.importorskip("onnx")
    from export.trt import build_engine

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_vision_bundle, bundle)
    if precision == "int8":
        from calib.calibrate import CalibrationOptions, calibrate_bundle

        video = _synthetic_video(tmp_path / "drive.mp4")
        calibrate_bundle(bundle, [video], CalibrationOptions(clips=4, heldout=2, force=True, progress=False,
                                                           log=lambda _: None))
    plan = build_engine(bundle, precision, workspace_gb=2.0, log=lambda _: None)
    manifest, bundle_dir = load_bundle(bundle)
    assert plan.built_for["gpu_name"] == current_gpu()[0]
    assert plan.built_for["tensorrt_version"] == tensorrt_version()
    assert (bundle_dir / plan.timing_cache).is_file()

    choice = select_backend(bundle_dir, manifest, VisionConfig(backend="auto", precision=precision))
    assert isinstance(choice.backend, TensorRTBackend), choice.reason
    onnx_fp32 = OnnxRuntimeBackend(bundle_dir, manifest.vision[0], use_cuda=False)
    for seed in range(3):
        pixels = random_input(plan, np.random.default_rng(seed))
        got, want = choice.backend.encode(pixels), onnx_fp32.encode(pixels)
        assert got.shape == want.shape == tuple(plan.output_shape) and got.dtype == np.float32
        assert _cosine(got, want) > (0.999 if precision == "fp16" else 0.98)
    choice.backend.close()


@pytest.mark.gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in available_providers(), reason="needs onnxruntime-gpu and a GPU")
def test_onnx_runtime_cuda_matches_cpu(tiny_vision_bundle):
    manifest, bundle_dir = load_bundle(tiny_vision_bundle)
    cuda = OnnxRuntimeBackend(bundle_dir, manifest.vision[0], use_cuda=True)
    cpu = OnnxRuntimeBackend(bundle_dir, manifest.vision[0], use_cuda=False)
    assert cuda.provider == "CUDAExecutionProvider"
    pixels = random_input(manifest.vision[0], np.random.default_rng(0))
    assert _cosine(cuda.encode(pixels), cpu.encode(pixels)) > 0.9999

