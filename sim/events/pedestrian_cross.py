"""The ``pedestrian_cross`` event: a pedestrian crosses on a zebra; the ego waits."""

from __future__ import annotations

import math

import numpy as np

from sim.events.common import CLOTHES, PRIORITY, A, H, U, lane_edges, required_decel, side_sign
from sim.scenario import PedestrianCrossSpec
from sim.world import Actor, Behaviour, DriveContext, EgoState, Marking, Situation, stop_accel


class PedestrianCross(Behaviour[PedestrianCrossSpec]):
    """A pedestrian walks from the kerb across the road on a zebra; the ego stops until the
    pedestrian has left its lane."""

    def __init__(
        self, spec: PedestrianCrossSpec, ctx: DriveContext, jitter: float, rng: np.random.Generator | None = None
    ) -> None:
        super().__init__(spec, ctx, jitter, rng)
        self.colour = CLOTHES[int(self.rng.integers(len(CLOTHES)))]

    def arm(self, ego: EgoState) -> None:
        super().arm(ego)
        L = self.layout
        self.z = ego.s + self.spec.distance_m * self.jitter
        sgn = side_sign(self.spec.side)
        self.dir = -sgn  # walking direction in x
        self.x_start = (L.kerb_right + 1.2) if sgn > 0 else (L.kerb_left - 1.2)
        x_end = (L.kerb_left - 1.5) if sgn > 0 else (L.kerb_right + 1.5)
        left, right = lane_edges(ego.lane)
        clear_x = left - 0.8 if sgn > 0 else right + 0.8
        speed = self.spec.speed_mps
        self.t_clear = self.at_s + abs(clear_x - self.x_start) / speed
        self.t_gone = self.at_s + abs(x_end - self.x_start) / speed
        self.z_stop = self.z - 2.0 - 2.5
        self.b = required_decel(ego.v, self.z_stop - ego.s, "zebra crossing", self.at_s)

    def x_at(self, t: float) -> float:
        return self.x_start + self.dir * self.spec.speed_mps * (t - self.at_s)

    def accel(self, ego: EgoState) -> float | None:
        if self.active(ego) and ego.t < self.t_clear:
            return stop_accel(ego.v, self.z_stop - ego.s, self.b)
        return None

    def actors(self, ego: EgoState) -> list[Actor]:
        if not self.active(ego) or ego.t >= self.t_gone:
            return []
        walked = self.spec.speed_mps * (ego.t - self.at_s)
        return [Actor("pedestrian", self.x_at(ego.t), self.z, self.dir * math.pi / 2, self.colour,
                      {"stride": walked / 0.7}, H.PEDESTRIAN)]

    def markings(self) -> list[Marking]:
        return [Marking("zebra", self.z, self.layout.kerb_left, self.layout.kerb_right)] if self.armed else []

    def situation(self, ego: EgoState) -> Situation | None:
        if not self.active(ego) or ego.t >= self.t_clear:
            return None
        p = PRIORITY["pedestrian_cross"]
        if ego.v > 0.5:
            urgency = U.HIGH if self.z - ego.s < 20 else U.MEDIUM
            return Situation(p, (A.STOP, A.YIELD, A.DECELERATE), (H.PEDESTRIAN,), urgency,
                             "pedestrian crossing ahead", "pedestrian_cross", A.KEEP_LANE)
        return Situation(p, (A.STOP, A.YIELD), (H.PEDESTRIAN,), U.MEDIUM, "waiting for the crossing pedestrian",
                         "pedestrian_cross", A.KEEP_LANE)
