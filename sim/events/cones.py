"""The ``cones`` event: a taper of cones closes a lane; the ego changes lane or keeps it."""

from __future__ import annotations

from sim.events.common import PRIORITY, A, H, U, change_action, lane_edges, nudge_action, side_sign, word
from sim.scenario import ConesSpec
from sim.world import Actor, Behaviour, EgoState, Situation


class Cones(Behaviour[ConesSpec]):
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
