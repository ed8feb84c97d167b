"""The ``lead_brake`` event: the lead car brakes, stands and drives off; the ego follows."""

from __future__ import annotations

import numpy as np

from sim.events.common import CAR_COLOURS, CAR_LENGTH, PRIORITY, A, H, U
from sim.scenario import LeadBrakeSpec
from sim.world import Actor, Behaviour, DriveContext, EgoState, Situation, follow_speed, track


class LeadBrake(Behaviour[LeadBrakeSpec]):
    """The lead car follows at a constant gap until ``at_s``; then brakes, stands ``hold_s``
    and drives off. The ego follows with Gipps' safe speed."""

    B_EGO = 3.0

    def __init__(
        self, spec: LeadBrakeSpec, ctx: DriveContext, jitter: float, rng: np.random.Generator | None = None
    ) -> None:
        super().__init__(spec, ctx, jitter, rng)
        self.gap = spec.gap_m * jitter
        self.lane = ctx.lane
        self.colour = CAR_COLOURS[int(self.rng.integers(len(CAR_COLOURS)))]

    def arm(self, ego: EgoState) -> None:
        super().arm(ego)
        d = self.spec.decel_mps2
        self.s0, self.v0 = ego.s + self.gap, ego.v
        self.t_stop = self.at_s + self.v0 / d
        self.s_stop = self.s0 + self.v0 * self.v0 / (2 * d)
        self.t_go = self.t_stop + self.spec.hold_s
        self.v_resume = max(self.v0, 8.0)

    def lead(self, t: float, ego_s: float) -> tuple[float, float, bool]:
        """(rear bumper s, speed, brake lights on)."""
        if not self.armed or t < self.at_s:
            return ego_s + self.gap, -1.0, False
        d = self.spec.decel_mps2
        if t < self.t_stop:
            tt = t - self.at_s
            return self.s0 + self.v0 * tt - d * tt * tt / 2, self.v0 - d * tt, True
        if t < self.t_go:
            return self.s_stop, 0.0, True
        tg, acc = t - self.t_go, 2.0
        t_acc = self.v_resume / acc
        if tg < t_acc:
            return self.s_stop + acc * tg * tg / 2, acc * tg, False
        return self.s_stop + self.v_resume * t_acc / 2 + self.v_resume * (tg - t_acc), self.v_resume, False

    def accel(self, ego: EgoState) -> float | None:
        if not self.active(ego):
            return None
        s, v, braking = self.lead(ego.t, ego.s)
        b_lead = self.spec.decel_mps2 if braking else 3.0
        return track(ego.v, follow_speed(s - ego.s, v, self.B_EGO, b_lead))

    def actors(self, ego: EgoState) -> list[Actor]:
        s, _, braking = self.lead(ego.t, ego.s)
        if s - ego.s > 150:
            return []
        x = self.layout.lane_center(self.lane)
        return [Actor("car", x, s + CAR_LENGTH / 2, 0.0, self.colour, {"brake": braking}, H.VEHICLE)]

    def situation(self, ego: EgoState) -> Situation | None:
        if not self.active(ego) or ego.t >= self.t_go:
            return None
        s, v, _ = self.lead(ego.t, ego.s)
        gap = s - ego.s
        if ego.v > 0.5:
            closing = ego.v - max(v, 0.0)
            urgent = gap < 12 or (closing > 0.1 and gap / closing < 3.0)
            return Situation(
                PRIORITY["lead_brake"], (A.DECELERATE, A.STOP), (H.VEHICLE,), U.HIGH if urgent else U.MEDIUM,
                "lead car braking ahead", "lead_brake", A.KEEP_LANE,
            )
        return Situation(
            PRIORITY["lead_brake"], (A.STOP, A.DECELERATE), (H.VEHICLE,), U.MEDIUM,
            "stopped behind the lead car", "lead_brake", A.KEEP_LANE,
        )
