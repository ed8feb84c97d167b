"""What the ``cyclist`` and ``obstacle`` events share: something on one edge of the ego lane that
the ego passes with a nudge."""

from __future__ import annotations

from typing import TypeVar

from sim.events.common import side_sign
from sim.scenario import CyclistSpec, ObstacleSpec
from sim.world import Behaviour, EgoState, track

# The spec kinds of something passed on the side: both have ``side`` and ``distance_m``.
PassSpecT = TypeVar("PassSpecT", CyclistSpec, ObstacleSpec)


class PassSideObject(Behaviour[PassSpecT]):
    """Something on one edge of the ego lane that the ego passes with a nudge the other way."""

    NUDGE_M = 1.1
    PASS_SPEED = 8.5
    MIN_GAP = 2.5  # closer than this the object has left the frame: no label, no more slowing

    def arm(self, ego: EgoState) -> None:
        super().arm(ego)
        self.lane = ego.lane
        self.sgn = side_sign(self.spec.side)
        self.s0 = ego.s + self.spec.distance_m * self.jitter

    def object_s(self, t: float) -> float:
        return self.s0

    def zone(self, ego: EgoState) -> float:
        return self.object_s(ego.t) - ego.s

    def accel(self, ego: EgoState) -> float | None:
        if self.active(ego) and self.MIN_GAP < self.zone(ego) < 45:
            return track(ego.v, min(self.PASS_SPEED, self.ctx.cruise_mps(ego.t)), gain=1.0)
        return None

    def lateral_target(self, ego: EgoState) -> float | None:
        if self.active(ego) and -6 < self.zone(ego) < 45:
            return self.layout.lane_center(self.lane) - self.sgn * self.NUDGE_M
        return None
