"""Can this machine run the runtime, and can it run this bundle? (`edge doctor`)

Two halves:

- ``probe_machine`` looks at what is here: Python and package versions, GPUs (through NVML or
  the CUDA driver, loaded with ctypes so no CUDA Python package is needed), TensorRT, ONNX
  Runtime's providers, llama.cpp's GPU offload, cameras, memory.
- ``check_bundle`` loads a bundle the way the runtime does and decides whether it can run here:
  a vision artifact that can execute (an ONNX model anywhere; a TensorRT plan only on the GPU
  and TensorRT version it was built for), a decoder, and enough memory for both.

Every probe is guarded: a doctor that crashes because a package is missing or broken is no use
on the machine that needs it most, so each probe records what it found or why it could not look.
This module imports only the standard library at the top for the same reason.
"""

from __future__ import annotations

import ctypes
import glob
import importlib
import importlib.metadata
import logging
import os
import platform
import struct
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Versions worth knowing when a deployment misbehaves. torch/transformers are listed so that an
# image which carries them by mistake (the device set must not) shows it.
PACKAGES = (
    "edge-scene-runtime",
    "numpy",
    "opencv-python-headless",
    "onnxruntime",
    "onnxruntime-gpu",
    "llama-cpp-python",
    "pyzmq",
    "pydantic",
    "tensorrt",
    "tensorrt-cu12",
    "cuda-python",
    "torch",
    "transformers",
)

GIB = 1 << 30
MIB = 1 << 20
# Memory the estimates add on top of the weights. llama.cpp's compute buffers grow with n_batch and
# n_ctx, ONNX Runtime and TensorRT keep activations and workspaces; these margins are deliberately
# generous because running out of memory in a car is worse than a conservative "no".
DECODER_HEADROOM_BYTES = 256 * MIB
DECODER_HEADROOM_FRACTION = 0.10
VISION_WEIGHT_FACTOR = 2.0  # ONNX Runtime / TensorRT hold weights plus optimised copies/workspaces
RUNTIME_BASE_BYTES = 512 * MIB  # Python, numpy, OpenCV, ZeroMQ, frame buffers


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------


@dataclass
class GpuInfo:
    index: int
    name: str
    compute_capability: str | None  # "8.6"
    memory_total_bytes: int | None
    memory_free_bytes: int | None
    unified_memory: bool  # Jetson: the GPU allocates from system RAM
    source: str  # how it was found: "nvml" or "cuda-driver"


@dataclass
class Camera:
    path: str
    accessible: bool  # readable and writable by this user (V4L2 needs both)


@dataclass
class MachineReport:
    python: str
    platform: str
    cpu_count: int
    packages: dict[str, str | None]
    ram_total_bytes: int | None
    ram_available_bytes: int | None
    jetson_model: str | None
    gpus: list[GpuInfo]
    gpu_probe: str  # what was tried and what it said
    cuda_driver_version: str | None
    tensorrt_version: str | None
    tensorrt_error: str | None
    onnxruntime_providers: list[str]
    onnxruntime_error: str | None
    llama_gpu_offload: bool | None
    llama_error: str | None
    cameras: list[Camera]

    @property
    def cuda_available(self) -> bool:
        return bool(self.gpus)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cuda_available"] = self.cuda_available
        return data


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def read_meminfo(path: str = "/proc/meminfo") -> tuple[int | None, int | None]:
    """(total, available) system memory in bytes; None where the kernel does not say."""
    values: dict[str, int] = {}
    try:
        with open(path) as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    values[key] = int(parts[0]) * 1024  # the kernel reports kB
    except OSError:
        return None, None
    return values.get("MemTotal"), values.get("MemAvailable")


