"""The interface every vision backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from edge.manifest import VisionArtifact


class VisionBackendError(RuntimeError):
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
        if pixel_values.shape != want or pixel_values.dtype != np.float32:
            raise VisionBackendError(
                f"{self.name}: expected float32 {want}, got {pixel_values.dtype} {pixel_values.shape}"
            )
