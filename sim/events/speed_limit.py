"""The ``speed_limit`` event: a speed sign; the ego adopts the new cruise speed."""

from __future__ import annotations

import numpy as np

from sim.events.common import PRIORITY, A, U
from sim.scenario import SpeedLimitSpec
from sim.world import Actor, Behaviour, DriveContext, EgoState, Situation


class SpeedLimit(Behaviour[SpeedLimitSpec]):
    """A speed sign; from ``at_s`` the ego cruises at the new speed. A raised limit shows an
    end-of-limit sign (white disc, black stripes), a lowered one a red ring: two shapes a small
    model can tell apart without reading digits."""

    def __init__(
        self, spec: SpeedLimitSpec, ctx: DriveContext, jitter: float, rng: np.random.Generator | None = None
    ) -> None:
        super().__init__(spec, ctx, jitter, rng)
        ctx.speed_limit_times.append(self.at_s)

    def current(self, t: float) -> bool:
        """Whether this sign is the latest one passed: a newer sign supersedes it."""
        return not any(self.at_s < other <= t for other in self.ctx.speed_limit_times)

    def arm(self, ego: EgoState) -> None:
        super().arm(ego)
        self.z = ego.s + self.spec.distance_m * self.jitter
        self.old = self.ctx.cruise_mps(ego.t)
        self.new = self.spec.speed_kmh / 3.6
        self.raised = self.new > self.old
        self.ctx.cruise_override_mps = self.new

    def actors(self, ego: EgoState) -> list[Actor]:
        if not self.armed:
            return []
        return [Actor("sign_speed", self.layout.kerb_right + 0.8, self.z, 0.0, (255, 255, 255),
                      {"kmh": int(self.spec.speed_kmh), "end": self.raised}, None)]

    def situation(self, ego: EgoState) -> Situation | None:
        if not self.active(ego) or not self.current(ego.t) or abs(ego.v - self.new) < 0.8:
            return None
        p = PRIORITY["speed_limit"]
        if ego.v < self.new:
            return Situation(p, (A.ACCELERATE, A.KEEP_SPEED), (), U.LOW, "speed limit raised", "speed_limit",
                             A.KEEP_LANE)
        return Situation(p, (A.DECELERATE, A.KEEP_SPEED), (), U.LOW, "lower speed limit ahead", "speed_limit",
                         A.KEEP_LANE)