def jetson_model() -> str | None:
    """The Jetson board name, or None off Jetson. Jetson GPUs share system RAM."""
    try:
        model = Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode(errors="replace")
        if "jetson" in model.lower() or "orin" in model.lower():
            return model
    except OSError:
        pass
    if Path("/etc/nv_tegra_release").is_file():
        return "NVIDIA Jetson (L4T)"
    return None


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def _probe_nvml() -> tuple[list[GpuInfo], str | None, str]:
    """GPUs through NVML (libnvidia-ml.so.1, shipped with the driver): name, capability, free memory."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError as exc:
        return [], None, f"NVML not loadable ({exc})"
    if nvml.nvmlInit_v2() != 0:
        return [], None, "NVML present but nvmlInit failed (no driver or no permission)"
    try:
        driver = ctypes.create_string_buffer(96)
        driver_version = driver.value.decode() if nvml.nvmlSystemGetDriverVersion(driver, 96) == 0 else None
        count = ctypes.c_uint(0)
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return [], driver_version, "NVML could not count devices"
        gpus = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            if nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) != 0:
                continue
            name = ctypes.create_string_buffer(96)
            nvml.nvmlDeviceGetName(handle, name, 96)
            memory = _NvmlMemory()
            has_memory = nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) == 0
            major, minor = ctypes.c_int(0), ctypes.c_int(0)
            has_cc = (
                nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)) == 0
            )
            gpus.append(
                GpuInfo(
                    index=index,
                    name=name.value.decode(errors="replace"),
                    compute_capability=f"{major.value}.{minor.value}" if has_cc else None,
                    memory_total_bytes=memory.total if has_memory else None,
                    memory_free_bytes=memory.free if has_memory else None,
                    unified_memory=False,
                    source="nvml",
                )
            )
        return gpus, driver_version, f"NVML found {len(gpus)} GPU(s)"
    finally:
        nvml.nvmlShutdown()


# CUdevice_attribute values from cuda.h (stable across CUDA versions).
_CU_COMPUTE_MAJOR = 75
_CU_COMPUTE_MINOR = 76
_CU_INTEGRATED = 18


def _probe_cuda_driver(ram_available: int | None) -> tuple[list[GpuInfo], str | None, str]:
    """GPUs through the CUDA driver API (libcuda.so.1). Used where NVML is absent, as on Jetson.

    Free memory needs a context, which costs time and memory; an integrated GPU (Jetson)
    allocates from system RAM, so its free memory is the RAM available, and a discrete GPU's
    free memory stays unknown on this path."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return [], None, f"CUDA driver not loadable ({exc})"
    status = cuda.cuInit(0)
    if status != 0:
        return [], None, f"CUDA driver present but cuInit returned {status} (no usable GPU)"
    version = ctypes.c_int(0)
    driver_version = None
    if cuda.cuDriverGetVersion(ctypes.byref(version)) == 0:
        driver_version = f"CUDA {version.value // 1000}.{(version.value % 1000) // 10}"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return [], driver_version, "CUDA driver could not count devices"
    gpus = []
    for index in range(count.value):
        device = ctypes.c_int(0)
        if cuda.cuDeviceGet(ctypes.byref(device), index) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        cuda.cuDeviceGetName(name, 256, device)

        def attribute(code: int, device: ctypes.c_int = device) -> int:
            value = ctypes.c_int(0)
            cuda.cuDeviceGetAttribute(ctypes.byref(value), code, device)
            return value.value

        total = ctypes.c_size_t(0)
        has_total = cuda.cuDeviceTotalMem_v2(ctypes.byref(total), device) == 0
        integrated = bool(attribute(_CU_INTEGRATED))
        gpus.append(
            GpuInfo(
                index=index,
                name=name.value.decode(errors="replace"),
                compute_capability=f"{attribute(_CU_COMPUTE_MAJOR)}.{attribute(_CU_COMPUTE_MINOR)}",
                memory_total_bytes=total.value if has_total else None,
                memory_free_bytes=ram_available if integrated else None,
                unified_memory=integrated,
                source="cuda-driver",
            )
        )
    return gpus, driver_version, f"CUDA driver found {len(gpus)} GPU(s)"


