"""Oncoming traffic that no scenario event asks for: it runs through every scene that allows it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.events.common import CAR_COLOURS
from sim.scenario import EventSpec
from sim.world import Actor, Behaviour, DriveContext, EgoState


@dataclass(frozen=True)
class WholeDrive:
    """The timing of a behaviour that is no scenario event: it runs from the start."""

    at_s: float = 0.0


class AmbientTraffic(Behaviour[WholeDrive]):
    """Oncoming cars that need no reaction: they keep a model from learning "any car = brake".
    They stay away from events where an oncoming car would change the right answer."""

    QUIET_KINDS = ("pedestrian_cross", "emergency_vehicle", "cross_traffic", "nav")

    def __init__(self, ctx: DriveContext, events: tuple[EventSpec, ...]) -> None:
        super().__init__(WholeDrive(), ctx, 1.0)
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
