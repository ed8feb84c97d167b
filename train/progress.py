"""Plain progress lines for logs, where progress bars are off."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


class PhaseLog:
    """Plain progress lines for logs, where bars are off: one line every tenth of a phase with the
    mean loss since the previous line and the time since training started."""

    def __init__(self, phase: str, total: int, write: Callable[[str], None], started: float):
        self.phase, self.total, self.write, self.started = phase, total, write, started
        self.every = max(1, total // 10)
        self.pending: list[float] = []

    def __call__(self, step: int, loss: float) -> None:
        self.pending.append(loss)
        if (step + 1) % self.every == 0 or step + 1 == self.total:
            minutes = (time.monotonic() - self.started) / 60
            self.write(f"{self.phase} step {step + 1}/{self.total}: loss {np.mean(self.pending):.3f} "
                       f"({minutes:.1f} min)")
            self.pending = []


def chain(*hooks: Callable[[int, float], None] | None) -> Callable[[int, float], None] | None:
    """One on_step hook that calls every given hook in turn (None when none is given)."""
    live = [h for h in hooks if h is not None]
    if not live:
        return None

    def call(step: int, loss: float) -> None:
        for hook in live:
            hook(step, loss)

    return call
