"""Where the loop's clips come from, and on which clock it runs.

The loop is the same on the road and in the simulator; only these two things differ:

- ``LiveFeed`` + ``SystemClock``: the capture thread samples a camera (or a video file played as
  a camera); the loop takes the freshest clip, and budgets are enforced on the real clock.
- ``SteppedFeed`` + ``SimClock``: lock-step replay. Each clip is taken at the next sampling
  instant of a simulated clock that does not move while the model computes, so the same video
  and bundle give the same advice sequence (openpilot's process replay works the same way).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from edge.capture import CameraCapture, CaptureOptions, CaptureState, Clip, VideoFileStepper
from edge.preprocess import Preprocessor


class Clock(Protocol):
    def mono_ns(self) -> int: ...

    def wall_ns(self) -> int: ...


class SystemClock:
    def mono_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ns(self) -> int:
        return time.time_ns()


class SimClock:
    """Simulated time: monotonic starts at 0 and moves only when told (a clip is taken).

    Its wall clock follows the real one: each time the clock advances it is re-anchored so that
    the current simulated instant is the real wall time of that moment. A planner on the same host
    then sees a clip's newest frame stamped when the replay took it, and an advice's
    `valid_until_wall_ns` is that moment plus its validity, as on the road, whether the replay
    runs faster or slower than the video."""

    def __init__(self, real_wall_ns: Callable[[], int] = time.time_ns):
        self.now_ns = 0
        self._real_wall_ns = real_wall_ns
        self.wall_anchor_ns = real_wall_ns()  # wall time of simulated instant 0

    def mono_ns(self) -> int:
        return self.now_ns

    def wall_ns(self) -> int:
        return self.wall_anchor_ns + self.now_ns

    def wall_of(self, mono_ns: int) -> int:
        """The wall time of a simulated instant, on the current anchor."""
        return self.wall_anchor_ns + mono_ns

    def advance_to(self, t_ns: int) -> None:
        self.now_ns = max(self.now_ns, t_ns)
        self.wall_anchor_ns = self._real_wall_ns() - self.now_ns


@dataclass(frozen=True)
class FeedHealth:
    state: CaptureState
    reason: str
    drop_ratio: float


class ClipFeed(Protocol):
    def next_clip(self, after_seq: int, timeout_s: float, skip: int = 1) -> Clip | None:
        """A clip whose seq is at least after_seq + skip (skip > 1 when degraded), or None."""

    def health(self) -> FeedHealth: ...

    def close(self) -> None: ...


class LiveFeed:
    def __init__(self, capture: CameraCapture):
        self.capture = capture

    def next_clip(self, after_seq: int, timeout_s: float, skip: int = 1) -> Clip | None:
        # The sampler hands out its freshest clip newer than the given seq: the loop never queues.
        return self.capture.wait_clip(after_seq + skip - 1, timeout_s)

    def health(self) -> FeedHealth:
        status = self.capture.status()
        return FeedHealth(status.state, status.reason, status.drop_ratio)

    def close(self) -> None:
        self.capture.stop()


def open_live_feed(source: str, options: CaptureOptions, preprocessor: Preprocessor | None = None) -> LiveFeed:
    """Start a capture thread on `source`. With a preprocessor, the capture thread prepares each
    sampled frame for the encoder (and the clip it completes) while the loop is still decoding the
    previous clip: the cycle then starts with its pixels ready, as openpilot's camerad/modeld split."""
    on_sample = None if preprocessor is None else (lambda f: preprocessor.prepare_frame(f.frame_id, f.image))
    return LiveFeed(CameraCapture(source, options, on_sample=on_sample).start())


class SteppedFeed:
    """Clips from a video file at fixed simulated instants. Clip seq n (from 1, as the live
    sampler counts) ends with the frame shown at (frames_per_clip - 2 + n) * interval: the first
    clip is complete as soon as the video holds frames_per_clip samples."""

    def __init__(self, stepper: VideoFileStepper, clock: SimClock, interval_ms: float, frames_per_clip: int):
        self.stepper = stepper
        self.clock = clock
        self.interval_ms = interval_ms
        self.frames_per_clip = frames_per_clip
        self._ended = False

    def time_of(self, seq: int) -> float:
        """Simulated ms at which clip `seq` is complete."""
        return (self.frames_per_clip - 2 + seq) * self.interval_ms

    def next_clip(self, after_seq: int, timeout_s: float, skip: int = 1) -> Clip | None:
        seq = max(1, after_seq + skip)
        t_ms = self.time_of(seq)
        clip = self.stepper.clip_at(t_ms, self.interval_ms, self.frames_per_clip, seq=seq)
        if clip is None:
            self._ended = True
            return None
        self.clock.advance_to(round(t_ms * 1e6))
        # The stepper knows video time only; the frames' wall times come from the clock.
        return replace(clip, t_wall_ns=tuple(self.clock.wall_of(t) for t in clip.t_mono_ns))

    def health(self) -> FeedHealth:
        return FeedHealth("ended" if self._ended else "ok", "end of video" if self._ended else "", 0.0)

    @property
    def ended(self) -> bool:
        return self._ended

    def close(self) -> None:
        self.stepper.close()
