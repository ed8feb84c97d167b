"""The scenario file: a small TOML timeline that the renderer turns into a drive.

A scenario names the road, the ego car's cruise speed and a list of timed events::

    duration_s = 14
    fps = 10
    variant = "day"            # day | dusk | night | rain

    [road]
    lanes = 2                  # lanes in the ego's direction
    oncoming_lanes = 1

    [ego]
    speed_kmh = 40
    lane = "right"             # "left", "right" or an index (0 = leftmost)

    [[events]]
    kind = "traffic_light"
    at_s = 3.0                 # the light turns yellow, then red
    distance_m = 45            # stop line distance ahead of the ego at at_s

Events are placed relative to the ego at their ``at_s``: "a pedestrian crosses 25 m ahead at
7 s". The ego reacts like a careful driver (``sim.drive``), and the labels follow what that
driver must do, so a scenario author never computes braking distances by hand.

Every field is validated with a message that names the file, the event and the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.errors import EdgeError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6): the same parser as a package
    import tomli as tomllib

BUILTIN_DIR = Path(__file__).resolve().parent / "scenarios"

VARIANTS = ("day", "dusk", "night", "rain")
LANE_WIDTH_M = 3.5


class ScenarioError(EdgeError, ValueError):
    """A scenario file that cannot be rendered; the message says where and why."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- events -------------------------------------------------------------------------------
# One model per kind; ``at_s`` always means "when the event starts". Distances are metres ahead
# of the ego at ``at_s``.

Side = Literal["left", "right"]


class LeadBrakeSpec(_Spec):
    """A lead car in the ego lane that brakes hard, stops, and later drives off."""

    kind: Literal["lead_brake"]
    at_s: float = Field(ge=0)
    gap_m: float = Field(default=20.0, gt=6, le=60)
    decel_mps2: float = Field(default=4.0, gt=0.5, le=9)
    hold_s: float = Field(default=3.0, ge=0, le=60, description="Standstill before it drives off.")


class TrafficLightSpec(_Spec):
    """A signal over the ego lane: green until ``at_s``, then yellow, red, and green again."""

    kind: Literal["traffic_light"]
    at_s: float = Field(ge=0)
    distance_m: float = Field(default=45.0, gt=5, le=150)
    yellow_s: float = Field(default=1.5, ge=0, le=5)
    red_s: float = Field(default=5.0, gt=0, le=120)


class PedestrianCrossSpec(_Spec):
    """A pedestrian steps off the kerb on ``side`` and crosses the whole road at a zebra."""

    kind: Literal["pedestrian_cross"]
    at_s: float = Field(ge=0)
    distance_m: float = Field(default=25.0, gt=8, le=80)
    side: Side = "right"
    speed_mps: float = Field(default=1.3, gt=0.3, le=3)


class CyclistSpec(_Spec):
    """A cyclist riding along the ``side`` edge of the ego lane; the ego nudges away to pass."""

    kind: Literal["cyclist"]
    at_s: float = Field(ge=0)
    distance_m: float = Field(default=30.0, gt=5, le=80)
    side: Side = "right"
    speed_mps: float = Field(default=4.0, ge=0, le=10)


class ObstacleSpec(_Spec):
    """A stalled car with hazard lights sticking into the ego lane from ``side``: nudge away."""

    kind: Literal["obstacle"]
    at_s: float = Field(ge=0)
    distance_m: float = Field(default=40.0, gt=5, le=100)
    side: Side = "right"


class ConesSpec(_Spec):
    """A row of cones with an arrow board closing a lane. ``closes = "ego"`` closes the ego lane
    (change to ``side``); ``"left"``/``"right"`` closes that neighbour lane (keep the lane)."""

    kind: Literal["cones"]
    at_s: float = Field(ge=0)
    distance_m: float = Field(default=50.0, gt=10, le=120)
    closes: Literal["ego", "left", "right"] = "ego"
    side: Side = "left"
    length_m: float = Field(default=60.0, gt=10, le=300)


NavManeuver = Literal[
    "continue", "turn_left", "turn_right", "keep_left", "keep_right", "exit_left", "exit_right", "arrive"
]


