"""Label window -> the advice the model is trained to write.

The target is the label's advice (primary action, urgency, lateral action, hazards) with a SHORT,
deterministic rationale: every generated token costs decode time on the device, and a two-word
reason ("red light") says as much to the planner as the label's sentence.
"""

from __future__ import annotations

from edge.grammar import format_advice_json
from edge.messages import Advice, Hazard, MetaAction
from sim.labels import LabelWindow

# The end-of-turn token closes the answer: the runtime stops on it (end of generation).
END_OF_TURN = "<|im_end|>"

HAZARD_PHRASES = {
    Hazard.RED_LIGHT: "red light",
    Hazard.YELLOW_LIGHT: "yellow light",
    Hazard.PEDESTRIAN: "pedestrian",
    Hazard.CYCLIST: "cyclist",
    Hazard.VEHICLE: "vehicle ahead",
    Hazard.CONE: "cones",
    Hazard.JUNCTION: "junction",
}

# By the label's source (what the simulated driver reacts to); None: decided below.
SOURCE_PHRASES = {
    "cruise": "road clear",
    "lead_brake": "lead car braking",
    "pedestrian_cross": "pedestrian",
    "cyclist": "cyclist",
    "obstacle": "stalled car",
    "cones": "cones",
    "speed_limit": "speed limit",
    "cross_traffic": "crossing car",
    "emergency_vehicle": "emergency vehicle",
    "traffic_light": None,
    "nav": None,
}

NAV_PHRASES = {
    MetaAction.TURN_LEFT: "turn left",
    MetaAction.TURN_RIGHT: "turn right",
    MetaAction.CHANGE_LANE_LEFT: "exit left",
    MetaAction.CHANGE_LANE_RIGHT: "exit right",
    MetaAction.PULL_OVER: "destination",
    MetaAction.STOP: "destination",
}


def short_rationale(window: LabelWindow) -> str:
    """Two or three words naming what the advice reacts to (deterministic per label window)."""
    hazards = [h for h in window.hazards if h is not Hazard.LOW_VISIBILITY]
    if window.source == "traffic_light":
        return HAZARD_PHRASES[hazards[0]] if hazards else "green light"
    if window.source == "nav":
        return NAV_PHRASES.get(window.primary, "route")
    if window.source == "emergency_vehicle" and not hazards:
        return "road clear"
    phrase = SOURCE_PHRASES.get(window.source)
    if phrase is not None:
        return phrase
    return HAZARD_PHRASES[hazards[0]] if hazards else "road clear"


# Actions kept as the target whenever they are the label's primary: they name a manoeuvre the
# planner must not miss (and the navigation line or a clear visual cue decides them).
MANOEUVRES = frozenset({
    MetaAction.PULL_OVER, MetaAction.TURN_LEFT, MetaAction.TURN_RIGHT, MetaAction.CHANGE_LANE_LEFT,
    MetaAction.CHANGE_LANE_RIGHT, MetaAction.NUDGE_LEFT, MetaAction.NUDGE_RIGHT,
})


def target_action(window: LabelWindow) -> MetaAction:
    """One canonical answer among the actions the label accepts.

    The labels list every acceptable action (primary first), and several situations that look
    alike on a 2-second clip accept the same safe answer: approaching a yellow or red light, a
    braking lead car and a crossing pedestrian all accept `stop`; cruising, speeding up after a
    green light and passing closed cones all accept `keep_speed`. Training one answer per group
    (instead of a primary that differs between look-alike windows: accelerate vs keep_speed, yield
    vs decelerate vs stop) gives the small model a consistent target; a manoeuvre (turn, lane
    change, nudge, pull over) that is the primary stays the answer.
    """
    if window.primary in MANOEUVRES:
        return window.primary
    if MetaAction.STOP in window.actions:
        return MetaAction.STOP
    if MetaAction.KEEP_SPEED in window.actions:
        return MetaAction.KEEP_SPEED
    return window.primary


def target_advice(window: LabelWindow) -> Advice:
    action = target_action(window)
    lateral = window.lateral
    if lateral == action:  # e.g. cones: primary keep_lane with lateral keep_speed -> keep_speed + keep_lane
        lateral = window.primary if window.primary != action else None
    return window.advice().model_copy(update={"action": action, "lateral": lateral,
                                              "rationale": short_rationale(window)})


def target_text(window: LabelWindow) -> str:
    """The exact answer text: the grammar's JSON followed by the end-of-turn token."""
    return format_advice_json(target_advice(window)) + END_OF_TURN
