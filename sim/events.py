"""What each scenario event does: the actors it puts in the world, how the ego reacts, and the
situation (the label) it creates. See ``sim.world`` for the two-pass contract.

Labels are written from the point of view of a careful driver who sees the frame: a hazard is
labelled from the moment it is visible and relevant, and the ego's own motion follows the
label, so a clip shows both the cue and the reaction.
"""

from __future__ import annotations

import math
from typing import Any

from edge.messages import Hazard, Maneuver, MetaAction, Urgency
from sim.geometry import quarter_turn, ramp_offset, ramp_slope
from sim.scenario import LANE_WIDTH_M, ScenarioError
from sim.world import (
    Actor,
    Behaviour,
    DriveContext,
    EgoState,
    Junction,
    Marking,
    Ramp,
    Situation,
    follow_speed,
    stop_accel,
    track,
)

A = MetaAction
H = Hazard
U = Urgency

MAX_COMFORT_DECEL = 6.5  # m/s^2: a scenario that needs more is a scenario error
CAR_LENGTH = 4.5
CAR_WIDTH = 1.8
PRIORITY = {
    "pedestrian_cross": 0,
    "emergency_vehicle": 1,
    "traffic_light": 2,
    "lead_brake": 3,
    "cross_traffic": 4,
    "obstacle": 5,
    "cyclist": 6,
    "cones": 7,
    "nav": 8,
    "speed_limit": 9,
}
GENERIC_PRIORITY = 100

CAR_COLOURS = [
    (40, 40, 170),  # BGR: red
    (160, 90, 30),  # blue
    (200, 200, 200),  # silver
    (30, 30, 30),  # black
    (235, 235, 235),  # white
    (40, 120, 40),  # green
    (30, 150, 210),  # orange-ish
]
CLOTHES = [(40, 40, 200), (200, 60, 40), (30, 200, 230), (180, 40, 160), (40, 160, 40), (0, 120, 255)]


def side_sign(side: str) -> int:
    return 1 if side == "right" else -1


def lane_edges(lane: int) -> tuple[float, float]:
    return lane * LANE_WIDTH_M, (lane + 1) * LANE_WIDTH_M


def nudge_action(away: int) -> MetaAction:
    return A.NUDGE_RIGHT if away > 0 else A.NUDGE_LEFT


def change_action(direction: int) -> MetaAction:
    return A.CHANGE_LANE_RIGHT if direction > 0 else A.CHANGE_LANE_LEFT


def turn_action(direction: int) -> MetaAction:
    return A.TURN_RIGHT if direction > 0 else A.TURN_LEFT


def word(direction: int) -> str:
    return "right" if direction > 0 else "left"


def required_decel(v: float, distance: float, what: str, at_s: float) -> float:
    if distance <= 0.5:
        raise ScenarioError(f"event at {at_s} s: the ego is already at or past the {what}; increase distance_m")
    b = v * v / (2 * distance)
    if b > MAX_COMFORT_DECEL:
        raise ScenarioError(
            f"event at {at_s} s: stopping for the {what} {distance:.0f} m ahead at {v * 3.6:.0f} km/h needs "
            f"{b:.1f} m/s^2 (more than {MAX_COMFORT_DECEL}); increase distance_m or lower the speed"
        )
    return max(b, 1.0)


class LeadBrake(Behaviour):
    """The lead car follows at a constant gap until ``at_s``; then brakes, stands ``hold_s``
    and drives off. The ego follows with Gipps' safe speed."""

    B_EGO = 3.0

    def __init__(self, spec: Any, ctx: DriveContext, jitter: float, rng: Any = None) -> None:
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


class TrafficLight(Behaviour):
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


class PedestrianCross(Behaviour):
    """A pedestrian walks from the kerb across the road on a zebra; the ego stops until the
    pedestrian has left its lane."""

    def __init__(self, spec: Any, ctx: DriveContext, jitter: float, rng: Any = None) -> None:
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


class _PassSideObject(Behaviour):
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


class Cyclist(_PassSideObject):
    def __init__(self, spec: Any, ctx: DriveContext, jitter: float, rng: Any = None) -> None:
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


