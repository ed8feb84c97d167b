"""The behaviour of each event kind, looked up by the kind a scenario file names."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.events.cones import Cones
from sim.events.cross_traffic import CrossTraffic
from sim.events.cyclist import Cyclist
from sim.events.emergency_vehicle import EmergencyVehicle
from sim.events.lead_brake import LeadBrake
from sim.events.nav import Nav
from sim.events.obstacle import Obstacle
from sim.events.pedestrian_cross import PedestrianCross
from sim.events.speed_limit import SpeedLimit
from sim.events.traffic_light import TrafficLight
from sim.scenario import EventSpec, NavSpec
from sim.world import Behaviour, DriveContext

# Every kind but ``nav``, whose behaviour also takes the prefix of its message ids.
BEHAVIOURS: dict[str, type[Behaviour[Any]]] = {
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


def make_behaviour(
    spec: EventSpec, ctx: DriveContext, jitter: float, rng: np.random.Generator | None, nav_prefix: str
) -> Behaviour[Any]:
    if isinstance(spec, NavSpec):
        return Nav(spec, ctx, jitter, rng, nav_prefix)
    return BEHAVIOURS[spec.kind](spec, ctx, jitter, rng)
