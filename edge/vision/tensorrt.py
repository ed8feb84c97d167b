"""TensorRT backend: a serialized plan, device buffers, one CUDA stream, asynchronous execution.

A TensorRT plan runs only on the GPU model and TensorRT version it was built with. The manifest
records both (`VisionArtifact.built_for`), and this backend compares them with the machine FIRST,
before touching the plan: a mismatch raises VisionBackendError with a reason naming both sides, and
`edge.vision.select` falls back to ONNX Runtime and publishes that reason on `status`.

Memory goes through cuda-python (`cuda.bindings.runtime`, or the older `cuda.cudart`), never torch:
the device does not carry torch. Host buffers are pinned so the copies are truly asynchronous.
The output rows have exactly the ONNX backend's layout: `[tokens_per_clip, n_embd * (1 + k)]`.
"""

from __future__ import annotations

import ctypes
import importlib
from pathlib import Path
from typing import Any

import numpy as np

from edge.manifest import VisionArtifact
from edge.vision.base import VisionBackend, VisionBackendError

BUILT_FOR_KEYS = ("gpu_name", "compute_capability", "tensorrt_version")


def normalize_gpu_name(name: str) -> str:
    """'NVIDIA  H200 ' and 'nvidia h200' name the same GPU model."""
    words = name.strip().lower().split()
    if words and words[0] == "nvidia":
        words = words[1:]
    return " ".join(words)


def describe_machine(gpu_name: str | None, compute_capability: str | None, trt_version: str | None) -> str:
    gpu = "no NVIDIA GPU" if not gpu_name else f"{gpu_name} (compute {compute_capability or '?'})"
    trt = f"TensorRT {trt_version}" if trt_version else "TensorRT not installed"
    return f"{gpu}, {trt}"


def check_engine_compat(
    built_for: dict | None,
    gpu_name: str | None,
    compute_capability: str | None,
    trt_version: str | None,
) -> str | None:
    """Why a plan built for `built_for` cannot run on this machine, or None when it can.

    Pure (no CUDA, no TensorRT): the machine's identity is passed in. A plan is specific to the
    GPU model (kernels are chosen and tuned for it; the compute capability alone is not enough)
    and to the exact TensorRT version that serialized it.
    """
    if not built_for or any(not built_for.get(key) for key in BUILT_FOR_KEYS):
        return (
            f"the plan does not record which GPU / TensorRT version it was built for "
            f"(built_for={built_for!r}); rebuild it here with `edge export trt`"
        )
    plan_side = describe_machine(
        str(built_for["gpu_name"]), str(built_for["compute_capability"]), str(built_for["tensorrt_version"])
    )
    problems = []
    if not gpu_name:
        problems.append("this machine has no NVIDIA GPU")
    else:
        if str(built_for["compute_capability"]) != str(compute_capability):
            problems.append(
                f"compute capability {compute_capability} != {built_for['compute_capability']}"
            )
        if normalize_gpu_name(str(built_for["gpu_name"])) != normalize_gpu_name(gpu_name):
            problems.append(f"GPU {gpu_name!r} != {built_for['gpu_name']!r}")
    if not trt_version:
        problems.append("TensorRT is not installed here")
    elif str(built_for["tensorrt_version"]) != str(trt_version):
        problems.append(f"TensorRT {trt_version} != {built_for['tensorrt_version']}")
    if not problems:
        return None
    here = describe_machine(gpu_name, compute_capability, trt_version)
    return (
        f"plan built for {plan_side} cannot run on {here}: {'; '.join(problems)} "
        f"(rebuild it on this machine with `edge export trt`)"
    )


# ---- the machine's identity ---------------------------------------------------------------------
def load_cudart():
    """cuda-python's runtime module (new and old layouts), or None when cuda-python is absent."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def cuda_call(cudart, result):
    """cuda-python returns (error, *values): raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        try:
            _, text = cudart.cudaGetErrorString(err)
            text = text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # the error string is a nicety; never mask the original failure
            text = ""
        raise VisionBackendError(f"CUDA error {int(err)} {text}".strip())
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def current_gpu(device: int = 0) -> tuple[str | None, str | None]:
    """(GPU name, compute capability "major.minor") of `device`, or (None, None) without one."""
    cudart = load_cudart()
    if cudart is None:
        # Without cuda-python the driver's proc file still names the GPU (no compute capability).
        from edge.benchreport import gpu_name

        return gpu_name(), None
    try:
        count = cuda_call(cudart, cudart.cudaGetDeviceCount())
        if not count or device >= count:
            return None, None
        prop = cuda_call(cudart, cudart.cudaGetDeviceProperties(device))
    except VisionBackendError:
        return None, None  # no driver / no device: CUDA reports it as an error code
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return name.strip("\x00 ").strip(), f"{prop.major}.{prop.minor}"


def tensorrt_version() -> str | None:
    try:
        import tensorrt
    except ImportError:
        return None
    return str(tensorrt.__version__)


