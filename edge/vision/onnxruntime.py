"""ONNX Runtime backend: CPU everywhere, CUDA where onnxruntime-gpu finds a device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge.manifest import VisionArtifact
from edge.vision.base import VisionBackend, VisionBackendError


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


class OnnxRuntimeBackend(VisionBackend):
    def __init__(self, bundle_dir: Path, artifact: VisionArtifact, *, use_cuda: bool = True, threads: int = 0,
                 spin: bool = False):
        if artifact.format != "onnx":
            raise VisionBackendError(f"{artifact.path} is a {artifact.format} artifact, not ONNX")
        providers = ["CPUExecutionProvider"]
        if use_cuda and "CUDAExecutionProvider" in available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # Off by default: idle workers that busy-wait take the CPU the decoder's threads and any
        # neighbouring process need (edge/cpus.py).
        spinning = "1" if spin else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        try:
            self._session = ort.InferenceSession(str(Path(bundle_dir) / artifact.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception zoo
            raise VisionBackendError(f"ONNX Runtime cannot load {artifact.path}: {exc}") from exc
        self.artifact = artifact
        self.provider = self._session.get_providers()[0]
        self.name = f"onnxruntime/{self.provider.removesuffix('ExecutionProvider').lower()}/{artifact.precision}"
        self._output_names = [artifact.output_name]

    def encode(self, pixel_values: np.ndarray) -> np.ndarray:
        self.check_input(pixel_values)
        (rows,) = self._session.run(self._output_names, {self.artifact.input_name: pixel_values})
        return rows
