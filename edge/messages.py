"""Wire messages between the runtime and the planner (DESIGN.md contract 2) and the action
vocabulary (contract 3).

Every message is a pydantic model published as ZeroMQ multipart ``[topic, json]``. Rules that
keep the contract stable:

- ``schema_version`` is checked on receipt; a message of another version is refused, not guessed.
- Fields are added, never repurposed; units live in names (``_ms``, ``_ns``, ``_m``).
- Unknown fields are refused (``extra="forbid"``): a planner must not silently ignore a field it
  does not understand, and the runtime must not accept smuggled input on ``nav``.
- Every free-text field has a hard length bound.
"""

from __future__ import annotations

import enum
import time
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

# 2 added ActionAdvice.confidence; 3 added the LoRA adapters: ActionAdvice.adapters, Status.adapters
# and the inbound `adapter` topic. Older messages are still accepted on receipt (a version 1 advice
# has no confidence, an older advice or status names no adapters; nav and feedback did not change),
# so planners and navigation units can move at their own pace; the runtime publishes version 3.
SCHEMA_VERSION: Literal[3] = 3
ACCEPTED_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2, 3)

TOPIC_ADVICE = "advice"
TOPIC_STATUS = "status"
TOPIC_NAV = "nav"
TOPIC_FEEDBACK = "feedback"
TOPIC_ADAPTER = "adapter"

# Bounds on free text. The advice rationale is what the model writes; keep it a short clause.
RATIONALE_MAX_CHARS = 120
NAV_TEXT_MAX_CHARS = 80
STATUS_TEXT_MAX_CHARS = 200
MAX_HAZARDS = 4
MAX_CLIP_FRAMES = 16
MAX_STATUS_EVENTS = 16

NavId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
AdapterName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_][a-z0-9_.-]{0,39}$")]
MAX_ADAPTERS = 4
BoundedStatusText = Annotated[str, StringConstraints(max_length=STATUS_TEXT_MAX_CHARS)]


class MetaAction(str, enum.Enum):
    """Closed vocabulary of driving meta-actions (after DriveVLM). The decoder's grammar admits
    exactly these strings, so the planner never has to parse free-form intent."""

    KEEP_SPEED = "keep_speed"
    ACCELERATE = "accelerate"
    DECELERATE = "decelerate"
    STOP = "stop"
    KEEP_LANE = "keep_lane"
    CHANGE_LANE_LEFT = "change_lane_left"
    CHANGE_LANE_RIGHT = "change_lane_right"
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    NUDGE_LEFT = "nudge_left"
    NUDGE_RIGHT = "nudge_right"
    YIELD = "yield"
    PULL_OVER = "pull_over"


SPEED_ACTIONS = frozenset(
    {MetaAction.KEEP_SPEED, MetaAction.ACCELERATE, MetaAction.DECELERATE, MetaAction.STOP}
)


