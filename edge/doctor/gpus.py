"""GPUs through NVML or the CUDA driver, loaded with ctypes: no CUDA Python package needed."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass


@dataclass
class GpuInfo:
    index: int
    name: str
    compute_capability: str | None  # "8.6"
    memory_total_bytes: int | None
    memory_free_bytes: int | None
    unified_memory: bool  # Jetson: the GPU allocates from system RAM
    source: str  # how it was found: "nvml" or "cuda-driver"



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