def probe_gpus(ram_available: int | None = None) -> tuple[list[GpuInfo], str | None, str]:
    """(gpus, driver version, how they were looked for). NVML first (it knows free memory)."""
    gpus, driver, nvml_note = _probe_nvml()
    if gpus:
        return gpus, driver, nvml_note
    gpus, driver, cuda_note = _probe_cuda_driver(ram_available)
    return gpus, driver, f"{nvml_note}; {cuda_note}"


def _probe_tensorrt() -> tuple[str | None, str | None]:
    try:
        trt = importlib.import_module("tensorrt")
        return str(trt.__version__), None
    except Exception as exc:  # ImportError, or OSError when libnvinfer is missing underneath
        return None, f"{type(exc).__name__}: {exc}"


def _probe_onnxruntime() -> tuple[list[str], str | None]:
    try:
        ort = importlib.import_module("onnxruntime")
        return list(ort.get_available_providers()), None
    except Exception as exc:
        return [], f"{type(exc).__name__}: {exc}"


def _probe_llama() -> tuple[bool | None, str | None]:
    try:
        llama_cpp = importlib.import_module("llama_cpp")
        return bool(llama_cpp.llama_supports_gpu_offload()), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def find_cameras(pattern: str = "/dev/video*") -> list[Camera]:
    return [Camera(path, os.access(path, os.R_OK | os.W_OK)) for path in sorted(glob.glob(pattern))]


def probe_machine() -> MachineReport:
    ram_total, ram_available = read_meminfo()
    gpus, driver, gpu_probe = probe_gpus(ram_available)
    jetson = jetson_model()
    if jetson:
        # Jetson's GPU allocates from system RAM whatever NVML reports (often "not supported").
        for gpu in gpus:
            gpu.unified_memory = True
            gpu.memory_free_bytes = ram_available
    trt_version, trt_error = _probe_tensorrt()
    providers, ort_error = _probe_onnxruntime()
    offload, llama_error = _probe_llama()
    return MachineReport(
        python=sys.version.split()[0],
        platform=f"{platform.system()} {platform.machine()} {platform.release()}",
        cpu_count=os.cpu_count() or 1,
        packages=package_versions(),
        ram_total_bytes=ram_total,
        ram_available_bytes=ram_available,
        jetson_model=jetson,
        gpus=gpus,
        gpu_probe=gpu_probe,
        cuda_driver_version=driver,
        tensorrt_version=trt_version,
        tensorrt_error=trt_error,
        onnxruntime_providers=providers,
        onnxruntime_error=ort_error,
        llama_gpu_offload=offload,
        llama_error=llama_error,
        cameras=find_cameras(),
    )


# --------------------------------------------------------------------------------------------
# GGUF header: the decoder's shape, for the KV cache estimate
# --------------------------------------------------------------------------------------------

_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_MAX_KEPT_ARRAY = 4096  # per-layer arrays are kept; the 150k-entry vocabulary is skipped


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """The key/value header of a GGUF file (without the vocabulary arrays). Reads a few KB of a
    multi-GB file: llama.cpp is not needed and nothing is loaded."""
    with open(path, "rb") as handle:

        def unpack(fmt: str) -> Any:
            size = struct.calcsize(fmt)
            data = handle.read(size)
            if len(data) != size:
                raise ValueError(f"{path}: truncated GGUF header")
            return struct.unpack(fmt, data)[0]

        def read_string() -> str:
            return handle.read(unpack("<Q")).decode("utf-8", errors="replace")

        def read_value(kind: int) -> Any:
            if kind in _GGUF_SCALARS:
                return unpack(_GGUF_SCALARS[kind])
            if kind == _GGUF_STRING:
                return read_string()
            if kind == _GGUF_ARRAY:
                item_kind, count = unpack("<I"), unpack("<Q")
                if count > _GGUF_MAX_KEPT_ARRAY:
                    if item_kind in _GGUF_SCALARS:
                        handle.seek(count * struct.calcsize(_GGUF_SCALARS[item_kind]), os.SEEK_CUR)
                    else:
                        for _ in range(count):
                            read_value(item_kind)
                    return None
                return [read_value(item_kind) for _ in range(count)]
            raise ValueError(f"{path}: unknown GGUF value type {kind}")

        if handle.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version = unpack("<I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is too old")
        _tensors, kv_count = unpack("<Q"), unpack("<Q")
        meta: dict[str, Any] = {}
        for _ in range(kv_count):
            key = read_string()
            meta[key] = read_value(unpack("<I"))
        return meta


