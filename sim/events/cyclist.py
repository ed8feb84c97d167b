"""The ``cyclist`` event: a cyclist rides along the lane edge; the ego nudges away to pass."""

from __future__ import annotations

import numpy as np

from sim.events.common import CLOTHES, PRIORITY, A, H, U, change_action, nudge_action
from sim.events.pass_side import PassSideObject
from sim.scenario import LANE_WIDTH_M, CyclistSpec
from sim.world import Actor, DriveContext, EgoState, Situation


class Cyclist(PassSideObject[CyclistSpec]):
    def __init__(
        self, spec: CyclistSpec, ctx: DriveContext, jitter: float, rng: np.random.Generator | None = None
    ) -> None:
        super().__init__(spec, ctx, jitter, rng)
        self.colour = CLOTHES[int(self.rng.integers(len(CLOTHES)))]

    def object_s(self, t: float) -> float:
        return self.s0 + self.spec.speed_mps * (t - self.at_s)

    def actors(self, ego: EgoState) -> list[Actor]:
        if not self.active(ego) or self.zone(ego) < -10:
            return []
        x = self.layout.lane_center(self.lane) + self.sgn * (LANE_WIDTH_M / 2 - 0.6)
        pedal = self.spec.speed_mps * (ego.t - self.at_s) / 2.0
        return [Actor("cyclist", x, self.object_s(ego.t), 0.0, self.colour, {"pedal": pedal}, H.CYCLIST)]

    def situation(self, ego: EgoState) -> Situation | None:
        gap = self.zone(ego)
        if not self.active(ego) or not self.MIN_GAP < gap < 50:
            return None
        away = -self.sgn
        return Situation(PRIORITY["cyclist"], (nudge_action(away), A.DECELERATE, change_action(away)), (H.CYCLIST,),
                         U.HIGH if gap < 8 else U.MEDIUM, f"cyclist on the {self.spec.side} edge of the lane", "cyclist")
