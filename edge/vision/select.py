"""Pick the vision backend for this machine and say why.

``auto`` prefers a TensorRT plan built for this very GPU and TensorRT version, then ONNX
Runtime (CUDA if present, else CPU). ``precision=auto`` takes the INT8 model when calibration
adopted one, else fp32. Every fallback is recorded as a reason that the loop publishes on
``status``, so an operator sees *why* the car is running on the slow path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.config import VisionConfig
from edge.manifest import BundleManifest, VisionArtifact
from edge.vision.base import VisionBackend, VisionBackendError


@dataclass
class BackendChoice:
    backend: VisionBackend
    reason: str


def tensorrt_plans(manifest: BundleManifest, precision: str) -> list[VisionArtifact]:
    """The adopted TensorRT plans in the order `auto` tries them: INT8 before fp16."""
    plans = manifest.adopted_vision("tensorrt")
    if precision != "auto":
        plans = [p for p in plans if p.precision == precision]
    return sorted(plans, key=lambda p: p.precision != "int8")


def onnx_precision(manifest: BundleManifest, precision: str) -> str:
    """The ONNX model a precision setting means: no fp16 ONNX (fp16 falls back as auto); auto takes
    INT8 when calibration adopted it, else fp32."""
    if precision == "fp16":
        precision = "auto"
    if precision == "auto":
        return "int8" if any(a.precision == "int8" for a in manifest.adopted_vision("onnx")) else "fp32"
    return precision


def vision_candidates(manifest: BundleManifest, backend: str = "auto", precision: str = "auto") -> list[VisionArtifact]:
    """The adopted artifacts `select_backend` would try for these settings, best first."""
    candidates = tensorrt_plans(manifest, precision) if backend in ("auto", "tensorrt") else []
    if backend in ("auto", "onnxruntime"):
        wanted = onnx_precision(manifest, precision)
        candidates += [a for a in manifest.adopted_vision("onnx") if a.precision == wanted][:1]
    return candidates


def _pick_onnx(manifest: BundleManifest, precision: str) -> tuple[VisionArtifact, str]:
    onnx = {a.precision: a for a in manifest.adopted_vision("onnx")}
    precision = onnx_precision(manifest, precision)
    if precision not in onnx:
        raise VisionBackendError(
            f"the bundle has no adopted ONNX {precision} vision model (has: {sorted(onnx) or 'none'})"
        )
    return onnx[precision], f"ONNX {precision}"


def _try_tensorrt(bundle_dir: Path, manifest: BundleManifest, config: VisionConfig) -> tuple[VisionBackend | None, str]:
    plans = tensorrt_plans(manifest, config.precision)
    if not plans:
        return None, "no TensorRT plan in the bundle"
    try:
        from edge.vision import tensorrt as trt_backend
    except ImportError as exc:
        return None, f"TensorRT backend unavailable ({exc})"
    reasons = []
    for plan in plans:
        try:
            return trt_backend.TensorRTBackend(bundle_dir, plan), f"TensorRT {plan.precision} plan matches this GPU"
        except VisionBackendError as exc:
            reasons.append(str(exc))
    return None, "; ".join(reasons)


def select_backend(bundle_dir: Path, manifest: BundleManifest, config: VisionConfig,
                   cpus: frozenset[int] = frozenset()) -> BackendChoice:
    """`cpus`: the CPUs the models may use (cpu.models); with threads=0 ONNX Runtime then gets one
    thread per CPU of that set, without it one per physical core (its own default)."""
    from edge.vision.onnxruntime import OnnxRuntimeBackend

    trt_reason = "TensorRT not requested"
    if config.backend in ("auto", "tensorrt"):
        backend, trt_reason = _try_tensorrt(bundle_dir, manifest, config)
        if backend is not None:
            return BackendChoice(backend, trt_reason)
        if config.backend == "tensorrt":
            raise VisionBackendError(f"vision.backend=tensorrt but it cannot run here: {trt_reason}")
    artifact, what = _pick_onnx(manifest, config.precision)
    threads = config.threads or len(cpus)
    backend = OnnxRuntimeBackend(bundle_dir, artifact, threads=threads, spin=config.spin)
    reason = f"{what} on {backend.provider}"
    if config.backend == "auto":
        reason += f" (TensorRT skipped: {trt_reason})"
    return BackendChoice(backend, reason)