def kv_cache_bytes(meta: dict[str, Any], n_ctx: int, bytes_per_value: int = 2) -> int | None:
    """K and V for every layer and context position (f16 by default, llama.cpp's default type)."""
    arch = meta.get("general.architecture")
    layers = meta.get(f"{arch}.block_count")
    heads_kv = meta.get(f"{arch}.attention.head_count_kv", meta.get(f"{arch}.attention.head_count"))
    if isinstance(heads_kv, list):  # per-layer counts: layers x their mean is their sum
        heads_kv = sum(heads_kv) / len(heads_kv) if heads_kv else None
    heads = meta.get(f"{arch}.attention.head_count")
    if isinstance(heads, list):
        heads = max(heads) if heads else None
    n_embd = meta.get(f"{arch}.embedding_length")
    key_dim = meta.get(f"{arch}.attention.key_length") or (n_embd // heads if n_embd and heads else None)
    value_dim = meta.get(f"{arch}.attention.value_length") or key_dim
    if not all(isinstance(v, int | float) and v for v in (layers, heads_kv, key_dim, value_dim)):
        return None
    return int(layers * heads_kv * (key_dim + value_dim) * n_ctx * bytes_per_value)


# --------------------------------------------------------------------------------------------
# The bundle
# --------------------------------------------------------------------------------------------


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


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def vision_candidates(manifest: Any, backend: str = "auto", precision: str = "auto") -> list[Any]:
    """The adopted vision artifacts the runtime would consider, best first (mirrors select.py)."""
    candidates = []
    if backend in ("auto", "tensorrt"):
        plans = manifest.adopted_vision("tensorrt")
        if precision != "auto":
            plans = [p for p in plans if p.precision == precision]
        candidates += sorted(plans, key=lambda p: p.precision != "int8")
    if backend in ("auto", "onnxruntime"):
        onnx = {a.precision: a for a in manifest.adopted_vision("onnx")}
        wanted = "auto" if precision == "fp16" else precision  # no fp16 ONNX: the runtime falls back
        order = ["int8", "fp32"] if wanted == "auto" else [wanted]
        candidates += [onnx[p] for p in order if p in onnx][:1]
    return candidates


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

    # Vision: what can execute here, among the artifacts the runtime's selection rule would try, in
    # its order of preference (edge/vision/select.py: TensorRT first, INT8 first).
    runnable_vision = []
    vision_problems = []
    for art in vision_candidates(manifest, vision_backend, vision_precision):
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
    if not vision_candidates(manifest, vision_backend, vision_precision):
        report.reasons.append(
            f"the bundle has no adopted vision artifact for vision.backend={vision_backend}, "
            f"vision.precision={vision_precision}"
        )
    elif not runnable_vision:
        report.reasons.append("no vision artifact can run here: " + "; ".join(vision_problems))

    # Decoder: llama.cpp runs any GGUF on the CPU; the question is memory. Which GGUF: the runtime's rule.
    decoder = None
    if machine.llama_error is not None:
        report.reasons.append(f"llama-cpp-python does not import ({machine.llama_error})")
    else:
        try:
            from edge.decoder import choose_decoder

            decoder = choose_decoder(manifest, quant)
        except Exception as exc:  # BundleError (no such quant, no decoder) or a broken runtime install
            report.reasons.append(f"no usable decoder: {exc}")

    if runnable_vision:
        chosen = runnable_vision[0]
        report.vision_choice = f"{chosen.format} {chosen.precision} ({chosen.path})"
    if decoder is not None:
        report.decoder_choice = f"{decoder.quant} ({decoder.path})"

    if decoder is not None and runnable_vision:
        _check_memory(report, bundle_dir, runnable_vision[0], decoder, machine, gpu, n_ctx, n_gpu_layers)

    report.runnable = not report.reasons
    return report


def _check_memory(report, bundle_dir, vision, decoder, machine, gpu, n_ctx, n_gpu_layers) -> None:
    gguf_bytes = _artifact_bytes(bundle_dir, decoder.path)
    try:
        kv_bytes = kv_cache_bytes(read_gguf_metadata(bundle_dir / decoder.path), n_ctx)
        kv_note = f"KV cache f16 for n_ctx {n_ctx} from the GGUF header"
    except (OSError, ValueError) as exc:
        kv_bytes, kv_note = None, f"GGUF header unreadable ({exc})"
    if kv_bytes is None:
        # Without the header, bound it: no grouped-query sharing, K and V of width n_embd, f16.
        kv_bytes = 2 * decoder.n_layer * decoder.n_embd * n_ctx * 2
        kv_note = f"KV cache upper bound for n_ctx {n_ctx} (GGUF header lacks attention sizes)"
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
            f"not enough RAM: needs ~{_fmt_bytes(need_ram)} (GGUF {_fmt_bytes(gguf_bytes)} + KV "
            f"{_fmt_bytes(kv_bytes)} + vision {_fmt_bytes(vision_need)} + margins), {_fmt_bytes(ram)} available"
        )
    report.checks.append(
        Check(
            "ram",
            ram is None or need_ram <= ram,
            f"needs ~{_fmt_bytes(need_ram)}, available {_fmt_bytes(ram)}",
        )
    )
    if need_gpu:
        free = gpu.memory_free_bytes if gpu else None
        if free is not None and need_gpu > free:
            report.reasons.append(
                f"not enough GPU memory on {gpu.name}: needs ~{_fmt_bytes(need_gpu)}, {_fmt_bytes(free)} free"
            )
        report.checks.append(
            Check(
                "gpu_memory",
                free is None or need_gpu <= free,
                f"needs ~{_fmt_bytes(need_gpu)}, free {_fmt_bytes(free)}",
            )
        )


