"""Camera capture: sources, the freshest-frame capture thread, clip sampling, lock-step replay."""

from edge.capture.backoff import Backoff
from edge.capture.camera import CameraCapture, CaptureOptions, CaptureState, CaptureStatus, wait_for_state
from edge.capture.drops import DropMeter
from edge.capture.frames import Clip, Frame
from edge.capture.sampler import ClipSampler
from edge.capture.sources import CaptureError, SourceSpec, open_capture, parse_source
from edge.capture.stepper import VideoFileStepper

__all__ = [
    "Backoff",
    "CameraCapture",
    "CaptureError",
    "CaptureOptions",
    "CaptureState",
    "CaptureStatus",
    "Clip",
    "ClipSampler",
    "DropMeter",
    "Frame",
    "SourceSpec",
    "VideoFileStepper",
    "open_capture",
    "parse_source",
    "wait_for_state",
]
