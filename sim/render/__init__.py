"""The OpenCV renderer of simulated drives: ``SceneRenderer(drive).frames()``."""

from sim.render.frame import Annotation, SceneRenderer

__all__ = ["Annotation", "SceneRenderer"]
