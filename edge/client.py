"""The planner-side client: a subscriber a planner can embed.

It validates every message (through ``edge.bus.Subscriber``), tracks ``seq`` gaps, refuses
advice that is already past ``valid_until``, marks advice under a minimum confidence as advisory
only (``min_confidence``: the planner may show it, it should not act on it), and judges the runtime's liveness from the
``status`` heartbeat the way openpilot's SubMaster does: *alive* (heard recently), *rate ok*
(heartbeats arrive at the announced rate) and *valid* (the runtime says it is working).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import cast

import zmq

from edge.bus import CurveKeys, Subscriber
from edge.messages import (
    TOPIC_ADVICE,
    TOPIC_STATUS,
    ActionAdvice,
    RuntimeState,
    Status,
)

# A runtime that misses this many heartbeats in a row is not alive.
MISSED_HEARTBEATS_DEAD = 3
# Heartbeat rate is "ok" when the measured interval is within this factor of the announced one.
RATE_TOLERANCE = 1.5
HEALTHY_STATES = frozenset({RuntimeState.RUNNING, RuntimeState.DEGRADED})


@dataclass(frozen=True)
class Liveness:
    alive: bool
    rate_ok: bool
    valid: bool
    last_status_age_ms: float | None
    state: RuntimeState | None

    @property
    def healthy(self) -> bool:
        return self.alive and self.rate_ok and self.valid


@dataclass(frozen=True)
class AdviceEvent:
    advice: ActionAdvice
    missed_before: int
    latency_ms: float  # publish -> receipt on this host's wall clock
    # Under the client's min_confidence (or without a confidence while a minimum is set): for
    # display, not for acting on.
    advisory: bool = False


@dataclass
class ClientCounters:
    advice: int = 0
    status: int = 0
    expired: int = 0
    lost: int = 0
    advisory: int = 0


@dataclass
class _Heartbeats:
    arrivals_ns: deque[int] = field(default_factory=lambda: deque(maxlen=8))
    last: Status | None = None


class PlannerClient:
    def __init__(
        self,
        endpoint: str,
        *,
        context: zmq.Context | None = None,
        max_message_bytes: int = 65_536,
        curve_keys: CurveKeys | None = None,
        curve_server_public: bytes | None = None,
        min_confidence: float | None = None,
    ):
        if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be within [0, 1], got {min_confidence}")
        self.min_confidence = min_confidence
        self._sub = Subscriber(
            endpoint,
            [TOPIC_ADVICE, TOPIC_STATUS],
            context=context,
            max_message_bytes=max_message_bytes,
            curve_keys=curve_keys,
            curve_server_public=curve_server_public,
        )
        self.counters = ClientCounters()
        self._heartbeats = _Heartbeats()

    @property
    def rejected(self) -> dict[str, int]:
        return dict(self._sub.rejected)

    @property
    def last_status(self) -> Status | None:
        return self._heartbeats.last

    def next_advice(self, timeout_ms: float) -> AdviceEvent | None:
        """Wait for the next valid, unexpired advice; status messages are absorbed on the way."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            remaining_ms = max(0.0, (deadline - time.monotonic()) * 1000.0)
            got = self._sub.receive(remaining_ms)
            if got is None:
                return None
            self.counters.lost += got.missed_before
            if got.topic == TOPIC_STATUS:
                self._on_status(cast(Status, got.message))
                continue
            advice = cast(ActionAdvice, got.message)  # the subscriber validated it against its topic
            now_wall = time.time_ns()
            if advice.valid_until_wall_ns < now_wall:
                # Stale advice is worse than none: the planner must not act on it.
                self.counters.expired += 1
                continue
            self.counters.advice += 1
            advisory = self.is_advisory(advice)
            self.counters.advisory += advisory
            return AdviceEvent(advice, got.missed_before, (now_wall - advice.wall_ns) / 1e6, advisory)

    def is_advisory(self, advice: ActionAdvice) -> bool:
        """Advice with an action whose confidence is under min_confidence (or missing: a version 1
        runtime sends none) is advisory only."""
        if self.min_confidence is None or advice.advice is None:
            return False
        return advice.confidence is None or advice.confidence < self.min_confidence

    def _on_status(self, status: Status) -> None:
        self.counters.status += 1
        self._heartbeats.last = status
        self._heartbeats.arrivals_ns.append(time.monotonic_ns())

    def liveness(self) -> Liveness:
        beats = self._heartbeats
        status = beats.last
        if status is None:
            return Liveness(False, False, False, None, None)
        now = time.monotonic_ns()
        interval_ns = status.heartbeat_interval_ms * 1_000_000
        age_ns = now - beats.arrivals_ns[-1]
        alive = age_ns <= MISSED_HEARTBEATS_DEAD * interval_ns
        if len(beats.arrivals_ns) >= 2:
            spans = [b - a for a, b in zip(beats.arrivals_ns, list(beats.arrivals_ns)[1:], strict=False)]
            mean_span = sum(spans) / len(spans)
            rate_ok = interval_ns / RATE_TOLERANCE <= mean_span <= interval_ns * RATE_TOLERANCE
        else:
            rate_ok = False  # one heartbeat says nothing about the rate yet
        valid = status.state in HEALTHY_STATES
        return Liveness(alive, rate_ok and alive, valid, age_ns / 1e6, status.state)

    def close(self) -> None:
        self._sub.close()

    def __enter__(self) -> PlannerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_advice_line(event: AdviceEvent) -> str:
    """One human-readable line per advice, as `edge listen` prints it."""
    a = event.advice
    frames = f"{a.frames[0].frame_id}..{a.frames[-1].frame_id}" if a.frames else "-"
    total = f"{a.stages.total_ms:.0f}ms" if a.stages.total_ms is not None else "-"
    if a.advice is None:
        what = f"no advice ({a.verdict_reason})"
    else:
        d = a.advice
        what = f"{d.action.value}({d.urgency.value})"
        if a.confidence is not None:
            what += f" conf={a.confidence:.2f}"
        if d.lateral is not None:
            what += f" +{d.lateral.value}"
        if d.hazards:
            what += " hazards=" + ",".join(h.value for h in d.hazards)
        if d.rationale:
            what += f' "{d.rationale}"'
    gap = f" [missed {event.missed_before}]" if event.missed_before else ""
    advisory = " [advisory]" if event.advisory else ""
    return (
        f"#{a.seq} {a.verdict.value:<9} {what}{advisory} nav={a.nav_id or '-'} frames={frames} total={total}{gap}"
    )
