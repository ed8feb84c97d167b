"""Vision encoder backends: one interface, one file per backend, chosen by ``select``."""

from edge.vision.base import VisionBackend, VisionBackendError
from edge.vision.select import BackendChoice, select_backend

__all__ = ["BackendChoice", "VisionBackend", "VisionBackendError", "select_backend"]
