"""Can this machine run the runtime, and can it run this bundle? (`edge doctor`)

`probe_machine` looks at what is here (machine.py, gpus.py); `check_bundle` decides whether a bundle
can run on it (fit.py, with the GGUF header reader in gguf.py); `load_and_measure` loads it for real
(memory.py); report.py renders both. Every probe is guarded and the top-level imports are the
standard library's: a doctor that crashes on a missing package is no use where it is needed most.
"""

from edge.doctor.fit import (
    DECODER_HEADROOM_BYTES,
    DECODER_HEADROOM_FRACTION,
    GIB,
    MIB,
    RUNTIME_BASE_BYTES,
    VISION_WEIGHT_FACTOR,
    BundleReport,
    Check,
    check_bundle,
    format_bytes,
    plan_mismatch,
    vision_candidates,
)
from edge.doctor.gguf import kv_cache_bytes, read_gguf_metadata
from edge.doctor.gpus import GpuInfo, probe_gpus
from edge.doctor.machine import PACKAGES, Camera, MachineReport, find_cameras, probe_machine
from edge.doctor.memory import load_and_measure
from edge.doctor.report import format_bundle, format_machine
from edge.environment import package_versions, process_memory

__all__ = [
    "DECODER_HEADROOM_BYTES",
    "DECODER_HEADROOM_FRACTION",
    "GIB",
    "MIB",
    "PACKAGES",
    "RUNTIME_BASE_BYTES",
    "VISION_WEIGHT_FACTOR",
    "BundleReport",
    "Camera",
    "Check",
    "GpuInfo",
    "MachineReport",
    "check_bundle",
    "find_cameras",
    "format_bundle",
    "format_bytes",
    "format_machine",
    "kv_cache_bytes",
    "load_and_measure",
    "package_versions",
    "plan_mismatch",
    "probe_gpus",
    "probe_machine",
    "process_memory",
    "read_gguf_metadata",
    "vision_candidates",
]
