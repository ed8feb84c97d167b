"""The ``emergency_vehicle`` event: it comes down the oncoming lane; the ego pulls over."""

from __future__ import annotations

import math

from sim.events.common import PRIORITY, A, H, U
from sim.scenario import EmergencyVehicleSpec
from sim.world import Actor, Behaviour, EgoState, Situation, stop_accel


class EmergencyVehicle(Behaviour[EmergencyVehicleSpec]):
    """Lights flashing, it comes down the oncoming lane; the ego pulls onto the shoulder and
    stops until it has passed, then rejoins its lane."""

    def arm(self, ego: EgoState) -> None:
        super().arm(ego)
        self.e0 = ego.s + self.spec.distance_m * self.jitter
        self.s_stop = ego.s + max(25.0, ego.v * ego.v / (2 * 2.2))
        self.b = max(ego.v * ego.v / (2 * (self.s_stop - ego.s)), 1.0)
        self.lane = ego.lane

    def e_s(self, t: float) -> float:
        return self.e0 - self.spec.speed_mps * (t - self.at_s)

    def passed(self, ego: EgoState) -> bool:
        """Once it has left the side of the frame: a label must not point at nothing."""
        lateral = abs(ego.x_lat - self.layout.oncoming_lane_center(0))
        return self.e_s(ego.t) - 3.0 - ego.s < lateral / 0.62

    def accel(self, ego: EgoState) -> float | None:
        if self.active(ego) and not self.passed(ego):
            return stop_accel(ego.v, self.s_stop - ego.s, self.b)
        return None

    def lateral_target(self, ego: EgoState) -> float | None:
        if self.active(ego) and not self.passed(ego):
            return self.layout.shoulder_center
        return None

    def actors(self, ego: EgoState) -> list[Actor]:
        if not self.active(ego) or self.e_s(ego.t) < ego.s - 15:
            return []
        x = self.layout.oncoming_lane_center(0)
        flash = int((ego.t - self.at_s) * 5) % 2
        return [Actor("emergency", x, self.e_s(ego.t), math.pi, (245, 245, 245), {"flash": flash}, H.VEHICLE)]

    def situation(self, ego: EgoState) -> Situation | None:
        if not self.active(ego):
            return None
        p = PRIORITY["emergency_vehicle"]
        if not self.passed(ego):
            return Situation(p, (A.PULL_OVER, A.STOP, A.DECELERATE, A.YIELD), (H.VEHICLE,), U.HIGH,
                             "emergency vehicle approaching, pull over", "emergency_vehicle")
        if abs(ego.x_lat - self.layout.lane_center(ego.lane)) > 0.4:
            return Situation(p, (A.ACCELERATE, A.CHANGE_LANE_LEFT, A.NUDGE_LEFT, A.KEEP_SPEED), (), U.LOW,
                             "emergency vehicle passed, rejoin the lane", "emergency_vehicle")
        return None