# --------------------------------------------------------------------------------------------
# Loading for real (`--load`): the runtime's own loaders, with the memory they take
# --------------------------------------------------------------------------------------------


def process_memory(status_path: str = "/proc/self/status") -> dict[str, int]:
    """This process's resident memory in bytes: VmRSS (now), VmHWM (peak), RssAnon (heap, copies)
    and RssFile (mapped files: a GGUF is mmapped, so its pages count here once touched)."""
    values = {}
    try:
        with open(status_path) as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


def load_and_measure(report: BundleReport, config: Any, verify_hashes: bool = True) -> None:
    """Load the bundle as the runtime would (vision backend chosen by the runtime's own rule, one clip
    encoded; the GGUF and a context of the configured n_ctx) and record time and memory per step
    into ``report.memory["measured"]``. A failure becomes a reason: the bundle cannot run here."""
    import time

    steps: list[dict[str, Any]] = []

    def mark(step: str, started: float) -> None:
        steps.append({"step": step, "seconds": round(time.perf_counter() - started, 3), **process_memory()})

    start = time.perf_counter()
    try:
        import numpy as np

        from edge.llm.context import ContextSettings, LlamaContext
        from edge.llm.model import LlamaModel
        from edge.manifest import load_bundle
        from edge.vision.select import select_backend

        mark("baseline: python and the runtime's imports", start)
        # The caller has just verified the hashes; do not log the "not verified" warning again.
        logging.getLogger("edge.manifest").disabled = not verify_hashes
        try:
            manifest, bundle_dir = load_bundle(report.path, verify_hashes=verify_hashes)
        finally:
            logging.getLogger("edge.manifest").disabled = False
        start = time.perf_counter()
        choice = select_backend(bundle_dir, manifest, config.vision)
        rows = choice.backend.encode(np.zeros(choice.backend.artifact.input_shape, choice.backend.artifact.input_dtype))
        mark(f"vision: {choice.backend.name} loaded, one clip encoded to {list(rows.shape)}", start)
        from edge.decoder import choose_decoder

        decoder = choose_decoder(manifest, config.decoder.quant)
        start = time.perf_counter()
        model = LlamaModel(
            bundle_dir / decoder.path,
            n_gpu_layers=config.decoder.n_gpu_layers,
            expected_n_embd_inp=decoder.n_embd_inp,
        )
        context = LlamaContext(
            model, ContextSettings(n_ctx=config.decoder.n_ctx, n_batch=config.decoder.n_batch)
        )
        mark(f"decoder: {decoder.path} loaded, context n_ctx {context.n_ctx}", start)
        context.close()
        model.close()
        choice.backend.close()
    except Exception as exc:  # any loader's failure is the answer, not a crash of the doctor
        report.reasons.append(f"loading failed: {type(exc).__name__}: {exc}")
        report.runnable = False
    report.memory["measured"] = steps


