"""The simulated world's data: the ego's state, actors, road features, and the situation an
ideal driver is in (which becomes the label).

An event's behaviour (``sim.events``) runs in two passes. Pass 1 integrates the ego's motion and
calls ``arm``/``accel``/``lateral_target``/``pose``; behaviours may remember anchors there
("the stop line is 45 m ahead of where the ego was at 3 s"). Pass 2 asks every behaviour, per
frame, for its ``actors`` and its ``situation``; those must be pure functions of the recorded
ego state and the anchors, so that what is drawn and what is labelled cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from edge.messages import Hazard, MetaAction, Urgency
from sim.geometry import RoadLayout
from sim.scenario import Scenario


@dataclass(frozen=True)
class EgoState:
    t: float
    s: float  # distance along the route; equals world z while on the main road
    v: float  # m/s
    a: float  # m/s^2, the commanded acceleration
    x_lat: float  # lateral position on the main road (world x before any turn or ramp)
    x: float
    z: float
    yaw: float
    lane: int  # the lane the ego is in or moving into


@dataclass(frozen=True)
class Situation:
    """What the ideal driver should do now. ``actions`` lists acceptable meta-actions, the
    primary first; ``lateral`` is the optional second action for the advice."""

    priority: int  # lower wins when several events are active
    actions: tuple[MetaAction, ...]
    hazards: tuple[Hazard, ...]
    urgency: Urgency
    rationale: str
    source: str
    lateral: MetaAction | None = None

    @property
    def primary(self) -> MetaAction:
        return self.actions[0]


@dataclass
class Actor:
    """Something drawn in 3D. ``kind`` selects the painter in ``sim.render.actors``; ``yaw`` is
    the object's heading (0 = facing +z, the ego's initial direction)."""

    kind: str
    x: float
    z: float
    yaw: float = 0.0
    colour: tuple[int, int, int] = (128, 128, 128)
    state: dict[str, Any] = field(default_factory=dict)
    hazard: Hazard | None = None  # the hazard a label names when this actor matters


@dataclass(frozen=True)
class Junction:
    """A cross road centred at ``z`` running along x."""

    z: float
    half_width: float = 3.5
    corner_radius: float = 6.0


@dataclass(frozen=True)
class Ramp:
    """An exit ramp leaving the main road at ``z`` on ``side`` (+1 right, -1 left); its centre
    starts on the lane centre ``lane_x`` and bends away."""

    z: float
    side: int
    lane_x: float
    length_m: float = 220.0


@dataclass(frozen=True)
class Marking:
    """Paint on the main road between x0 and x1 at z: stop line, zebra or yield line."""

    kind: str  # "stop_line" | "zebra" | "yield_line"
    z: float
    x0: float
    x1: float


@dataclass
class DriveContext:
    """What behaviours share while the drive is integrated."""

    scenario: Scenario
    layout: RoadLayout
    rng: np.random.Generator
    lane: int  # current target lane; cones and exits change it
    cruise_override_mps: float | None = None
    dt: float = 0.025
    speed_limit_times: list[float] = field(default_factory=list)

    def cruise_mps(self, t: float) -> float:
        if self.cruise_override_mps is not None:
            return self.cruise_override_mps
        profile = self.scenario.ego.speed_profile
        if profile:
            times = [p[0] for p in profile]
            speeds = [p[1] for p in profile]
            return float(np.interp(t, times, speeds)) / 3.6
        return self.scenario.ego.speed_kmh / 3.6


def follow_speed(gap_m: float, v_lead: float, b_ego: float, b_lead: float, standstill_m: float = 5.0) -> float:
    """Gipps' safe speed: the fastest the ego may go and still stop behind the lead car if it
    brakes at ``b_lead`` while the ego brakes at ``b_ego``."""
    room = max(gap_m - standstill_m, 0.0)
    return math.sqrt(max(2 * b_ego * room + v_lead * v_lead * b_ego / b_lead, 0.0))


def stop_speed(distance_m: float, b: float) -> float:
    """The speed from which braking at ``b`` stops exactly after ``distance_m``."""
    return math.sqrt(2 * b * max(distance_m, 0.0))


def stop_accel(v: float, distance_m: float, b: float) -> float:
    """Acceleration that stops the ego exactly ``distance_m`` ahead. Once braking is due it
    brakes at the exact constant deceleration left (a speed-tracking controller lags and rolls
    past the line); before that it tracks the braking profile, which also creeps up to a line
    the ego stopped short of."""
    if distance_m <= 0.05:
        return -9.0 if v > 0 else 0.0
    need = v * v / (2 * distance_m)
    if need >= 0.9 * b:
        return -need
    return track(v, stop_speed(distance_m, b))


def track(v: float, v_des: float, gain: float = 2.0) -> float:
    """Acceleration that makes the speed follow ``v_des``."""
    return gain * (v_des - v)


class Timed(Protocol):
    """What every behaviour's spec has: when it starts."""

    @property
    def at_s(self) -> float: ...


SpecT = TypeVar("SpecT", bound=Timed)


class Behaviour(Generic[SpecT]):
    """One scenario event's effect on the drive, typed by its spec (``sim.scenario``). Subclasses
    override what they need."""

    priority = 50

    def __init__(self, spec: SpecT, ctx: DriveContext, jitter: float, rng: np.random.Generator | None = None) -> None:
        self.spec = spec
        self.ctx = ctx
        # Each event draws its looks from its own generator, so adding an event does not
        # repaint the others.
        self.rng = rng if rng is not None else ctx.rng
        self.layout = ctx.layout
        self.jitter = jitter
        self.armed = False

    @property
    def at_s(self) -> float:
        return float(self.spec.at_s)

    def active(self, ego: EgoState) -> bool:
        return self.armed and ego.t >= self.at_s - 1e-9

    # --- pass 1 -------------------------------------------------------------------------
    def arm(self, ego: EgoState) -> None:
        self.armed = True

    def step(self, ego: EgoState) -> None:
        """Called every integration step after arming: the place for decisions that change the
        shared context (e.g. starting the next lane change towards an exit)."""

    def accel(self, ego: EgoState) -> float | None:
        return None

    def lateral_target(self, ego: EgoState) -> float | None:
        return None

    def pose(self, ego_s: float, x_lat: float) -> tuple[float, float, float] | None:
        """(x, z, yaw) when this behaviour has taken the ego off the main road."""
        return None

    def max_speed(self, ego: EgoState) -> float | None:
        return None

    # --- pass 2 -------------------------------------------------------------------------
    def actors(self, ego: EgoState) -> list[Actor]:
        return []

    def situation(self, ego: EgoState) -> Situation | None:
        return None

    def junctions(self) -> list[Junction]:
        return []

    def ramps(self) -> list[Ramp]:
        return []

    def markings(self) -> list[Marking]:
        return []

    def nav_messages(self, s_at: Any) -> list[dict[str, Any]]:
        """Navigation lines; ``s_at(t)`` gives the ego's route distance at any time."""
        return []
