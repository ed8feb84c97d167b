"""Lock-step access to a video file on a simulated clock (no threads, no wall-clock pacing).

The simulator asks for "the frame the camera shows at t_ms": frame index floor(t_ms * fps / 1000).
Decoding only moves forward (grab() to skip, read() to keep); the few most recent decoded frames
are cached so a clip looking back over its sampling window does not rewind the decoder; a request
further back reopens the file and decodes from the start, which keeps answers identical whatever
the order of requests. The same file therefore always yields the same frames and ids.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from edge.capture.frames import Clip, Frame
from edge.capture.sources import DEFAULT_FPS, CaptureError, SourceSpec, capture_fps, open_capture


class VideoFileStepper:
    def __init__(
        self,
        path: str | Path,
        fps_override: float | None = None,
        loop: bool = False,
        cache_frames: int = 32,
        t0_ns: int = 0,
    ) -> None:
        self.path = Path(path)
        self._spec = SourceSpec("file", str(self.path), str(self.path))
        self._cap = open_capture(self._spec)
        self.fps = fps_override or capture_fps(self._cap) or DEFAULT_FPS
        self.claimed_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.loop = loop
        self.t0_ns = t0_ns  # simulated clock origin stamped on the frames
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(1, cache_frames)
        self._next = 0  # index the decoder reads next
        # Known once a read fails: the real number of frames (headers may lie).
        self.frame_count: int | None = None
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise CaptureError(f"video file {self.path} opened but holds no decodable frame (corrupt?)")
        self._next = 1
        self._remember(0, first)

    # ---- public -----------------------------------------------------------------------------
    def index_at(self, t_ms: float) -> int:
        if t_ms < 0:
            raise ValueError(f"simulated time must be >= 0, got {t_ms}")
        # Tiny epsilon: t = k * 1000 / fps must land on frame k despite float rounding.
        return math.floor(t_ms * self.fps / 1000.0 + 1e-9)

    def frame_at(self, t_ms: float) -> Frame | None:
        """The frame shown at simulated time t_ms, or None after the end of a non-looping video."""
        index = self.index_at(t_ms)
        source_index = index
        if self.loop:
            if self.frame_count is None:
                self._decode_to(index)  # learns frame_count when the end is passed
            if self.frame_count is not None:
                source_index = index % self.frame_count
        image = self._decode_to(source_index)
        if image is None:
            return None
        t_ns = self.t0_ns + round(index * 1e9 / self.fps)
        # Frame ids keep counting across loops so gaps keep their meaning.
        return Frame(frame_id=index, image=image, t_mono_ns=t_ns, t_wall_ns=t_ns)

    def clip_at(self, t_ms: float, interval_ms: float, frames: int, seq: int = 0) -> Clip | None:
        """`frames` samples spaced `interval_ms`, the newest at t_ms (None if not all exist)."""
        picked = []
        for k in range(frames - 1, -1, -1):
            t = t_ms - k * interval_ms
            if t < 0:
                return None
            frame = self.frame_at(t)
            if frame is None:
                return None
            picked.append(frame)
        return Clip.from_frames(picked, seq=seq)

    @property
    def duration_ms(self) -> float | None:
        """Known after the end was reached (decoded frames, not the header's claim)."""
        return None if self.frame_count is None else self.frame_count * 1000.0 / self.fps

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoFileStepper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- decoding ---------------------------------------------------------------------------
    def _remember(self, index: int, image: np.ndarray) -> None:
        self._cache[index] = image
        self._cache.move_to_end(index)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _rewind(self) -> None:
        self._cap.release()
        self._cap = open_capture(self._spec)
        self._next = 0

    def _decode_to(self, index: int) -> np.ndarray | None:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        if self.frame_count is not None and index >= self.frame_count:
            return None
        if index < self._next:
            self._rewind()
        while self._next < index:
            if not self._cap.grab():
                self.frame_count = self._next
                return None
            self._next += 1
        ok, image = self._cap.read()
        if not ok or image is None:
            self.frame_count = self._next
            return None
        self._next += 1
        self._remember(index, image)
        return image