# ---- the backend ---------------------------------------------------------------------------------
class _PinnedHost:
    """A numpy array living in page-locked host memory (required for truly async copies)."""

    def __init__(self, cudart, shape: tuple[int, ...], dtype: np.dtype):
        self.nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.ptr = int(cuda_call(cudart, cudart.cudaMallocHost(self.nbytes)))
        raw = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array = np.frombuffer(memoryview(raw), dtype=dtype).reshape(shape)


class TensorRTBackend(VisionBackend):
    def __init__(self, bundle_dir: Path, artifact: VisionArtifact, *, device: int = 0):
        if artifact.format != "tensorrt":
            raise VisionBackendError(f"{artifact.path} is a {artifact.format} artifact, not a TensorRT plan")
        self.artifact = artifact
        self.name = f"tensorrt/{artifact.precision}"
        self._device_buffers: list[int] = []
        self._pinned: list[_PinnedHost] = []
        self._stream: Any = None
        self._cudart: Any = None  # cuda-python's runtime module
        # FIRST: is this plan for this machine? (Never deserialize a foreign plan: at best it fails,
        # at worst it runs kernels tuned for another GPU.)
        gpu_name, capability = current_gpu(device)
        trt_version = tensorrt_version()
        reason = check_engine_compat(artifact.built_for, gpu_name, capability, trt_version)
        if reason:
            raise VisionBackendError(f"TensorRT {artifact.path}: {reason}")
        cudart = load_cudart()
        if cudart is None:
            raise VisionBackendError("TensorRT backend needs cuda-python (pip install the [gpu] extra)")
        self._cudart = cudart
        import tensorrt as trt

        try:
            self._setup(trt, cudart, Path(bundle_dir), device)
        except Exception:
            self.close()
            raise

    def _setup(self, trt, cudart, bundle_dir: Path, device: int) -> None:
        artifact = self.artifact
        cuda_call(cudart, cudart.cudaSetDevice(device))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        plan = (bundle_dir / artifact.path).read_bytes()
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise VisionBackendError(f"TensorRT could not deserialize {artifact.path} (corrupt plan?)")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise VisionBackendError(f"TensorRT could not create an execution context for {artifact.path}")

        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [artifact.input_name] or artifact.output_name not in outputs:
            raise VisionBackendError(
                f"{artifact.path}: engine I/O {inputs} -> {outputs} does not match the manifest "
                f"({artifact.input_name} -> {artifact.output_name})"
            )
        self._stream = cuda_call(cudart, cudart.cudaStreamCreate())
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        for name in names:
            shape = tuple(self._engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise VisionBackendError(f"{artifact.path}: tensor {name} has a dynamic shape {shape}; plans must be static")
            want = artifact.input_shape if name == artifact.input_name else (
                artifact.output_shape if name == artifact.output_name else None
            )
            if want is not None and list(shape) != list(want):
                raise VisionBackendError(f"{artifact.path}: tensor {name} is {list(shape)}, the manifest says {want}")
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            host = _PinnedHost(cudart, shape, dtype)
            self._pinned.append(host)
            dev = int(cuda_call(cudart, cudart.cudaMalloc(host.nbytes)))
            self._device_buffers.append(dev)
            self._host[name] = host.array
            self._device[name] = dev
            if not self._context.set_tensor_address(name, dev):
                raise VisionBackendError(f"{artifact.path}: set_tensor_address({name}) failed")
        want_in = np.dtype(artifact.input_dtype)
        if self._host[artifact.input_name].dtype != want_in or self._host[artifact.output_name].dtype != np.float32:
            raise VisionBackendError(
                f"{artifact.path}: engine I/O is {self._host[artifact.input_name].dtype} -> "
                f"{self._host[artifact.output_name].dtype}; the ONNX graph's is {want_in} -> float32"
            )
        self._nbytes = {name: self._host[name].nbytes for name in names}

    def encode(self, pixel_values: np.ndarray) -> np.ndarray:
        self.check_input(pixel_values)
        cudart, stream = self._cudart, self._stream
        art = self.artifact
        host_in, host_out = self._host[art.input_name], self._host[art.output_name]
        np.copyto(host_in, pixel_values)
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_call(cudart, cudart.cudaMemcpyAsync(self._device[art.input_name], host_in.ctypes.data,
                                                 self._nbytes[art.input_name], h2d, stream))
        if not self._context.execute_async_v3(int(stream)):
            raise VisionBackendError(f"{art.path}: execute_async_v3 failed")
        cuda_call(cudart, cudart.cudaMemcpyAsync(host_out.ctypes.data, self._device[art.output_name],
                                                 self._nbytes[art.output_name], d2h, stream))
        cuda_call(cudart, cudart.cudaStreamSynchronize(stream))
        # The pinned buffer is reused by the next call; callers own what they get, as with ONNX Runtime.
        return host_out.copy()

    def close(self) -> None:
        cudart = self._cudart
        if cudart is None:
            return
        for ptr in self._device_buffers:
            cudart.cudaFree(ptr)
        for host in self._pinned:
            cudart.cudaFreeHost(host.ptr)
        self._device_buffers, self._pinned = [], []
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        # Drop TensorRT objects in dependency order (context before engine before runtime).
        for attr in ("_context", "_engine", "_runtime"):
            if hasattr(self, attr):
                delattr(self, attr)
        self._cudart = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
