"""What this machine offers: Python and package versions, GPUs, TensorRT, ONNX Runtime's providers,
llama.cpp's GPU offload, cameras, memory. Every probe records what it found or why it could not look."""

from __future__ import annotations

import glob
import importlib
import importlib.metadata
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.doctor.gpus import GpuInfo, probe_gpus
from edge.environment import package_versions

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
        packages=package_versions(PACKAGES),
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
