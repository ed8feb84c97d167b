"""The ``cross_traffic`` event: a car crosses at a yield junction; the ego gives way."""

from __future__ import annotations

import math

import numpy as np

from sim.events.common import (
    CAR_COLOURS,
    CAR_LENGTH,
    PRIORITY,
    A,
    H,
    U,
    lane_edges,
    required_decel,
    side_sign,
)
from sim.scenario import CrossTrafficSpec
from sim.world import Actor, Behaviour, DriveContext, EgoState, Junction, Marking, Situation, stop_accel


class CrossTraffic(Behaviour[CrossTrafficSpec]):
    """A yield junction; a car crosses from ``side`` and the ego gives way."""

    def __init__(
        self, spec: CrossTrafficSpec, ctx: DriveContext, jitter: float, rng: np.random.Generator | None = None
    ) -> None:
        super().__init__(spec, ctx, jitter, rng)
        self.colour = CAR_COLOURS[int(self.rng.integers(len(CAR_COLOURS)))]

    def arm(self, ego: EgoState) -> None:
        super().arm(ego)
        L = self.layout
        self.z_j = ego.s + self.spec.distance_m * self.jitter
        sgn = side_sign(self.spec.side)
        self.dir = -sgn
        self.car_z = self.z_j + 1.75 if sgn > 0 else self.z_j - 1.75
        self.x_start = (L.kerb_right + 16.0) if sgn > 0 else (L.kerb_left - 16.0)
        self.z_yield = self.z_j - Junction(self.z_j).half_width - 1.0
        self.z_stop = self.z_yield - 1.0
        self.b = required_decel(ego.v, self.z_stop - ego.s, "yield line", self.at_s)
        left, right = lane_edges(ego.lane)
        self.clear_x = left - 1.0 - CAR_LENGTH / 2 if self.dir < 0 else right + 1.0 + CAR_LENGTH / 2

    def car_x(self, t: float) -> float:
        return self.x_start + self.dir * self.spec.speed_mps * (t - self.at_s)

    def cleared(self, t: float) -> bool:
        x = self.car_x(t)
        return x < self.clear_x if self.dir < 0 else x > self.clear_x

    def accel(self, ego: EgoState) -> float | None:
        if self.active(ego) and not self.cleared(ego.t):
            return stop_accel(ego.v, self.z_stop - ego.s, self.b)
        return None

    def actors(self, ego: EgoState) -> list[Actor]:
        if not self.armed:
            return []
        L = self.layout
        out = [Actor("sign_yield", L.kerb_right + 0.8, self.z_yield - 1.0, 0.0, (255, 255, 255), {}, H.JUNCTION)]
        if self.active(ego) and abs(self.car_x(ego.t)) < 120:
            out.append(Actor("car", self.car_x(ego.t), self.car_z, self.dir * math.pi / 2, self.colour,
                             {"brake": False}, H.VEHICLE))
        return out

    def junctions(self) -> list[Junction]:
        return [Junction(self.z_j)] if self.armed else []

    def markings(self) -> list[Marking]:
        return [Marking("yield_line", self.z_yield, 0.0, self.layout.right_edge)] if self.armed else []

    def situation(self, ego: EgoState) -> Situation | None:
        if not self.active(ego) or self.cleared(ego.t):
            return None
        p = PRIORITY["cross_traffic"]
        if ego.v > 0.5:
            urgency = U.HIGH if self.z_stop - ego.s < 12 else U.MEDIUM
            return Situation(p, (A.YIELD, A.DECELERATE, A.STOP), (H.VEHICLE, H.JUNCTION), urgency,
                             "give way to the crossing car", "cross_traffic", A.KEEP_LANE)
        return Situation(p, (A.YIELD, A.STOP), (H.VEHICLE, H.JUNCTION), U.MEDIUM,
                         "waiting for the crossing car", "cross_traffic", A.KEEP_LANE)