class NavSpec(_Spec):
    """A navigation instruction; the junction, ramp or destination is built ``distance_m``
    ahead. The instruction is re-announced every ``update_every_s`` with the remaining
    distance, as a real navigation unit does, until the turn or exit is complete; then the unit
    announces the next leg (continue along that road). ``text`` is the name of the road the manoeuvre
    leads onto, as the unit shows it ("" for none); where to go and when is only in the
    structured fields, as the runtime expects."""

    kind: Literal["nav"]
    at_s: float = Field(ge=0)
    maneuver: NavManeuver
    distance_m: float = Field(default=150.0, gt=0, le=5000)
    text: str = Field(default="", max_length=80)
    update_every_s: float = Field(default=1.0, gt=0.05, le=60)


class EmergencyVehicleSpec(_Spec):
    """An emergency vehicle with flashing lights comes towards the ego in the oncoming lane:
    pull over onto the shoulder and wait until it has passed."""

    kind: Literal["emergency_vehicle"]
    at_s: float = Field(ge=0)
    distance_m: float = Field(default=90.0, gt=20, le=200)
    speed_mps: float = Field(default=10.0, gt=1, le=40)


class CrossTrafficSpec(_Spec):
    """A junction with a yield sign; a car crosses from ``side`` and the ego gives way."""

    kind: Literal["cross_traffic"]
    at_s: float = Field(ge=0)
    distance_m: float = Field(default=35.0, gt=10, le=100)
    side: Side = "right"
    speed_mps: float = Field(default=8.0, gt=1, le=25)


class SpeedLimitSpec(_Spec):
    """A speed sign ``distance_m`` ahead; the ego adopts the new cruise speed from ``at_s``."""

    kind: Literal["speed_limit"]
    at_s: float = Field(ge=0)
    distance_m: float = Field(default=40.0, gt=5, le=150)
    speed_kmh: float = Field(gt=5, le=130)


EventSpec = Annotated[
    LeadBrakeSpec
    | TrafficLightSpec
    | PedestrianCrossSpec
    | CyclistSpec
    | ObstacleSpec
    | ConesSpec
    | NavSpec
    | EmergencyVehicleSpec
    | CrossTrafficSpec
    | SpeedLimitSpec,
    Field(discriminator="kind"),
]

