"""Process replay: a recorded drive's frames and navigation through the loop again, in lock-step.

Each recorded advice message names its clip (frame ids and capture times); the replay rebuilds
that clip from the logged frames, delivers the navigation messages the runtime had received by
the cycle's start (at their recorded monotonic times), sets the degrade level the cycle ran at,
and runs the real loop on a simulated clock that stands still while the model computes. The new
advice is compared with the recorded one cycle by cycle. With the bundle that recorded the log
and lossless frames (record.image_format = "png") the advice is identical; JPEG frames are what
the loop saw after lossy compression, so a few borderline cycles may differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.capture import Clip
from edge.config import RuntimeConfig
from edge.drivelog.reader import DriveLog
from edge.feeds import FeedHealth, SimClock
from edge.loop import AdviceLoop, CycleOutcome
from edge.messages import ActionAdvice
from edge.runtime import ModelParts, running_loop


class NoFeed:
    """The replay hands clips to the loop itself; the loop's feed only reports that it is fine."""

    def next_clip(self, after_seq: int, timeout_s: float, skip: int = 1) -> None:
        return None

    def health(self) -> FeedHealth:
        return FeedHealth("ok", "", 0.0)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class ComparedCycle:
    recorded: ActionAdvice
    replayed: ActionAdvice | None  # None: skipped (see reason)
    reason: str = ""

    @property
    def same_advice(self) -> bool:
        return self.replayed is not None and self.replayed.advice == self.recorded.advice

    def as_dict(self) -> dict[str, object]:
        def advice(a: ActionAdvice | None):
            return None if a is None or a.advice is None else a.advice.model_dump(mode="json")

        return {
            "cycle": self.recorded.cycle, "seq": self.recorded.seq,
            "frame_ids": [f.frame_id for f in self.recorded.frames],
            "recorded": advice(self.recorded), "replayed": advice(self.replayed),
            "recorded_verdict": self.recorded.verdict.value,
            "replayed_verdict": self.replayed.verdict.value if self.replayed else None,
            "reason": self.reason,
        }


@dataclass
class ReplayComparison:
    cycles: list[ComparedCycle] = field(default_factory=list)
    wall_s: float = 0.0
    bundle_sha256: str = ""

    @property
    def replayed(self) -> list[ComparedCycle]:
        return [c for c in self.cycles if c.replayed is not None]

    @property
    def changed(self) -> list[ComparedCycle]:
        return [c for c in self.replayed if not c.same_advice]

    @property
    def skipped(self) -> list[ComparedCycle]:
        return [c for c in self.cycles if c.replayed is None]

    @property
    def agreement(self) -> float | None:
        replayed = self.replayed
        return None if not replayed else 1 - len(self.changed) / len(replayed)

    @property
    def agreement_in_time(self) -> float | None:
        """Agreement over the cycles recorded within their deadline (verdict ok or degraded). A
        recorded late or no_advice cycle was cut by the clock; replay has no deadline and finishes it."""
        in_time = [c for c in self.replayed if c.recorded.verdict.value in ("ok", "degraded")]
        return None if not in_time else sum(c.same_advice for c in in_time) / len(in_time)

    @property
    def action_agreement(self) -> float | None:
        """Same action, over the cycles where both the recording and the replay carry advice."""
        pairs = [(c.recorded.advice, c.replayed.advice) for c in self.replayed if c.replayed is not None]
        both = [(a, b) for a, b in pairs if a is not None and b is not None]
        return None if not both else sum(a.action == b.action for a, b in both) / len(both)


def cycle_start_ns(advice: ActionAdvice) -> int:
    """When the recorded cycle started on the runtime's monotonic clock: newest frame + its age."""
    newest = advice.frames[-1].capture_mono_ns
    return newest + round((advice.stages.capture_age_ms or 0.0) * 1e6)


def _clip(log: DriveLog, advice: ActionAdvice, seq: int) -> Clip:
    frames = advice.frames
    return Clip(
        frames=tuple(log.image(f.frame_id) for f in frames),
        frame_ids=tuple(f.frame_id for f in frames),
        t_mono_ns=tuple(f.capture_mono_ns for f in frames),
        t_wall_ns=tuple(f.capture_wall_ns for f in frames),
        seq=seq,
    )


def replay_log(
    log: DriveLog,
    config: RuntimeConfig,
    models: ModelParts | None = None,
    on_cycle: Callable[[ComparedCycle], None] | None = None,
) -> ReplayComparison:
    clock = SimClock()
    result = ReplayComparison()
    started = time.monotonic()
    with running_loop(config, models=models, feed=NoFeed(), clock=clock, enforce_deadlines=False) as loop:
        result.bundle_sha256 = loop.bundle_sha256
        pending_nav = list(log.nav)
        for index, recorded in enumerate(log.advice):
            compared = _replay_cycle(loop, log, recorded, index + 1, clock, pending_nav)
            result.cycles.append(compared)
            if on_cycle is not None:
                on_cycle(compared)
    result.wall_s = time.monotonic() - started
    return result


def _replay_cycle(loop: AdviceLoop, log: DriveLog, recorded: ActionAdvice, seq: int, clock: SimClock,
                  pending_nav: list) -> ComparedCycle:
    if not recorded.frames:
        return ComparedCycle(recorded, None, "the recorded advice names no frames")
    missing = [f.frame_id for f in recorded.frames if f.frame_id not in log.frames]
    if missing:
        return ComparedCycle(recorded, None, f"frames {missing} are not in the log")
    start = cycle_start_ns(recorded)
    while pending_nav and pending_nav[0][0] <= start:
        mono, nav = pending_nav.pop(0)
        clock.advance_to(mono)
        loop.offer_nav(nav)
    clock.advance_to(start)
    loop.replayed_degrade_level = recorded.degrade_level  # the policy the cycle ran under is part of its input
    outcome: CycleOutcome = loop.run_cycle(_clip(log, recorded, seq))
    return ComparedCycle(recorded, outcome.advice)
