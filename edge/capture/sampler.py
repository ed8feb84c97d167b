"""One frame every `interval_ms` into a ring of the last `frames` samples.

Sampling is driven by the frames' own capture timestamps, not by a timer thread: the same sequence
of frames always yields the same samples, live or on a simulated clock. Due times advance on a fixed
grid (`due += interval`) so sampling does not drift by a frame period per sample; after an outage
the grid restarts at the next frame instead of bursting to catch up.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from edge.capture.frames import Clip, Frame


class ClipSampler:
    def __init__(self, interval_ms: float, frames: int) -> None:
        if interval_ms <= 0:
            raise ValueError(f"sampling interval_ms must be > 0, got {interval_ms}")
        if frames < 1:
            raise ValueError(f"frames per clip must be >= 1, got {frames}")
        self.interval_ns = round(interval_ms * 1e6)
        self.frames = frames
        self._ring: deque[Frame] = deque(maxlen=frames)
        self._due_ns: int | None = None
        self._seq = 0
        self._lock = threading.Lock()
        self._new_clip = threading.Condition(self._lock)

    def offer(self, frame: Frame, on_take: Callable[[Frame], None] | None = None) -> bool:
        """Take `frame` if a sample is due at its capture time; returns whether it was taken.

        `on_take` runs for a taken frame before waiting consumers are woken, so work it does for
        them (preparing the frame for the encoder) is finished when they look."""
        with self._lock:
            t = frame.t_mono_ns
            if self._due_ns is not None and t < self._due_ns:
                return False
            if self._due_ns is None:
                self._due_ns = t + self.interval_ns
            else:
                self._due_ns += self.interval_ns
                if self._due_ns <= t:  # fell a whole interval behind (outage): restart the grid
                    self._due_ns = t + self.interval_ns
            self._ring.append(frame)
            self._seq += 1
            if on_take is not None:
                on_take(frame)
            self._new_clip.notify_all()
            return True

    def reset(self) -> None:
        """Drop the samples (after a reconnect, frames before the outage no longer form a clip)."""
        with self._lock:
            self._ring.clear()
            self._due_ns = None

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def filled(self) -> int:
        return len(self._ring)

    def clip(self) -> Clip | None:
        """The freshest full clip, or None until `frames` samples exist."""
        with self._lock:
            return self._clip_locked()

    def wait_clip(self, after_seq: int, timeout_s: float | None) -> Clip | None:
        """Block until a full clip newer than `after_seq` exists (or timeout) and return it."""
        with self._lock:
            self._new_clip.wait_for(
                lambda: self._seq > after_seq and len(self._ring) == self.frames, timeout=timeout_s
            )
            clip = self._clip_locked()
            return clip if clip is not None and clip.seq > after_seq else None

    def _clip_locked(self) -> Clip | None:
        if len(self._ring) < self.frames:
            return None
        return Clip.from_frames(tuple(self._ring), seq=self._seq)
