"""What the event behaviours share: the label vocabulary's short names, each kind's label priority,
the looks of cars and clothes, and small helpers for sides, lanes and stopping."""

from __future__ import annotations

from edge.messages import Hazard, MetaAction, Urgency
from sim.scenario import LANE_WIDTH_M, ScenarioError

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
