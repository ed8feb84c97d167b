"""The ``obstacle`` event: a stalled car sticks into the lane; the ego nudges away."""

from __future__ import annotations

from sim.events.common import (
    CAR_COLOURS,
    CAR_LENGTH,
    CAR_WIDTH,
    PRIORITY,
    A,
    H,
    U,
    change_action,
    nudge_action,
)
from sim.events.pass_side import PassSideObject
from sim.scenario import LANE_WIDTH_M, ObstacleSpec
from sim.world import Actor, EgoState, Situation


class Obstacle(PassSideObject[ObstacleSpec]):
    NUDGE_M = 1.3
    PROTRUDE_M = 1.0
    MIN_GAP = 0.5  # its long body stays in the frame until the ego is alongside

    def arm(self, ego: EgoState) -> None:
        super().arm(ego)
        self.colour = CAR_COLOURS[int(self.rng.integers(len(CAR_COLOURS)))]

    def zone(self, ego: EgoState) -> float:
        return self.s0 - CAR_LENGTH / 2 - ego.s

    def actors(self, ego: EgoState) -> list[Actor]:
        if not self.armed:
            return []
        edge = self.layout.lane_center(self.lane) + self.sgn * LANE_WIDTH_M / 2
        x = edge - self.sgn * self.PROTRUDE_M + self.sgn * CAR_WIDTH / 2
        return [Actor("car", x, self.s0, 0.0, self.colour, {"hazard_lights": True, "brake": False}, H.VEHICLE)]

    def situation(self, ego: EgoState) -> Situation | None:
        gap = self.zone(ego)
        if not self.active(ego) or not self.MIN_GAP < gap < 50:
            return None
        away = -self.sgn
        return Situation(PRIORITY["obstacle"], (nudge_action(away), A.DECELERATE, change_action(away)), (H.VEHICLE,),
                         U.HIGH if gap < 10 else U.MEDIUM, f"stalled car sticking into the lane on the {self.spec.side}",
                         "obstacle")
