"""Exponential backoff between reconnect attempts (min, doubling, capped at max)."""

from __future__ import annotations


class Backoff:
    def __init__(self, min_s: float = 0.1, max_s: float = 5.0, factor: float = 2.0) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got min_s={min_s} max_s={max_s}")
        if factor < 1.0:
            raise ValueError(f"backoff factor must be >= 1, got {factor}")
        self.min_s = min_s
        self.max_s = max_s
        self.factor = factor
        self._next = min_s
        self.attempts = 0

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.max_s, self._next * self.factor)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self._next = self.min_s
        self.attempts = 0
