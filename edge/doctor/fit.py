"""Can this bundle run here: a vision artifact that can execute (an ONNX model anywhere; a TensorRT
plan only on the GPU and TensorRT version it was built for), a decoder, and memory for both."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.doctor.gguf import kv_cache_bytes, read_gguf_metadata
from edge.doctor.gpus import GpuInfo
from edge.doctor.machine import MachineReport

GIB = 1 << 30
MIB = 1 << 20
# Memory the estimates add on top of the weights. llama.cpp's compute buffers grow with n_batch and
# n_ctx, ONNX Runtime and TensorRT keep activations and workspaces; these margins are deliberately
# generous because running out of memory in a car is worse than a conservative "no".
DECODER_HEADROOM_BYTES = 256 * MIB
DECODER_HEADROOM_FRACTION = 0.10
VISION_WEIGHT_FACTOR = 2.0  # ONNX Runtime / TensorRT hold weights plus optimised copies/workspaces
RUNTIME_BASE_BYTES = 512 * MIB  # Python, numpy, OpenCV, ZeroMQ, frame buffers


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class BundleReport:
    path: str
    loaded: bool
    runnable: bool
    reasons: list[str] = field(default_factory=list)  # why it cannot run here (empty when it can)
    checks: list[Check] = field(default_factory=list)
    bundle_sha256: str | None = None
    vision_choice: str | None = None  # the artifact the runtime's "auto" would pick here
    decoder_choice: str | None = None
    memory: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_mismatch(built_for: dict | None, gpu: GpuInfo | None, tensorrt_version: str | None) -> str | None:
    """Why a TensorRT plan built for ``built_for`` cannot run here, or None if it can.

    This is the runtime's own rule (``edge.vision.tensorrt.check_engine_compat``: same GPU model,
    compute capability and TensorRT version), so the doctor and the runtime never disagree."""
    try:
        from edge.vision.tensorrt import check_engine_compat
    except Exception as exc:  # a broken install is itself the reason
        return f"the runtime's TensorRT backend does not import ({type(exc).__name__}: {exc})"
    return check_engine_compat(
        built_for,
        gpu.name if gpu else None,
        gpu.compute_capability if gpu else None,
        tensorrt_version,
    )


def _artifact_bytes(bundle_dir: Path, *rel_paths: str | None) -> int:
    return sum((bundle_dir / rel).stat().st_size for rel in rel_paths if rel)


def format_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def vision_candidates(manifest: Any, backend: str = "auto", precision: str = "auto") -> list[Any]:
    """The adopted vision artifacts the runtime would try, best first: the runtime's own policy."""
    from edge.vision.select import vision_candidates as runtime_candidates

    return list(runtime_candidates(manifest, backend, precision))


def check_bundle(
    path: Path | str,
    machine: MachineReport,
    *,
    verify_hashes: bool = True,
    n_ctx: int = 4096,
    n_gpu_layers: int = 0,
    quant: str = "auto",
    vision_backend: str = "auto",
    vision_precision: str = "auto",
) -> BundleReport:
    """Decide whether the bundle at ``path`` can run on ``machine``; every "no" carries its reason.
    The keyword arguments are the runtime configuration's (decoder.*, vision.backend/precision)."""
    from edge.manifest import BundleError, load_bundle

    report = BundleReport(path=str(path), loaded=False, runnable=False)
    try:
        manifest, bundle_dir = load_bundle(path, verify_hashes=verify_hashes)
    except BundleError as exc:
        report.reasons.append(f"the bundle does not load: {exc}")
        report.checks.append(Check("load", False, str(exc)))
        return report
    report.loaded = True
    report.bundle_sha256 = manifest.bundle_sha256()
    hashes = "sha256 verified" if verify_hashes else "sha256 NOT verified"
    report.checks.append(Check("load", True, f"manifest valid, all files present, {hashes}"))

    gpu = machine.gpus[0] if machine.gpus else None

    runnable_vision = _check_vision(report, manifest, machine, gpu, vision_backend, vision_precision)
    decoder = _choose_decoder(report, manifest, machine, quant)
    if runnable_vision:
        chosen = runnable_vision[0]
        report.vision_choice = f"{chosen.format} {chosen.precision} ({chosen.path})"
    if decoder is not None:
        report.decoder_choice = f"{decoder.quant} ({decoder.path})"

    if decoder is not None and runnable_vision:
        _check_memory(report, bundle_dir, runnable_vision[0], decoder, machine, gpu, n_ctx, n_gpu_layers)

    report.runnable = not report.reasons
    return report


def _check_vision(report: BundleReport, manifest: Any, machine: MachineReport, gpu: GpuInfo | None,
                  vision_backend: str, vision_precision: str) -> list[Any]:
    """The vision artifacts that can execute here, among those the runtime's selection would try,
    in its order of preference (TensorRT first, INT8 first)."""
    runnable_vision = []
    vision_problems = []
    candidates = vision_candidates(manifest, vision_backend, vision_precision)
    for art in candidates:
        if art.format == "tensorrt":
            why = plan_mismatch(art.built_for, gpu, machine.tensorrt_version)
        elif machine.onnxruntime_error is not None:
            why = f"ONNX Runtime does not import ({machine.onnxruntime_error})"
        else:
            why = None
        name = f"vision {art.format} {art.precision} ({art.path})"
        report.checks.append(Check(name, why is None, why or "can run here"))
        if why is None:
            runnable_vision.append(art)
        else:
            vision_problems.append(
                f"TensorRT plan {art.path}: {why}" if art.format == "tensorrt" else f"{art.path}: {why}"
            )
    if not candidates:
        report.reasons.append(
            f"the bundle has no adopted vision artifact for vision.backend={vision_backend}, "
            f"vision.precision={vision_precision}"
        )
    elif not runnable_vision:
        report.reasons.append("no vision artifact can run here: " + "; ".join(vision_problems))
    return runnable_vision


