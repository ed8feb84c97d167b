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


def target_advice(window: LabelWindow) -> Advice:
    return window.advice().model_copy(update={"rationale": short_rationale(window)})


def target_text(window: LabelWindow) -> str:
    """The exact answer text: the grammar's JSON followed by the end-of-turn token."""
    return format_advice_json(target_advice(window)) + END_OF_TURN
