"""Camera source strings -> opened OpenCV captures.

Accepted source forms (the `--camera` argument):
- an int (`0`) or `/dev/videoN`                   -> V4L2 device
- `gst:<pipeline>` or any string containing ` ! `  -> GStreamer pipeline (Jetson CSI cameras); must end
                                                    in an `appsink`
- `rtsp://`, `rtsps://`, `http(s)://` URL        -> network stream through FFmpeg
- any other string                                 -> a video file, played as a camera
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2

from edge.errors import EdgeError

SourceKind = Literal["v4l2", "gstreamer", "network", "file"]

# FFmpeg network streams block forever in read() on a dead peer unless these are set.
NETWORK_OPEN_TIMEOUT_MS = 5000
NETWORK_READ_TIMEOUT_MS = 5000
# Some containers report no rate; a camera needs one to be paced.
DEFAULT_FPS = 30.0


class CaptureError(EdgeError, RuntimeError):
    """A source cannot be opened or decoded; the message names the source and the reason."""


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    target: str | int  # device index, device path, pipeline, URL or file path
    text: str  # what the user wrote, for messages and status

    @property
    def is_file(self) -> bool:
        return self.kind == "file"


_DEVICE_PATH = re.compile(r"^/dev/video(\d+)$")


def parse_source(source: str | int | Path) -> SourceSpec:
    """Classify a camera source string; raises CaptureError for an empty one."""
    if isinstance(source, bool):
        raise CaptureError(f"camera source must be a device index, path, URL or pipeline, got {source!r}")
    if isinstance(source, int):
        if source < 0:
            raise CaptureError(f"camera device index must be >= 0, got {source}")
        return SourceSpec("v4l2", source, f"/dev/video{source}")
    if isinstance(source, Path):
        return SourceSpec("file", str(source), str(source))
    text = str(source).strip()
    if not text:
        raise CaptureError("camera source is empty")
    if text.isdigit():
        return SourceSpec("v4l2", int(text), f"/dev/video{text}")
    if _DEVICE_PATH.match(text):
        return SourceSpec("v4l2", text, text)
    if text.startswith("gst:"):
        return SourceSpec("gstreamer", text[4:].strip(), text)
    if " ! " in text:
        return SourceSpec("gstreamer", text, text)
    if re.match(r"^(rtsps?|https?|rtmp|udp|tcp)://", text, re.IGNORECASE):
        return SourceSpec("network", text, text)
    return SourceSpec("file", text, text)


def opencv_has_backend(api: int) -> bool:
    """Whether this OpenCV build has a backend compiled in (pip wheels, e.g., lack GStreamer)."""
    try:
        # getBackends() lists plugins that may be absent; hasBackend() says what can really open.
        return bool(cv2.videoio_registry.hasBackend(api))
    except AttributeError:  # very old OpenCV: assume yes and let open() decide
        return True


def open_capture(spec: SourceSpec) -> cv2.VideoCapture:
    """Open `spec` with the backend its kind needs; raises CaptureError with the reason."""
    if spec.kind == "file":
        path = Path(str(spec.target))
        if not path.exists():
            raise CaptureError(f"video file {path} does not exist")
        if not path.is_file():
            raise CaptureError(f"video source {path} is not a regular file")
        if path.stat().st_size == 0:
            raise CaptureError(f"video file {path} is empty")
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise CaptureError(
                f"cannot decode video file {path}: OpenCV/FFmpeg does not recognise it "
                "(corrupt file or unsupported container/codec)"
            )
        return cap
    if spec.kind == "gstreamer":
        if not opencv_has_backend(cv2.CAP_GSTREAMER):
            raise CaptureError(
                f"GStreamer source {spec.text!r}: this OpenCV build has no GStreamer backend "
                "(pip wheels ship without it; use the system/L4T OpenCV on Jetson)"
            )
        cap = cv2.VideoCapture(str(spec.target), cv2.CAP_GSTREAMER)
        if not cap.isOpened():
            cap.release()
            raise CaptureError(
                f"cannot start GStreamer pipeline {spec.target!r} (check the elements exist and it ends "
                "in 'appsink')"
            )
        return cap
    if spec.kind == "network":
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            NETWORK_OPEN_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            NETWORK_READ_TIMEOUT_MS,
        ]
        cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise CaptureError(f"cannot open network stream {spec.text} (unreachable or not a video stream)")
        return cap
    # V4L2: a device index or a /dev/videoN path.
    cap = cv2.VideoCapture(spec.target, cv2.CAP_V4L2)
    if not cap.isOpened():
        cap.release()
        raise CaptureError(f"cannot open V4L2 camera {spec.text} (missing device, busy, or no permission)")
    # Latest-only: a deep driver queue would hand us old frames first.
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


def capture_fps(cap: cv2.VideoCapture) -> float | None:
    """The source's nominal frame rate, or None when it reports nothing usable."""
    fps = cap.get(cv2.CAP_PROP_FPS)
    if fps is None or not math.isfinite(fps) or fps <= 0 or fps > 1000:
        return None
    return float(fps)