class Obstacle(_PassSideObject):
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


class Cones(Behaviour):
    """A taper of cones and an arrow board closing one lane for ``length_m``."""

    SPACING = 6.0
    TAPER = 18.0

    def arm(self, ego: EgoState) -> None:
        super().arm(ego)
        spec = self.spec
        self.s0 = ego.s + spec.distance_m * self.jitter
        if spec.closes == "ego":
            self.closed = ego.lane
            self.change_dir = side_sign(spec.side)
            self.target_lane = ego.lane + self.change_dir
            self.ctx.lane = self.target_lane
            open_dir = self.change_dir
        else:
            self.closed = ego.lane + side_sign(spec.closes)
            self.change_dir = 0
            self.target_lane = ego.lane
            open_dir = -side_sign(spec.closes)
        left, right = lane_edges(self.closed)
        far_edge, near_edge = (left, right) if open_dir > 0 else (right, left)
        near_edge -= open_dir * 0.25  # keep the cones just inside the closed lane
        self.open_dir = open_dir
        self.cones: list[tuple[float, float]] = []
        n_taper = 6
        for i in range(n_taper):
            f = i / (n_taper - 1)
            self.cones.append((far_edge + f * (near_edge - far_edge), self.s0 + f * self.TAPER))
        z = self.s0 + self.TAPER + self.SPACING
        while z <= self.s0 + spec.length_m:
            self.cones.append((near_edge, z))
            z += self.SPACING
        self.end = self.s0 + spec.length_m

    def actors(self, ego: EgoState) -> list[Actor]:
        if not self.armed:
            return []
        out = [Actor("cone", x, z, 0.0, (0, 110, 255), {}, H.CONE) for x, z in self.cones if -5 < z - ego.s < 150]
        if -5 < self.s0 - 3 - ego.s < 150:
            out.append(Actor("arrow_board", self.layout.lane_center(self.closed), self.s0 - 3, 0.0, (20, 20, 20),
                             {"dir": self.open_dir}, H.CONE))
        return out

    def situation(self, ego: EgoState) -> Situation | None:
        if not self.active(ego) or ego.s > self.end - 5.0:  # the last cones have left the frame
            return None
        p = PRIORITY["cones"]
        if self.change_dir:
            settled = abs(ego.x_lat - self.layout.lane_center(self.target_lane)) < 0.35
            if not settled:
                urgency = U.HIGH if self.s0 - ego.s < 20 else U.MEDIUM
                d = self.change_dir
                return Situation(p, (change_action(d), A.DECELERATE, nudge_action(d)), (H.CONE,), urgency,
                                 "cones close the lane ahead", "cones")
        side = word(-self.open_dir)
        return Situation(p, (A.KEEP_LANE, A.KEEP_SPEED, A.DECELERATE), (H.CONE,), U.LOW,
                         f"cones close the {side} lane", "cones", A.KEEP_SPEED)