EVENT_MODELS: dict[str, type[_Spec]] = {
    m.model_fields["kind"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in (
        LeadBrakeSpec,
        TrafficLightSpec,
        PedestrianCrossSpec,
        CyclistSpec,
        ObstacleSpec,
        ConesSpec,
        NavSpec,
        EmergencyVehicleSpec,
        CrossTrafficSpec,
        SpeedLimitSpec,
    )
}
EVENT_KINDS = tuple(EVENT_MODELS)

# Maneuvers that leave the main road: nothing can be placed on the main road after them.
ROUTE_CHANGING_MANEUVERS = frozenset({"turn_left", "turn_right", "keep_left", "keep_right", "exit_left", "exit_right"})


class RoadSpec(_Spec):
    lanes: int = Field(default=2, ge=1, le=4)
    oncoming_lanes: int = Field(default=1, ge=0, le=3)
    shoulder_m: float = Field(default=2.5, ge=0, le=5)
    sidewalks: bool = True


class EgoSpec(_Spec):
    speed_kmh: float = Field(default=40.0, ge=0, le=130)
    lane: int | Literal["left", "right"] = "right"
    speed_profile: list[tuple[float, float]] = Field(
        default_factory=list,
        description="Optional cruise-speed keyframes [[t_s, kmh], ...], linearly interpolated.",
    )


class _ScenarioFile(_Spec):
    name: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]{0,64}$")
    description: str = Field(default="", max_length=300)
    duration_s: float = Field(gt=0, le=600)
    fps: float = Field(default=10.0, gt=0, le=60)
    variant: Literal["day", "dusk", "night", "rain"] = "day"
    width: int = Field(default=640, ge=64, le=3840)
    height: int = Field(default=360, ge=36, le=2160)
    ambient_traffic: bool = True
    road: RoadSpec = Field(default_factory=RoadSpec)
    ego: EgoSpec = Field(default_factory=EgoSpec)
    events: list[EventSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Events are sorted by ``at_s``."""

    name: str
    description: str
    duration_s: float
    fps: float
    variant: str
    width: int
    height: int
    ambient_traffic: bool
    road: RoadSpec
    ego: EgoSpec
    events: tuple[EventSpec, ...] = field(default_factory=tuple)
    source_text: str = ""

    @property
    def n_frames(self) -> int:
        return max(1, math.floor(self.duration_s * self.fps + 1e-9))

    @property
    def ego_lane(self) -> int:
        lane = self.ego.lane
        if lane == "left":
            return 0
        if lane == "right":
            return self.road.lanes - 1
        return int(lane)

    def with_overrides(
        self,
        *,
        duration_s: float | None = None,
        fps: float | None = None,
        variant: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> Scenario:
        """A copy with render settings changed. A shorter duration drops the events that would
        start after the new end (a short test render of a long scenario is still valid)."""
        scenario = self
        if variant is not None:
            if variant not in VARIANTS:
                raise ScenarioError(f"unknown variant {variant!r}; known variants: {', '.join(VARIANTS)}")
            scenario = replace(scenario, variant=variant)
        if fps is not None:
            if not 0 < fps <= 60:
                raise ScenarioError(f"fps {fps} out of range (0, 60]")
            scenario = replace(scenario, fps=float(fps))
        if width is not None or height is not None:
            w, h = width or scenario.width, height or scenario.height
            if w < 64 or h < 36:
                raise ScenarioError(f"frame size {w}x{h} is too small (at least 64x36)")
            scenario = replace(scenario, width=int(w), height=int(h))
        if duration_s is not None:
            if duration_s <= 0:
                raise ScenarioError(f"duration_s must be positive, got {duration_s}")
            kept = tuple(e for e in scenario.events if e.at_s < duration_s)
            scenario = replace(scenario, duration_s=float(duration_s), events=kept)
        return scenario


def _format_validation_error(origin: str, err: ValidationError, raw: Mapping[str, Any]) -> str:
    lines = []
    for problem in err.errors():
        loc = list(problem["loc"])
        where = ""
        if loc and loc[0] == "events" and len(loc) >= 2 and isinstance(loc[1], int):
            index = loc[1]
            events = raw.get("events", [])
            kind = events[index].get("kind", "?") if index < len(events) and isinstance(events[index], dict) else "?"
            # pydantic inserts the discriminator value as a path element; drop it.
            rest = [str(p) for p in loc[2:] if p != kind]
            where = f"events[{index}] (kind {kind!r})" + (f": {'.'.join(rest)}" if rest else "")
        else:
            where = ".".join(str(p) for p in loc) or "(top level)"
        lines.append(f"  {where}: {problem['msg']}")
    return f"{origin}: invalid scenario\n" + "\n".join(lines)


def _check_event_kinds(origin: str, raw: Mapping[str, Any]) -> None:
    events = raw.get("events", [])
    if not isinstance(events, list):
        raise ScenarioError(f"{origin}: 'events' must be an array of tables ([[events]])")
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise ScenarioError(f"{origin}: events[{index}] must be a table")
        kind = event.get("kind")
        if kind is None:
            raise ScenarioError(f"{origin}: events[{index}] has no 'kind'; known kinds: {', '.join(EVENT_KINDS)}")
        if kind not in EVENT_MODELS:
            raise ScenarioError(
                f"{origin}: events[{index}]: unknown event kind {kind!r}; known kinds: {', '.join(EVENT_KINDS)}"
            )


def _check_semantics(origin: str, spec: _ScenarioFile) -> None:
    """Rules that span fields: times inside the clip, lanes that exist, one route change."""
    road, ego = spec.road, spec.ego
    if isinstance(ego.lane, int) and not 0 <= ego.lane < road.lanes:
        raise ScenarioError(f"{origin}: ego.lane {ego.lane} does not exist (road has {road.lanes} lanes, 0..{road.lanes - 1})")
    ego_lane = 0 if ego.lane == "left" else road.lanes - 1 if ego.lane == "right" else int(ego.lane)
    previous_t = -1.0
    for t, kmh in ego.speed_profile:
        if not 0 <= t <= spec.duration_s:
            raise ScenarioError(f"{origin}: ego.speed_profile time {t} is outside the scenario (0..{spec.duration_s} s)")
        if t <= previous_t:
            raise ScenarioError(f"{origin}: ego.speed_profile times must increase ({t} after {previous_t})")
        if not 0 <= kmh <= 130:
            raise ScenarioError(f"{origin}: ego.speed_profile speed {kmh} km/h out of range 0..130")
        previous_t = t
    route_change_at: float | None = None
    for index, event in enumerate(spec.events):
        where = f"{origin}: events[{index}] (kind {event.kind!r})"
        if not 0 <= event.at_s < spec.duration_s:
            raise ScenarioError(f"{where}: at_s {event.at_s} is outside the scenario (0 <= at_s < duration_s {spec.duration_s})")
        if route_change_at is not None and event.at_s >= route_change_at:
            raise ScenarioError(
                f"{where}: starts at {event.at_s} s, after the route left the main road "
                f"(turn/exit announced at {route_change_at} s); put it before that event"
            )
        if event.kind == "nav" and event.maneuver in ROUTE_CHANGING_MANEUVERS:
            route_change_at = event.at_s
            if event.maneuver in ("exit_left", "keep_left") and road.oncoming_lanes:
                raise ScenarioError(f"{where}: a left exit needs a divided road (road.oncoming_lanes = 0)")
        if event.kind == "cones":
            if event.closes == "ego":
                target = ego_lane - 1 if event.side == "left" else ego_lane + 1
                if not 0 <= target < road.lanes:
                    raise ScenarioError(
                        f"{where}: closes the ego lane {ego_lane} and sends the ego {event.side}, "
                        f"but the road has no lane there (lanes 0..{road.lanes - 1})"
                    )
            else:
                neighbour = ego_lane - 1 if event.closes == "left" else ego_lane + 1
                if not 0 <= neighbour < road.lanes:
                    raise ScenarioError(f"{where}: closes the {event.closes} neighbour lane, which does not exist")
        if event.kind == "emergency_vehicle" and road.oncoming_lanes == 0:
            raise ScenarioError(f"{where}: needs an oncoming lane (road.oncoming_lanes >= 1)")
        if event.kind == "emergency_vehicle" and road.shoulder_m < 1.5:
            raise ScenarioError(f"{where}: pulling over needs a shoulder (road.shoulder_m >= 1.5)")
        if event.kind == "nav" and event.maneuver == "arrive" and road.shoulder_m < 1.5:
            raise ScenarioError(f"{where}: arriving pulls over onto the shoulder (road.shoulder_m >= 1.5)")


def parse_scenario(text: str, origin: str = "<scenario>", default_name: str = "scenario") -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{origin}: not valid TOML: {exc}") from exc
    _check_event_kinds(origin, raw)
    try:
        spec = _ScenarioFile.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_format_validation_error(origin, exc, raw)) from None
    events = sorted(spec.events, key=lambda e: e.at_s)
    spec = spec.model_copy(update={"events": events})
    _check_semantics(origin, spec)
    return Scenario(
        name=spec.name or default_name,
        description=spec.description,
        duration_s=spec.duration_s,
        fps=spec.fps,
        variant=spec.variant,
        width=spec.width,
        height=spec.height,
        ambient_traffic=spec.ambient_traffic,
        road=spec.road,
        ego=spec.ego,
        events=tuple(events),
        source_text=text,
    )


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a scenario file by path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        if not candidate.is_file():
            raise ScenarioError(f"scenario file not found: {candidate}")
        return parse_scenario(candidate.read_text(), origin=str(candidate), default_name=candidate.stem)
    path = BUILTIN_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ScenarioError(f"unknown scenario {str(name_or_path)!r}; built-ins: {', '.join(builtin_names())}")
    return parse_scenario(path.read_text(), origin=f"built-in {path.name}", default_name=path.stem)


def builtin_descriptions() -> dict[str, str]:
    return {name: load_scenario(name).description for name in builtin_names()}
