"""The interface every vision backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from edge.errors import EdgeError
from edge.manifest import VisionArtifact


def random_input(artifact: VisionArtifact, rng: np.random.Generator) -> np.ndarray:
    """A random clip in the artifact's input type: normalised values uniform in [-1, 1] (float32)
    or levels uniform in 0..255 (uint8), which the graph maps to the same range."""
    shape = tuple(artifact.input_shape)
    if artifact.input_dtype == "uint8":
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)


class VisionBackendError(EdgeError, RuntimeError):
    """A backend cannot run here or refused its input; the message says why."""


class VisionBackend(ABC):
    """Encodes one clip's patches into visual rows in llama.cpp's layout
    ``[tokens_per_clip, n_embd * (1 + n_deepstack)]`` (merger output, then DeepStack slices)."""

    name: str
    artifact: VisionArtifact

    @abstractmethod
    def encode(self, pixel_values: np.ndarray) -> np.ndarray: ...

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to free
        pass

    def check_input(self, pixel_values: np.ndarray) -> None:
        want = tuple(self.artifact.input_shape)
        dtype = np.dtype(self.artifact.input_dtype)
        if pixel_values.shape != want or pixel_values.dtype != dtype:
            raise VisionBackendError(
                f"{self.name}: expected {dtype} {want}, got {pixel_values.dtype} {pixel_values.shape}"
            )