class Nav(Behaviour):
    """A navigation instruction and the road geometry it refers to (junction, ramp, destination)."""

    TURN_SPEED = 5.0
    TURN_DECEL = 1.6
    RAMP_DONE_M = 50.0  # the exit is taken once the ego is this far past the ramp's start
    NEXT_LEG_M = 1_000.0  # the route's next leg, announced after the manoeuvre (nothing more happens in a scene)

    def __init__(self, spec: Any, ctx: DriveContext, jitter: float, rng: Any, nav_prefix: str) -> None:
        super().__init__(spec, ctx, jitter, rng)
        self.nav_prefix = nav_prefix
        m = spec.maneuver
        self.kind = (
            "turn" if m in ("turn_left", "turn_right")
            else "ramp" if m in ("exit_left", "exit_right", "keep_left", "keep_right")
            else m
        )
        self.dir = 1 if m.endswith("right") else -1
        self.turn_x0: float | None = None

    def arm(self, ego: EgoState) -> None:
        super().arm(ego)
        L = self.layout
        self.anchor = ego.s + self.spec.distance_m  # no jitter: the announced distance is exact
        v = ego.v
        if self.kind == "turn":
            if self.dir > 0:
                self.radius = max(9.0, L.kerb_right + 2.5 - ego.x_lat)
                self.z0 = self.anchor - 1.75 - self.radius
            else:
                self.radius = max(11.0, ego.x_lat - L.kerb_left + 2.5)
                self.z0 = self.anchor + 1.75 - self.radius
            need = (v * v - self.TURN_SPEED**2) / (2 * 3.0)
            if self.z0 - ego.s < max(need, 1.0):
                raise ScenarioError(
                    f"nav event at {self.at_s} s: the junction {self.spec.distance_m:.0f} m ahead is too close to "
                    f"slow down for the turn at {v * 3.6:.0f} km/h; increase distance_m"
                )
            self.arc = math.pi * self.radius / 2
        elif self.kind == "ramp":
            self.exit_lane = L.road.lanes - 1 if self.dir > 0 else 0
            changes = abs(self.exit_lane - ego.lane)
            self.change_start = max(120.0, 7.0 * v)
            need = changes * max(45.0, 4.0 * v) + 10.0
            if self.spec.distance_m < need:
                raise ScenarioError(
                    f"nav event at {self.at_s} s: {changes} lane change(s) to reach the exit need about {need:.0f} m; "
                    f"distance_m is {self.spec.distance_m:.0f}"
                )
        elif self.kind == "arrive" and self.spec.distance_m < 40:
            raise ScenarioError(f"nav event at {self.at_s} s: arrive needs distance_m >= 40 to pull over")

    # --- pass 1 ---------------------------------------------------------------------------
    def step(self, ego: EgoState) -> None:
        if self.kind != "ramp" or not self.active(ego):
            return
        dist = self.anchor - ego.s
        settled = abs(ego.x_lat - self.layout.lane_center(self.ctx.lane)) < 0.3
        if dist <= self.change_start and self.ctx.lane != self.exit_lane and settled:
            self.ctx.lane += self.dir

    def accel(self, ego: EgoState) -> float | None:
        if not self.active(ego):
            return None
        if self.kind == "turn" and ego.s < self.z0 + self.arc:
            room = max(self.z0 - ego.s, 0.0)
            return track(ego.v, math.sqrt(self.TURN_SPEED**2 + 2 * self.TURN_DECEL * room))
        if self.kind == "arrive":
            dist = self.anchor - ego.s
            if dist < 60:
                return min(stop_accel(ego.v, dist, 1.5), track(ego.v, 8.0))
            return track(ego.v, math.sqrt(64.0 + 2 * 1.5 * (dist - 60)))
        if self.kind == "ramp" and ego.s > self.anchor - 30:
            return track(ego.v, min(self.ctx.cruise_mps(ego.t), 14.0), gain=0.8)
        return None

    def lateral_target(self, ego: EgoState) -> float | None:
        if self.kind == "arrive" and self.active(ego) and self.anchor - ego.s < 60:
            return self.layout.shoulder_center
        return None

    def pose(self, ego_s: float, x_lat: float) -> tuple[float, float, float] | None:
        if not self.armed:
            return None
        if self.kind == "turn" and ego_s >= self.z0:
            if self.turn_x0 is None:
                self.turn_x0 = x_lat
            return quarter_turn(ego_s - self.z0, self.turn_x0, self.z0, self.radius, self.dir)
        if self.kind == "ramp" and ego_s >= self.anchor and self.ctx.lane == self.exit_lane:
            u = ego_s - self.anchor
            return x_lat + self.dir * ramp_offset(u), ego_s, self.dir * math.atan(ramp_slope(u))
        return None

    # --- pass 2 ---------------------------------------------------------------------------
    def junctions(self) -> list[Junction]:
        return [Junction(self.anchor)] if self.armed and self.kind == "turn" else []

    def ramps(self) -> list[Ramp]:
        if self.armed and self.kind == "ramp":
            return [Ramp(self.anchor, self.dir, self.layout.lane_center(self.exit_lane))]
        return []

    def actors(self, ego: EgoState) -> list[Actor]:
        if self.armed and self.kind == "arrive":
            return [Actor("destination", self.layout.kerb_right + 0.8, self.anchor, 0.0, (200, 80, 0), {}, None)]
        return []

    def situation(self, ego: EgoState) -> Situation | None:
        if not self.active(ego):
            return None
        p = PRIORITY["nav"]
        d = self.dir
        if self.kind == "turn":
            u = ego.s - self.z0
            if 0 <= u <= self.arc:
                return Situation(p, (turn_action(d), A.DECELERATE), (H.JUNCTION,), U.MEDIUM,
                                 f"turning {word(d)} at the junction", "nav")
            dist = self.anchor - ego.s
            if u < 0 and dist <= max(45.0, 4.0 * ego.v):
                return Situation(p, (turn_action(d), A.DECELERATE), (H.JUNCTION,), U.MEDIUM,
                                 f"junction ahead, turn {word(d)}", "nav", A.DECELERATE)
            return None
        if self.kind == "ramp":
            dist = self.anchor - ego.s
            settled = ego.lane == self.exit_lane and abs(ego.x_lat - self.layout.lane_center(self.exit_lane)) < 0.35
            if 0 < dist <= self.change_start and not settled:
                return Situation(p, (change_action(d), A.DECELERATE), (), U.MEDIUM if dist < 80 else U.LOW,
                                 f"exit ahead on the {word(d)}, move over", "nav")
            if settled and -self.RAMP_DONE_M <= dist <= 60:
                return Situation(p, (turn_action(d), change_action(d), A.DECELERATE), (), U.LOW,
                                 f"take the exit on the {word(d)}", "nav")
            return None
        if self.kind == "arrive":
            dist = self.anchor - ego.s
            if dist < 60 or (dist < 100 and ego.a < -0.3):
                if ego.v > 0.5:
                    return Situation(p, (A.PULL_OVER, A.DECELERATE, A.STOP), (), U.LOW,
                                     "destination ahead, pull over on the right", "nav")
                return Situation(p, (A.STOP, A.PULL_OVER), (), U.LOW, "arrived at the destination", "nav")
        return None

    def done_position(self) -> float | None:
        """Path position past which the manoeuvre is complete: the turn's arc driven, or the exit
        ramp 50 m behind (where its label window ends); None where nothing follows the instruction."""
        if self.kind == "turn":
            return self.z0 + self.arc
        if self.kind == "ramp":
            return self.anchor + self.RAMP_DONE_M
        return None

    def nav_messages(self, s_at: Any) -> list[dict[str, Any]]:
        """The unit's messages: the instruction re-announced every `update_every_s` with the
        remaining distance (0 once reached) until the manoeuvre is complete, then the next leg of
        the route - continue along the road it led onto - as a real unit moves on to the next
        instruction. The instruction thus stays current through the whole turn or exit, as long as
        its label window; it neither lapses mid-turn (its time to live) nor outlives the turn."""
        if not self.armed:
            return []
        every = self.spec.update_every_s
        ttl_ms = int(max(3 * every, 2.0) * 1000)
        duration = self.ctx.scenario.duration_s
        done_at = self.done_position()
        out: list[dict[str, Any]] = []

        def announce(t: float, maneuver: str, distance_m: float) -> None:
            out.append({
                "at_ms": round(t * 1000),
                "nav_id": f"{self.nav_prefix}.{len(out)}",
                "maneuver": maneuver,
                "distance_m": round(max(distance_m, 0.0), 1),
                "text": self.spec.text,
                "ttl_ms": ttl_ms,
            })

        t = self.at_s
        while t < duration - 1e-9:
            s = float(s_at(t))
            if done_at is not None and s > done_at:
                break
            dist = max(self.anchor - s, 0.0)
            announce(t, Maneuver(self.spec.maneuver).value, dist)
            if dist <= 0.0 and done_at is None:
                break
            t = self.at_s + len(out) * every
        if done_at is None or float(s_at(duration)) <= done_at:
            return out
        # The manoeuvre is done: announced at once (the previous instruction must not linger into
        # the cruise after it), then re-announced on the unit's schedule.
        done_t = self._first_time_past(s_at, done_at, duration)
        t, leg_start = done_t, float(s_at(done_t))
        while t < duration - 1e-9:
            announce(t, Maneuver.CONTINUE.value, self.NEXT_LEG_M - (float(s_at(t)) - leg_start))
            t += every
        return out

    @staticmethod
    def _first_time_past(s_at: Any, s_done: float, duration: float, step: float = 0.05) -> float:
        """The first time (to `step`) the ego's path position exceeds `s_done`."""
        t = 0.0
        while t < duration and float(s_at(t)) <= s_done:
            t += step
        return round(t, 2)


