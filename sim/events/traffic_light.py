"""The ``traffic_light`` event: a signal that turns yellow and red; the ego stops at the line."""

from __future__ import annotations

from sim.events.common import PRIORITY, A, H, U, required_decel
from sim.scenario import TrafficLightSpec
from sim.world import Actor, Behaviour, EgoState, Junction, Marking, Situation, stop_accel


class TrafficLight(Behaviour[TrafficLightSpec]):
    """A signal beyond a junction: green, then yellow at ``at_s``, red, and green again."""

    def arm(self, ego: EgoState) -> None:
        super().arm(ego)
        self.z_stop = ego.s + self.spec.distance_m * self.jitter
        self.lane = ego.lane
        self.t_red = self.at_s + self.spec.yellow_s
        self.t_green = self.t_red + self.spec.red_s
        self.b = required_decel(ego.v, self.z_stop - 1.0 - ego.s, "stop line", self.at_s)

    def phase(self, t: float) -> str:
        if not self.armed or t < self.at_s or t >= self.t_green:
            return "green"
        return "yellow" if t < self.t_red else "red"

    def accel(self, ego: EgoState) -> float | None:
        if self.active(ego) and ego.t < self.t_green and ego.s < self.z_stop + 3.0:
            return stop_accel(ego.v, self.z_stop - 1.0 - ego.s, self.b)
        return None

    def actors(self, ego: EgoState) -> list[Actor]:
        if not self.armed:
            return []
        phase = self.phase(ego.t)
        hazard = {"red": H.RED_LIGHT, "yellow": H.YELLOW_LIGHT}.get(phase)
        x = self.layout.lane_center(self.lane)
        return [
            Actor("traffic_light", x, self.z_stop + 18.0, 0.0, (40, 40, 40),
                  {"phase": phase, "height": 4.6, "pole_x": self.layout.kerb_right + 0.6}, hazard)
        ]

    def junctions(self) -> list[Junction]:
        return [Junction(self.z_stop + 7.5)] if self.armed else []

    def markings(self) -> list[Marking]:
        return [Marking("stop_line", self.z_stop, 0.0, self.layout.right_edge)] if self.armed else []

    def situation(self, ego: EgoState) -> Situation | None:
        if not self.active(ego):
            return None
        p = PRIORITY["traffic_light"]
        phase = self.phase(ego.t)
        before_line = ego.s < self.z_stop + 0.5
        if phase == "yellow" and before_line:
            return Situation(p, (A.DECELERATE, A.STOP), (H.YELLOW_LIGHT,), U.MEDIUM,
                             "traffic light turning yellow ahead", "traffic_light", A.KEEP_LANE)
        if phase == "red" and before_line:
            if ego.v > 0.5:
                dist = self.z_stop - ego.s
                return Situation(p, (A.STOP, A.DECELERATE), (H.RED_LIGHT,), U.HIGH if dist < 15 else U.MEDIUM,
                                 "red light ahead", "traffic_light", A.KEEP_LANE)
            return Situation(p, (A.STOP,), (H.RED_LIGHT,), U.MEDIUM, "waiting at the red light", "traffic_light",
                             A.KEEP_LANE)
        if ego.t >= self.t_green and ego.a > 0.4 and ego.s < self.z_stop + 40:
            return Situation(p, (A.ACCELERATE, A.KEEP_SPEED), (), U.LOW, "light turned green, moving off",
                             "traffic_light", A.KEEP_LANE)
        return None
