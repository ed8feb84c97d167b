"""The ``nav`` event: a navigation instruction, the junction, ramp or destination it refers to,
and the messages the navigation unit sends."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edge.messages import Maneuver
from sim.events.common import PRIORITY, A, H, U, change_action, turn_action, word
from sim.geometry import quarter_turn, ramp_offset, ramp_slope
from sim.scenario import NavSpec, ScenarioError
from sim.world import Actor, Behaviour, DriveContext, EgoState, Junction, Ramp, Situation, stop_accel, track


class Nav(Behaviour[NavSpec]):
    """A navigation instruction and the road geometry it refers to (junction, ramp, destination)."""

    TURN_SPEED = 5.0
    TURN_DECEL = 1.6
    RAMP_DONE_M = 50.0  # the exit is taken once the ego is this far past the ramp's start
    NEXT_LEG_M = 1_000.0  # the route's next leg, announced after the manoeuvre (nothing more happens in a scene)

    def __init__(
        self, spec: NavSpec, ctx: DriveContext, jitter: float, rng: np.random.Generator | None, nav_prefix: str
    ) -> None:
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
