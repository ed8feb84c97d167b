"""Navigation fusion: keep the latest valid instruction, expire it, and turn it into prompt text.

Navigation is a slow, untrusted input. Only its structured fields (maneuver, distance) steer
the prompt, through a fixed template with bucketed distances, so that small distance changes
do not change the prompt every cycle and the model sees a small closed set of phrasings. The
free-text road name is checked against a narrow character set; a message whose text could
close the template, carry instructions, or say where and when to go is refused as a whole and
counted, never "cleaned" into something the sender did not say. The last matters as much as
injection: "Turn left in 80 m" as the road name of a turn_right instruction would put both sides
and an unbucketed distance into the prompt, and only the structured fields may say those.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from edge.messages import Maneuver, NavInstruction

# Distances are rounded up to these buckets (metres) before they enter the prompt.
DISTANCE_BUCKETS_M = (25, 50, 100, 150, 200, 300, 500, 800, 1_000, 2_000)
ROAD_NAME_MAX_CHARS = 40
# Letters, digits, space and the punctuation of road names ("St. Mary's Rd", "A-9/B 12").
_ROAD_NAME_OK = re.compile(r"^[A-Za-z0-9 .,'/&()-]*$")
# Phrases that try to talk to the model rather than name a road.
_INSTRUCTION_WORDS = re.compile(
    r"\b(ignore|disregard|instruction|instructions|system|assistant|prompt|respond|output|json)\b",
    re.IGNORECASE,
)
# What only the structured fields may say: a manoeuvre, a side, a distance. Real road names
# rarely hold these words ("Turnpike", "Exit 12B" and "Straightway" pass: whole words only).
_MANEUVER_WORDS = re.compile(
    r"\b(left|right|turn|u-turn|keep|merge|continue|straight|arrive|arrived|destination|now)\b",
    re.IGNORECASE,
)
_DISTANCE = re.compile(
    r"\b\d+(?:[.,]\d+)?\s*(?:m|km|ft|mi|yd|meters?|metres?|kilometers?|kilometres?|feet|miles?|yards?)\b",
    re.IGNORECASE,
)

MANEUVER_PHRASES = {
    Maneuver.CONTINUE: "continue straight",
    Maneuver.TURN_LEFT: "turn left",
    Maneuver.TURN_RIGHT: "turn right",
    Maneuver.KEEP_LEFT: "keep left",
    Maneuver.KEEP_RIGHT: "keep right",
    Maneuver.EXIT_LEFT: "take the exit on the left",
    Maneuver.EXIT_RIGHT: "take the exit on the right",
    Maneuver.MERGE: "merge",
    Maneuver.U_TURN: "make a u-turn",
    Maneuver.ARRIVE: "arrive at the destination",
}


class NavRefused(ValueError):
    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def bucket_distance(distance_m: float) -> str:
    for bucket in DISTANCE_BUCKETS_M:
        if distance_m <= bucket:
            return f"{bucket} m" if bucket < 1_000 else f"{bucket // 1_000} km"
    return f"more than {DISTANCE_BUCKETS_M[-1] // 1_000} km"


def check_road_name(text: str) -> str:
    """The road name as it may enter the prompt, or NavRefused."""
    text = " ".join(text.split())
    if len(text) > ROAD_NAME_MAX_CHARS:
        raise NavRefused("nav_text_too_long", f"{len(text)} chars > {ROAD_NAME_MAX_CHARS}")
    if not _ROAD_NAME_OK.match(text):
        bad = sorted({c for c in text if not _ROAD_NAME_OK.match(c)})
        raise NavRefused("nav_injection", f"text has characters outside a road name: {bad[:5]!r}")
    if _INSTRUCTION_WORDS.search(text):
        raise NavRefused("nav_injection", "text reads like an instruction, not a road name")
    if _MANEUVER_WORDS.search(text) or _DISTANCE.search(text):
        raise NavRefused("nav_text_conflict",
                         f"text {text!r} reads like a manoeuvre or a distance; only the maneuver and "
                         "distance_m fields may say where and when, the text names the road")
    return text


def nav_sentence(nav: NavInstruction | None) -> str:
    """The deterministic navigation line of the prompt."""
    if nav is None:
        return "Navigation: no instruction."
    phrase = MANEUVER_PHRASES[nav.maneuver]
    road = check_road_name(nav.text)
    if nav.maneuver is Maneuver.CONTINUE:
        return f"Navigation: {phrase}{f' on {road}' if road else ''}."
    where = f" onto {road}" if road and nav.maneuver is not Maneuver.ARRIVE else ""
    return f"Navigation: {phrase}{where} in {bucket_distance(nav.distance_m)}."


@dataclass
class _Held:
    message: NavInstruction
    received_mono_ns: int
    expires_mono_ns: int


@dataclass
class NavState:
    """The latest valid instruction, held until its time to live runs out."""

    max_ttl_ms: int = 120_000
    refused: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    last_refusal: NavRefused | None = None
    expired: int = 0
    _held: _Held | None = None

    def offer(self, message: NavInstruction, now_mono_ns: int) -> bool:
        """Take a new instruction if it is acceptable; count and refuse it otherwise."""
        try:
            check_road_name(message.text)
        except NavRefused as exc:
            self.refused[exc.kind] += 1
            self.last_refusal = exc
            return False
        self.accepted += 1
        ttl_ms = min(message.ttl_ms, self.max_ttl_ms)
        self._held = _Held(message, now_mono_ns, now_mono_ns + ttl_ms * 1_000_000)
        return True

    def current(self, now_mono_ns: int) -> NavInstruction | None:
        held = self._held
        if held is None:
            return None
        if now_mono_ns >= held.expires_mono_ns:
            self._held = None
            self.expired += 1
            return None
        return held.message
