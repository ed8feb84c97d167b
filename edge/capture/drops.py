"""Frame-drop accounting from frame-id gaps (openpilot modeld's approach).

Every frame id a consumer sees is compared with the previous one: `gap - expected_step` frames were
lost. The per-observation loss goes through an exponential moving average `x`, published as the
ratio `x / (1 + x)` — in steady state the fraction of frames lost — so one hiccup fades instead of
sticking forever, while the totals keep the exact counts.
"""

from __future__ import annotations

import threading

# One long outage should not pin the filtered ratio near 1 for minutes: clip a single gap.
MAX_COUNTED_GAP = 10


class DropMeter:
    def __init__(self, expected_step: int = 1, alpha: float = 0.1) -> None:
        if expected_step < 1:
            raise ValueError(f"expected_step must be >= 1, got {expected_step}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.expected_step = expected_step
        self.alpha = alpha
        self._lock = threading.Lock()
        self._last_id: int | None = None
        self._filtered = 0.0
        self.frames_seen = 0
        self.frames_dropped = 0

    def observe(self, frame_id: int) -> int:
        """Record a frame id; returns how many frames were lost since the previous one."""
        with self._lock:
            dropped = 0
            if self._last_id is not None:
                gap = frame_id - self._last_id
                if gap <= 0:
                    # Same or older frame: not a new observation, nothing lost.
                    return 0
                dropped = max(0, gap - self.expected_step)
            self._last_id = frame_id
            self.frames_seen += 1
            self.frames_dropped += dropped
            self._filtered += self.alpha * (min(dropped, MAX_COUNTED_GAP) - self._filtered)
            return dropped

    def restart(self, expected_next: int | None = None) -> None:
        """Forget the last id: after a reconnect the gap is an outage, not frame drops. With
        `expected_next`, frames before the first one observed count as dropped (a reader that
        starts late has lost them)."""
        with self._lock:
            self._last_id = None if expected_next is None else expected_next - self.expected_step

    @property
    def ratio(self) -> float:
        """Filtered fraction of frames lost, in [0, 1)."""
        x = self._filtered
        return x / (1.0 + x)

    @property
    def total_ratio(self) -> float:
        """Unfiltered fraction of frames lost since the start."""
        total = self.frames_seen + self.frames_dropped
        return 0.0 if total == 0 else self.frames_dropped / total
