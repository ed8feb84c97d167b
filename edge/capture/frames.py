"""What capture hands to the rest of the runtime: single frames and clips of sampled frames."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded camera frame.

    `image` is HxWx3 uint8 in OpenCV's BGR order; capture never writes into an array after it has
    handed it out, so holders may keep references without copying.
    `frame_id` is camera-global and increases by one per frame the source produced: a gap between
    two ids a consumer sees means frames were lost in between.
    """

    frame_id: int
    image: np.ndarray
    t_mono_ns: int  # time.monotonic_ns() at capture (for a paced file: when the "camera" exposed it)
    t_wall_ns: int  # time.time_ns() for the same instant

    def age_ms(self, now_mono_ns: int | None = None) -> float:
        now = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
        return (now - self.t_mono_ns) / 1e6


@dataclass(frozen=True)
class Clip:
    """The last N sampled frames, oldest first (BGR uint8 images)."""

    frames: tuple[np.ndarray, ...]
    frame_ids: tuple[int, ...]
    t_mono_ns: tuple[int, ...]
    t_wall_ns: tuple[int, ...]
    seq: int  # sampler's running sample count at the newest frame: a consumer sees whether a clip is new

    @classmethod
    def from_frames(cls, frames: list[Frame] | tuple[Frame, ...], seq: int) -> Clip:
        if not frames:
            raise ValueError("a clip needs at least one frame")
        return cls(
            frames=tuple(f.image for f in frames),
            frame_ids=tuple(f.frame_id for f in frames),
            t_mono_ns=tuple(f.t_mono_ns for f in frames),
            t_wall_ns=tuple(f.t_wall_ns for f in frames),
            seq=seq,
        )

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def newest_frame_id(self) -> int:
        return self.frame_ids[-1]

    @property
    def newest_t_mono_ns(self) -> int:
        return self.t_mono_ns[-1]

    def age_ms(self, now_mono_ns: int | None = None) -> float:
        """Age of the newest frame: what a staleness budget compares against."""
        now = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
        return (now - self.t_mono_ns[-1]) / 1e6