class EmergencyVehicle(Behaviour):
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


class CrossTraffic(Behaviour):
    """A yield junction; a car crosses from ``side`` and the ego gives way."""

    def __init__(self, spec: Any, ctx: DriveContext, jitter: float, rng: Any = None) -> None:
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


class SpeedLimit(Behaviour):
    """A speed sign; from ``at_s`` the ego cruises at the new speed. A raised limit shows an
    end-of-limit sign (white disc, black stripes), a lowered one a red ring: two shapes a small
    model can tell apart without reading digits."""

    def __init__(self, spec: Any, ctx: DriveContext, jitter: float, rng: Any = None) -> None:
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


class AmbientTraffic(Behaviour):
    """Oncoming cars that need no reaction: they keep a model from learning "any car = brake".
    They stay away from events where an oncoming car would change the right answer."""

    QUIET_KINDS = ("pedestrian_cross", "emergency_vehicle", "cross_traffic", "nav")

    def __init__(self, ctx: DriveContext, events: tuple[Any, ...]) -> None:
        super().__init__(None, ctx, 1.0)
        self.armed = True
        self.spawns: list[tuple[float, float, float, tuple[int, int, int]]] = []  # (t, z0, speed, colour)
        self.times: list[tuple[float, float, tuple[int, int, int]]] = []
        if not ctx.scenario.ambient_traffic or ctx.layout.road.oncoming_lanes == 0:
            return
        quiet = [(e.at_s - 4.0, e.at_s + 16.0) for e in events if e.kind in self.QUIET_KINDS]
        t = float(ctx.rng.uniform(0.0, 4.0))
        while t < ctx.scenario.duration_s:
            speed = float(ctx.rng.uniform(9.0, 14.0))
            colour = CAR_COLOURS[int(self.rng.integers(len(CAR_COLOURS)))]
            if not any(a <= t <= b for a, b in quiet):
                self.times.append((t, speed, colour))
            t += float(ctx.rng.uniform(4.0, 9.0))

    @property
    def at_s(self) -> float:
        return 0.0

    def step(self, ego: EgoState) -> None:
        while len(self.spawns) < len(self.times) and ego.t >= self.times[len(self.spawns)][0]:
            t, speed, colour = self.times[len(self.spawns)]
            self.spawns.append((t, ego.s + 140.0, speed, colour))

    def actors(self, ego: EgoState) -> list[Actor]:
        out = []
        x = self.layout.oncoming_lane_center(0)
        for t0, z0, speed, colour in self.spawns:
            if ego.t < t0:
                continue
            z = z0 - speed * (ego.t - t0)
            if -15 < z - ego.s < 160:
                out.append(Actor("car", x, z, math.pi, colour, {"brake": False}, None))
        return out


def make_behaviour(spec: Any, ctx: DriveContext, jitter: float, rng: Any, nav_prefix: str) -> Behaviour:
    classes: dict[str, type[Behaviour]] = {
        "lead_brake": LeadBrake,
        "traffic_light": TrafficLight,
        "pedestrian_cross": PedestrianCross,
        "cyclist": Cyclist,
        "obstacle": Obstacle,
        "cones": Cones,
        "emergency_vehicle": EmergencyVehicle,
        "cross_traffic": CrossTraffic,
        "speed_limit": SpeedLimit,
    }
    if spec.kind == "nav":
        return Nav(spec, ctx, jitter, rng, nav_prefix)
    return classes[spec.kind](spec, ctx, jitter, rng)