# --------------------------------------------------------------------------------------------
# Text rendering
# --------------------------------------------------------------------------------------------


def format_machine(machine: MachineReport) -> list[str]:
    lines = [f"python {machine.python} on {machine.platform}, {machine.cpu_count} CPUs"]
    lines.append(
        f"memory: {_fmt_bytes(machine.ram_available_bytes)} available of {_fmt_bytes(machine.ram_total_bytes)}"
    )
    installed = ", ".join(f"{k} {v}" for k, v in machine.packages.items() if v)
    lines.append(f"packages: {installed}")
    if machine.jetson_model:
        lines.append(f"jetson: {machine.jetson_model}")
    if machine.gpus:
        for gpu in machine.gpus:
            lines.append(
                f"gpu {gpu.index}: {gpu.name}, compute capability {gpu.compute_capability}, "
                f"free {_fmt_bytes(gpu.memory_free_bytes)} of {_fmt_bytes(gpu.memory_total_bytes)} "
                f"({gpu.source}{', unified memory' if gpu.unified_memory else ''})"
            )
        lines.append(f"cuda driver: {machine.cuda_driver_version}")
    else:
        lines.append(f"gpu: none ({machine.gpu_probe})")
    lines.append(
        f"tensorrt: {machine.tensorrt_version or 'unavailable (' + str(machine.tensorrt_error) + ')'}"
    )
    lines.append(
        "onnxruntime providers: "
        + (", ".join(machine.onnxruntime_providers) or f"unavailable ({machine.onnxruntime_error})")
    )
    offload = machine.llama_gpu_offload
    lines.append(
        f"llama.cpp gpu offload: {offload if offload is not None else 'unavailable (' + str(machine.llama_error) + ')'}"
    )
    cams = ", ".join(f"{c.path}{'' if c.accessible else ' (no access)'}" for c in machine.cameras)
    lines.append(f"cameras: {cams or 'none found (/dev/video*)'}")
    return lines


def format_bundle(report: BundleReport) -> list[str]:
    lines = [f"bundle {report.path}: {'CAN run here' if report.runnable else 'CANNOT run here'}"]
    for check in report.checks:
        lines.append(f"  [{'ok' if check.ok else 'no'}] {check.name}: {check.detail}")
    if report.vision_choice:
        lines.append(f"  vision would use: {report.vision_choice}")
    if report.decoder_choice:
        lines.append(f"  decoder would use: {report.decoder_choice}")
    for step in report.memory.get("measured", []):
        lines.append(
            f"  measured {step['step']}: {step['seconds']:.2f} s, RSS {_fmt_bytes(step.get('VmRSS'))} "
            f"(anon {_fmt_bytes(step.get('RssAnon'))}, files {_fmt_bytes(step.get('RssFile'))}), "
            f"peak {_fmt_bytes(step.get('VmHWM'))}"
        )
    for reason in report.reasons:
        lines.append(f"  reason: {reason}")
    return lines
