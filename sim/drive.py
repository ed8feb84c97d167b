"""Integrate a scenario into a drive: the ego's motion, every frame's actors and situation.

The ego is a careful driver: it cruises, and each armed event may ask for less speed
(``accel``), a lateral target (``lateral_target``) or a route off the main road (``pose``).
Pass 1 integrates at ~40 Hz; pass 2 evaluates actors and situations on the recorded frames.
Everything random comes from ``numpy.random.Generator`` seeded by ``(seed, event index)``, so
a drive is a pure function of (scenario, seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.messages import MetaAction, Urgency
from sim.events import GENERIC_PRIORITY, AmbientTraffic, make_behaviour
from sim.geometry import RoadLayout
from sim.scenario import Scenario
from sim.world import Actor, Behaviour, DriveContext, EgoState, Junction, Marking, Ramp, Situation

STEP_S = 0.025
LATERAL_OMEGA = 1.7  # rad/s: a lane change takes about 3 s
JITTER = (0.92, 1.08)  # per-seed scale on event distances: the same story, not the same pixels


@dataclass
class FrameState:
    index: int
    t: float
    ego: EgoState
    cruise_mps: float
    situation: Situation
    actors: list[Actor]


@dataclass
class Drive:
    scenario: Scenario
    seed: int
    layout: RoadLayout
    frames: list[FrameState]
    junctions: list[Junction]
    ramps: list[Ramp]
    markings: list[Marking]
    nav: list[dict[str, Any]]
    behaviours: list[Behaviour[Any]] = field(default_factory=list)

    @property
    def route_length(self) -> float:
        return self.frames[-1].ego.s if self.frames else 0.0


def generic_situation(ego: EgoState, cruise_mps: float) -> Situation:
    """No event needs attention: keep going, or speed back up after a stop."""
    if ego.a > 0.4 or (ego.v < cruise_mps - 2.0 and ego.a > 0.05):
        return Situation(GENERIC_PRIORITY, (MetaAction.ACCELERATE, MetaAction.KEEP_SPEED), (), Urgency.LOW,
                         "road clear, speeding up", "cruise", MetaAction.KEEP_LANE)
    if ego.a < -0.8:
        return Situation(GENERIC_PRIORITY, (MetaAction.DECELERATE, MetaAction.KEEP_SPEED), (), Urgency.LOW,
                         "slowing to the cruise speed", "cruise", MetaAction.KEEP_LANE)
    return Situation(GENERIC_PRIORITY, (MetaAction.KEEP_SPEED, MetaAction.KEEP_LANE), (), Urgency.LOW,
                     "road clear", "cruise", MetaAction.KEEP_LANE)


def _acceleration(behaviours: list[Behaviour[Any]], pre: EgoState, cruise: float, v: float) -> float:
    """Cruise control towards `cruise`, capped by the most cautious armed behaviour's request."""
    a = float(np.clip(0.8 * (cruise - v), -2.5, 1.5))
    for b in behaviours:
        if b.armed:
            request = b.accel(pre)
            if request is not None:
                a = min(a, request)
    return float(np.clip(a, -9.0, 2.5))


def _lateral_target(behaviours: list[Behaviour[Any]], pre: EgoState, lane_center: float) -> float:
    """The first armed behaviour's lateral target, else the lane's centre."""
    for b in behaviours:
        if b.armed:
            lateral = b.lateral_target(pre)
            if lateral is not None:
                return lateral
    return lane_center


def _pose(behaviours: list[Behaviour[Any]], s: float, x_lat: float) -> tuple[float, float, float]:
    """(x, z, yaw) of the ego: where the first behaviour that places it says, else on the road."""
    for b in behaviours:
        pose = b.pose(s, x_lat)
        if pose is not None:
            return pose
    return x_lat, s, 0.0


def _frame_state(index: int, ego: EgoState, cruise: float, behaviours: list[Behaviour[Any]],
                 ambient: AmbientTraffic) -> FrameState:
    """What a frame shows and what it calls for: the most urgent behaviour's situation, every actor."""
    candidates = [sit for b in behaviours if (sit := b.situation(ego)) is not None]
    situation = min(candidates, key=lambda c: c.priority) if candidates else generic_situation(ego, cruise)
    actors = [actor for b in (*behaviours, ambient) for actor in b.actors(ego)]
    return FrameState(index, ego.t, ego, cruise, situation, actors)


# One integration loop over frames and substeps: its state (s, v, x_lat, vx) reads best in one place.
def simulate(scenario: Scenario, seed: int = 0) -> Drive:
    layout = RoadLayout(scenario.road)
    ctx = DriveContext(scenario, layout, np.random.default_rng([seed, 0]), lane=scenario.ego_lane)
    behaviours: list[Behaviour[Any]] = []
    for index, spec in enumerate(scenario.events):
        rng = np.random.default_rng([seed, index + 1])
        jitter = float(rng.uniform(*JITTER))
        behaviours.append(make_behaviour(spec, ctx, jitter, rng, nav_prefix=f"{scenario.name}-{index}"))
    ambient = AmbientTraffic(
        DriveContext(scenario, layout, np.random.default_rng([seed, 10_000]), lane=ctx.lane), scenario.events
    )

    frame_dt = 1.0 / scenario.fps
    substeps = max(1, math.ceil(frame_dt / STEP_S))
    dt = frame_dt / substeps
    ctx.dt = dt

    s, v = 0.0, ctx.cruise_mps(0.0)
    x_lat = layout.lane_center(ctx.lane)
    vx = 0.0
    recorded: list[tuple[EgoState, float]] = []
    trace_t: list[float] = []
    trace_s: list[float] = []
    for frame in range(scenario.n_frames):
        for sub in range(substeps):
            t = (frame * substeps + sub) * dt
            pre = EgoState(t, s, v, 0.0, x_lat, x_lat, s, 0.0, ctx.lane)
            for b in behaviours:
                if not b.armed and b.at_s <= t + 1e-9:
                    b.arm(pre)
            for b in (*behaviours, ambient):
                if b.armed:
                    b.step(pre)
            cruise = ctx.cruise_mps(t)
            a = _acceleration(behaviours, pre, cruise, v)
            target = _lateral_target(behaviours, pre, layout.lane_center(ctx.lane))
            x, z, yaw = _pose(behaviours, s, x_lat)
            if sub == 0:
                recorded.append((EgoState(t, s, v, a, x_lat, x, z, yaw, ctx.lane), cruise))
            trace_t.append(t)
            trace_s.append(s)
            # Integrate: speed never negative; lateral as a critically damped spring.
            v_next = max(0.0, v + a * dt)
            s += (v + v_next) / 2 * dt
            v = v_next
            ax = LATERAL_OMEGA**2 * (target - x_lat) - 2 * LATERAL_OMEGA * vx
            vx += ax * dt
            x_lat += vx * dt

    frames = [_frame_state(index, ego, cruise, behaviours, ambient) for index, (ego, cruise) in enumerate(recorded)]
    times = np.asarray(trace_t)
    dists = np.asarray(trace_s)

    def s_at(t: float) -> float:
        return float(np.interp(t, times, dists))

    nav = sorted((line for b in behaviours for line in b.nav_messages(s_at)), key=lambda line: line["at_ms"])
    return Drive(
        scenario=scenario,
        seed=seed,
        layout=layout,
        frames=frames,
        junctions=[j for b in behaviours for j in b.junctions()],
        ramps=[r for b in behaviours for r in b.ramps()],
        markings=[m for b in behaviours for m in b.markings()],
        nav=nav,
        behaviours=behaviours,
    )
