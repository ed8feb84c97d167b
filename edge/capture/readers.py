"""Frame readers: one opened source each, yielding frames with a per-open frame index.

A reader's `read()` returns a `RawFrame` or None when the source ended or failed (`end_reason`
says which). The frame index increases by one per frame the source produced, so index gaps are
frames this process never saw.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from edge.capture.sources import DEFAULT_FPS, CaptureError, SourceSpec, capture_fps, open_capture


@dataclass(frozen=True)
class RawFrame:
    index: int
    image: np.ndarray
    t_mono_ns: int
    t_wall_ns: int


def _check_image(image: np.ndarray | None) -> bool:
    return image is not None and image.ndim == 3 and image.shape[2] == 3 and image.size > 0


class LiveReader:
    """A live device/stream: frames are timestamped when read() returns them.

    The index comes from the timestamps (elapsed time / nominal period, at least +1 per frame): a
    live camera has no frame counter OpenCV exposes reliably, and a late read() is exactly where
    frames were lost in the driver's queue.
    """

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self._cap = open_capture(spec)
        self.fps = capture_fps(self._cap)
        self._period_ns = None if self.fps is None else 1e9 / self.fps
        self._last_t: int | None = None
        self._last_index = -1
        self.end_reason = ""
        self.end_of_stream = False  # live sources never "end"; a failed read is a failure

    def read(self, stop: threading.Event) -> RawFrame | None:
        del stop  # a blocking driver read cannot be interrupted; the read timeout bounds it
        ok, image = self._cap.read()
        t_mono = time.monotonic_ns()
        t_wall = time.time_ns()
        if not ok or not _check_image(image):
            self.end_reason = f"read from {self.spec.text} failed (device unplugged or stream stopped)"
            return None
        if self._last_t is None or self._period_ns is None:
            step = 1
        else:
            step = max(1, round((t_mono - self._last_t) / self._period_ns))
        self._last_t = t_mono
        self._last_index += step
        return RawFrame(self._last_index, image, t_mono, t_wall)

    def close(self) -> None:
        self._cap.release()


class PacedFileReader:
    """A video file played as a camera: frame i is exposed at open_time + i / fps (wall clock).

    A reader that falls behind skips the frames whose time has passed (grab without retrieve),
    as a real camera would have dropped them; the index gap shows the loss. The end of the file is
    decided by a failed read, never by the header's frame count (headers can claim more frames
    than the file holds).
    """

    def __init__(self, spec: SourceSpec, fps_override: float | None = None) -> None:
        self.spec = spec
        self._cap = open_capture(spec)
        self.fps = fps_override or capture_fps(self._cap) or DEFAULT_FPS
        self._period_ns = 1e9 / self.fps
        self.claimed_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, first = self._cap.read()
        if not ok or not _check_image(first):
            self._cap.release()
            raise CaptureError(f"video file {spec.target} opened but holds no decodable frame (corrupt?)")
        self._pending: np.ndarray | None = first
        self._next = 0
        self._t0_mono = time.monotonic_ns()
        self._t0_wall = time.time_ns()
        self.end_reason = ""
        self.end_of_stream = False

    def _exposure_ns(self, index: int) -> int:
        return self._t0_mono + round(index * self._period_ns)

    def read(self, stop: threading.Event) -> RawFrame | None:
        now = time.monotonic_ns()
        showing = int((now - self._t0_mono) // self._period_ns)
        # Behind schedule: drop what the camera has already replaced.
        while self._next < showing:
            if self._pending is not None:
                self._pending = None
            elif not self._cap.grab():
                self._ended()
                return None
            self._next += 1
        t_frame = self._exposure_ns(self._next)
        wait_ns = t_frame - time.monotonic_ns()
        if wait_ns > 0 and stop.wait(wait_ns / 1e9):
            self.end_reason = "stopped"
            return None
        if self._pending is not None:
            image, self._pending = self._pending, None
        else:
            ok, image = self._cap.read()
            if not ok or not _check_image(image):
                self._ended()
                return None
        index = self._next
        self._next += 1
        return RawFrame(index, image, t_frame, self._t0_wall + (t_frame - self._t0_mono))

    def _ended(self) -> None:
        self.end_of_stream = True
        self.end_reason = f"end of video file {self.spec.target} after {self._next} frames"
        return None

    def close(self) -> None:
        self._cap.release()


def open_reader(spec: SourceSpec, fps_override: float | None = None) -> LiveReader | PacedFileReader:
    if spec.is_file:
        return PacedFileReader(spec, fps_override)
    return LiveReader(spec)