class Urgency(str, enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Hazard(str, enum.Enum):
    """What the advice reacts to. Closed so that evaluation and planners can count it."""

    VEHICLE = "vehicle"
    PEDESTRIAN = "pedestrian"
    CYCLIST = "cyclist"
    RED_LIGHT = "red_light"
    YELLOW_LIGHT = "yellow_light"
    CONE = "cone"
    JUNCTION = "junction"
    LOW_VISIBILITY = "low_visibility"


class Verdict(str, enum.Enum):
    """Budget verdict of one cycle. ``no_advice`` is still a message: the planner is never left
    guessing whether the runtime is alive."""

    OK = "ok"
    DEGRADED = "degraded"
    LATE = "late"
    NO_ADVICE = "no_advice"


class Maneuver(str, enum.Enum):
    CONTINUE = "continue"
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    KEEP_LEFT = "keep_left"
    KEEP_RIGHT = "keep_right"
    EXIT_LEFT = "exit_left"
    EXIT_RIGHT = "exit_right"
    MERGE = "merge"
    U_TURN = "u_turn"
    ARRIVE = "arrive"


class RuntimeState(str, enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    CAMERA_LOST = "camera_lost"
    STOPPING = "stopping"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Advice(_Strict):
    """What the model decides: exactly the JSON object the decoder's grammar admits."""

    action: MetaAction
    urgency: Urgency
    lateral: MetaAction | None = Field(
        default=None, description="Optional second action, usually lateral (e.g. keep_lane)."
    )
    hazards: list[Hazard] = Field(default_factory=list, max_length=MAX_HAZARDS)
    rationale: str = Field(default="", max_length=RATIONALE_MAX_CHARS)

    @field_validator("hazards")
    @classmethod
    def _each_hazard_once(cls, hazards: list[Hazard]) -> list[Hazard]:
        # The grammar cannot forbid a repeat ("red_light, red_light"); a planner should not see one.
        return list(dict.fromkeys(hazards))


class FrameRef(_Strict):
    frame_id: int = Field(ge=0)
    capture_mono_ns: int = Field(ge=0)
    capture_wall_ns: int = Field(ge=0)


class StageTimings(_Strict):
    """Per-stage latency of one cycle, in milliseconds. ``None`` means the stage did not run
    (e.g. a stale clip was dropped before encoding)."""

    capture_age_ms: float | None = None  # newest frame's age when the cycle started
    preprocess_ms: float | None = None
    encode_ms: float | None = None
    prefill_ms: float | None = None
    decode_ms: float | None = None
    publish_ms: float | None = None
    total_ms: float | None = None


class WireMessage(_Strict):
    TOPIC: ClassVar[str] = ""

    schema_version: Literal[1, 2, 3] = SCHEMA_VERSION
    seq: int = Field(default=0, ge=0, description="Per-topic sequence number; gaps reveal loss.")
    mono_ns: int = Field(default=0, ge=0, description="Sender's CLOCK_MONOTONIC at publish.")
    wall_ns: int = Field(default=0, ge=0, description="Sender's wall clock (UTC epoch) at publish.")


class ActionAdvice(WireMessage):
    TOPIC: ClassVar[str] = TOPIC_ADVICE

    cycle: int = Field(ge=0)
    verdict: Verdict
    verdict_reason: str = Field(default="", max_length=STATUS_TEXT_MAX_CHARS)
    advice: Advice | None = None
    confidence: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Calibrated probability that the advice's action is right: the decoder's probability of the "
                    "action over the actions the grammar allowed, mapped by the bundle's calibration; capped on "
                    "out-of-domain input. On a first sighting published as decelerate (verdict_reason "
                    "'unconfirmed: ...') it is the decoder's confidence in the alarm held back. Null without "
                    "advice (and in version 1 messages).")
    frames: list[FrameRef] = Field(max_length=MAX_CLIP_FRAMES)
    valid_until_mono_ns: int = Field(ge=0)
    valid_until_wall_ns: int = Field(ge=0)
    nav_id: NavId | None = None
    stages: StageTimings
    generated_tokens: int = Field(default=0, ge=0)
    degrade_level: int = Field(default=0, ge=0)
    bundle_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    adapters: list[AdapterName] = Field(default_factory=list, max_length=MAX_ADAPTERS,
                                        description="LoRA adapters of the bundle the advice was made with")


class NavInstruction(WireMessage):
    """Inbound navigation instruction. Only the structured fields steer the prompt; ``text`` is
    the name of the road the manoeuvre leads onto, bounded here and checked again before it
    reaches the model: a name that says a side, a manoeuvre or a distance is refused."""

    TOPIC: ClassVar[str] = TOPIC_NAV

    nav_id: NavId
    maneuver: Maneuver
    distance_m: float = Field(ge=0, le=100_000)
    text: str = Field(default="", max_length=NAV_TEXT_MAX_CHARS)
    ttl_ms: int = Field(default=30_000, gt=0, le=3_600_000)


class Feedback(WireMessage):
    """Inbound from a planner: "this advice was wrong". It triggers a bad-case capture around the
    advice it names (edge/drivelog/capture.py); it never changes what the runtime advises."""

    TOPIC: ClassVar[str] = TOPIC_FEEDBACK

    advice_seq: int = Field(ge=0, description="seq of the advice message this feedback is about")
    reason: str = Field(min_length=1, max_length=STATUS_TEXT_MAX_CHARS)
    expected_action: MetaAction | None = None


class AdapterChoice(_Strict):
    name: AdapterName
    scale: float = Field(default=1.0, ge=0.0, le=4.0)


class AdapterSwitch(WireMessage):
    """Inbound on the nav socket (so under the same CURVE allow-list): make `adapters` the decoder's
    LoRA set from the next cycle on (empty: the base model). A refused switch keeps the current set
    and is reported on `status` (event `adapter_refused`)."""

    TOPIC: ClassVar[str] = TOPIC_ADAPTER

    adapters: list[AdapterChoice] = Field(max_length=MAX_ADAPTERS)


class StatusEvent(_Strict):
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")]
    message: BoundedStatusText = ""
    count: int = Field(default=1, ge=0)


class StageStats(_Strict):
    p50_ms: float
    p99_ms: float
    n: int


class Status(WireMessage):
    TOPIC: ClassVar[str] = TOPIC_STATUS

    state: RuntimeState
    heartbeat_interval_ms: int = Field(gt=0)
    uptime_ms: int = Field(ge=0)
    vision_backend: str = Field(default="", max_length=STATUS_TEXT_MAX_CHARS)
    vision_backend_reason: BoundedStatusText = ""
    bundle_sha256: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    cycles: int = Field(default=0, ge=0)
    verdicts: dict[Verdict, int] = Field(default_factory=dict)
    frame_drop_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    stages: dict[str, StageStats] = Field(default_factory=dict)
    degrade_level: int = Field(default=0, ge=0)
    nav_id: NavId | None = None
    inbound_rejected: dict[str, int] = Field(default_factory=dict)
    events: list[StatusEvent] = Field(default_factory=list, max_length=MAX_STATUS_EVENTS)
    adapters: list[AdapterChoice] = Field(
        default_factory=list, max_length=MAX_ADAPTERS,
        description="The decoder's LoRA adapters in use (name, scale): those the latest advice was made with. An "
                    "accepted switch shows here from the cycle that applies it; empty: the base model.")


MESSAGE_TYPES: dict[str, type[WireMessage]] = {
    TOPIC_ADVICE: ActionAdvice,
    TOPIC_STATUS: Status,
    TOPIC_NAV: NavInstruction,
    TOPIC_FEEDBACK: Feedback,
    TOPIC_ADAPTER: AdapterSwitch,
}


def now_ns() -> tuple[int, int]:
    """(monotonic, wall) clock readings in ns, taken together."""
    return time.monotonic_ns(), time.time_ns()
