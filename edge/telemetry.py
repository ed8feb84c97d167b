"""What the loop knows about itself, in the shape the ``status`` heartbeat publishes.

Stage percentiles come from a sliding window (recent behaviour matters to a planner, not the
whole drive); verdict counts and rejected inbound messages are totals since start. Events
(camera lost, nav refused, bundle refused, ...) are kept as counted kinds with their latest
message, so a storm of one kind cannot push the others out of the heartbeat.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from edge.messages import MAX_STATUS_EVENTS, STATUS_TEXT_MAX_CHARS, StageStats, StatusEvent, Verdict

WINDOW = 256


@dataclass
class Telemetry:
    window: int = WINDOW
    verdicts: Counter[Verdict] = field(default_factory=Counter)
    cycles: int = 0
    _stages: dict[str, deque[float]] = field(default_factory=dict)
    _events: dict[str, StatusEvent] = field(default_factory=dict)

    def record_cycle(self, verdict: Verdict, stages_ms: dict[str, float | None]) -> None:
        self.cycles += 1
        self.verdicts[verdict] += 1
        for stage, ms in stages_ms.items():
            if ms is not None:
                self._stages.setdefault(stage, deque(maxlen=self.window)).append(ms)

    def event(self, kind: str, message: str = "") -> None:
        previous = self._events.pop(kind, None)
        count = 1 if previous is None else previous.count + 1
        # Re-inserted last: the dict keeps the most recently active kinds at the end.
        self._events[kind] = StatusEvent(kind=kind, message=message[:STATUS_TEXT_MAX_CHARS], count=count)

    def events(self) -> list[StatusEvent]:
        return list(self._events.values())[-MAX_STATUS_EVENTS:]

    def stage_stats(self) -> dict[str, StageStats]:
        out = {}
        for stage, samples in self._stages.items():
            p50, p99 = np.percentile(np.fromiter(samples, dtype=np.float64), [50, 99])
            out[stage] = StageStats(p50_ms=float(p50), p99_ms=float(p99), n=len(samples))
        return out