def _choose_decoder(report: BundleReport, manifest: Any, machine: MachineReport, quant: str) -> Any:
    """llama.cpp runs any GGUF on the CPU (the question is memory); which GGUF: the runtime's rule."""
    if machine.llama_error is not None:
        report.reasons.append(f"llama-cpp-python does not import ({machine.llama_error})")
        return None
    try:
        from edge.decoder import choose_decoder

        return choose_decoder(manifest, quant)
    except Exception as exc:  # BundleError (no such quant, no decoder) or a broken runtime install
        report.reasons.append(f"no usable decoder: {exc}")
        return None


def _kv_cache_estimate(bundle_dir: Path, decoder: Any, n_ctx: int) -> tuple[int, str]:
    """The decoder's f16 KV cache in bytes, from the GGUF header; an upper bound without it."""
    try:
        kv_bytes = kv_cache_bytes(read_gguf_metadata(bundle_dir / decoder.path), n_ctx)
        kv_note = f"KV cache f16 for n_ctx {n_ctx} from the GGUF header"
    except (OSError, ValueError) as exc:
        kv_bytes, kv_note = None, f"GGUF header unreadable ({exc})"
    if kv_bytes is None:
        # Without the header, bound it: no grouped-query sharing, K and V of width n_embd, f16.
        kv_bytes = 2 * decoder.n_layer * decoder.n_embd * n_ctx * 2
        kv_note = f"KV cache upper bound for n_ctx {n_ctx} (GGUF header lacks attention sizes)"
    return kv_bytes, kv_note


def _check_memory(report, bundle_dir, vision, decoder, machine, gpu, n_ctx, n_gpu_layers) -> None:
    gguf_bytes = _artifact_bytes(bundle_dir, decoder.path)
    kv_bytes, kv_note = _kv_cache_estimate(bundle_dir, decoder, n_ctx)
    decoder_need = int((gguf_bytes + kv_bytes) * (1 + DECODER_HEADROOM_FRACTION)) + DECODER_HEADROOM_BYTES
    vision_weights = _artifact_bytes(bundle_dir, vision.path, vision.external_data)
    vision_need = int(vision_weights * VISION_WEIGHT_FACTOR)

    on_gpu = gpu is not None
    decoder_on_gpu = on_gpu and n_gpu_layers != 0 and bool(machine.llama_gpu_offload)
    vision_on_gpu = on_gpu and (
        vision.format == "tensorrt" or "CUDAExecutionProvider" in machine.onnxruntime_providers
    )
    unified = gpu is not None and gpu.unified_memory
    need_ram = RUNTIME_BASE_BYTES
    need_gpu = 0
    for need, there in ((decoder_need, decoder_on_gpu), (vision_need, vision_on_gpu)):
        if there and not unified:
            need_gpu += need
        else:
            need_ram += need  # CPU, or a Jetson whose GPU memory is the system RAM

    report.memory = {
        "gguf_bytes": gguf_bytes,
        "kv_cache_bytes": kv_bytes,
        "kv_cache_note": kv_note,
        "decoder_need_bytes": decoder_need,
        "decoder_on_gpu": decoder_on_gpu,
        "vision_weights_bytes": vision_weights,
        "vision_need_bytes": vision_need,
        "vision_on_gpu": vision_on_gpu,
        "need_ram_bytes": need_ram,
        "need_gpu_bytes": need_gpu,
        "ram_available_bytes": machine.ram_available_bytes,
        "gpu_free_bytes": gpu.memory_free_bytes if gpu else None,
        "unified_memory": unified,
    }
    ram = machine.ram_available_bytes
    if ram is not None and need_ram > ram:
        report.reasons.append(
            f"not enough RAM: needs ~{format_bytes(need_ram)} (GGUF {format_bytes(gguf_bytes)} + KV "
            f"{format_bytes(kv_bytes)} + vision {format_bytes(vision_need)} + margins), {format_bytes(ram)} available"
        )
    report.checks.append(
        Check(
            "ram",
            ram is None or need_ram <= ram,
            f"needs ~{format_bytes(need_ram)}, available {format_bytes(ram)}",
        )
    )
    if need_gpu:
        free = gpu.memory_free_bytes if gpu else None
        if free is not None and need_gpu > free:
            report.reasons.append(
                f"not enough GPU memory on {gpu.name}: needs ~{format_bytes(need_gpu)}, {format_bytes(free)} free"
            )
        report.checks.append(
            Check(
                "gpu_memory",
                free is None or need_gpu <= free,
                f"needs ~{format_bytes(need_gpu)}, free {format_bytes(free)}",
            )
        )
