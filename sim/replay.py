"""Replay a recorded (or rendered) drive through the real runtime loop.

The video plays as the camera, the navigation timeline is published on the runtime's nav
socket at its times, a recording planner subscribes to ``advice`` and ``status`` like a real
planner would, and a report is written from what it received. Nothing here re-implements the
loop: it is ``edge.runtime.running_loop`` with a different feed and clock.

Modes:
- ``lockstep``: clips at fixed instants of a simulated clock that stands still while the model
  computes; nav messages are delivered before the cycle they belong to. Same inputs, same
  advice sequence (timing fields aside).
- ``fast``: the same stepping, as fast as the loop goes, with latency budgets enforced on the
  real clock (late and dropped cycles happen as on the road).
- ``realtime``: the capture thread plays the file at its frame rate times ``speed``; the loop
  takes the freshest clip and nav is published on the wall clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edge.bus import Publisher, Subscriber
from edge.capture import CaptureOptions, VideoFileStepper
from edge.config import RuntimeConfig, load_config
from edge.feeds import SimClock, SteppedFeed, SystemClock, open_live_feed
from edge.loop import AdviceLoop, CycleOutcome
from edge.messages import TOPIC_ADVICE, TOPIC_STATUS, ActionAdvice, NavInstruction, Status
from edge.runtime import ModelParts, load_model_parts, running_loop
from sim.labels import load_nav
from sim.report import ReportFiles, write_report
from sim.scene import is_rendered_scene

Mode = Literal["lockstep", "fast", "realtime"]
MODES: tuple[Mode, ...] = ("lockstep", "fast", "realtime")
NAV_DELIVERY_TIMEOUT_S = 5.0
REPLAY_ENDPOINT = "tcp://127.0.0.1:*"  # an endpoint the configuration leaves unset
RECORDER_DRAIN_TIMEOUT_S = 5.0
# How long a rendered scene may stand still before its frames count as frozen input (a red-light wait
# lasts up to about 7 s).
RENDERED_STILL_S = 10.0


@dataclass(frozen=True)
class ReplayedCycle:
    """One cycle the loop ran: its newest frame's video time and the advice the planner received
    for it (None: published, but not received before the replay ended)."""

    cycle: int
    video_time_ms: float
    received: ActionAdvice | None


@dataclass
class ReplayResult:
    advice: list[ActionAdvice]  # as the planner received them
    status: list[Status]
    fps: float  # the video's, to place a frame id on its time line
    wall_s: float
    video_duration_ms: float | None
    report: ReportFiles | None = None
    outcomes: list[CycleOutcome] = field(default_factory=list)  # every cycle the loop ran

    @property
    def accuracy(self) -> float | None:
        return None if self.report is None else self.report.report.get("accuracy")

    @property
    def video_times_ms(self) -> list[float]:
        """Per received advice, the video time of its newest frame."""
        return [_video_time_ms(a, self.fps) for a in self.advice]

    def cycles(self) -> list[ReplayedCycle]:
        """Every cycle the loop ran, in order, matched by cycle number with what the planner
        received. Judging these rather than the received messages alone means a message lost on
        the way (or still in flight when the drain gave up) counts as a cycle without advice, not
        as a cycle that never happened."""
        received = {a.cycle: a for a in self.advice}
        return [ReplayedCycle(o.advice.cycle, _video_time_ms(o.advice, self.fps), received.get(o.advice.cycle))
                for o in self.outcomes]

    @property
    def lost_cycles(self) -> list[int]:
        """Cycles the loop published whose advice the planner did not receive."""
        return [c.cycle for c in self.cycles() if c.received is None]


class RecordingPlanner:
    """Subscribes like a planner and records every message with its receipt time."""

    def __init__(self, endpoint: str):
        self._sub = Subscriber(endpoint, [TOPIC_ADVICE, TOPIC_STATUS])
        self.advice: list[ActionAdvice] = []
        self.status: list[Status] = []
        self.rows: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recording-planner", daemon=True)

    def start(self, publisher_probe: Callable[[], object]) -> RecordingPlanner:
        """Start, and make sure the subscription is live before the replay begins (ZeroMQ's slow
        joiner would otherwise lose the first messages)."""
        deadline = time.monotonic() + 5
        while not self.status and time.monotonic() < deadline:
            publisher_probe()
            got = self._sub.receive(timeout_ms=50)
            if got is not None:
                self._record(got)
        self._thread.start()
        return self

    def _record(self, got) -> None:
        row = got.message.model_dump(mode="json") | {"topic": got.topic, "recv_mono_ns": got.recv_mono_ns}
        self.rows.append(row)
        (self.advice if got.topic == TOPIC_ADVICE else self.status).append(got.message)

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self._sub.receive(timeout_ms=50)
            if got is not None:
                self._record(got)

    def wait_for_advice(self, count: int, timeout_s: float = RECORDER_DRAIN_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.advice) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._sub.close()


class NavTimeline:
    """Publishes nav.jsonl's instructions on the runtime's nav socket when their time comes."""

    def __init__(self, endpoint: str, events: list[tuple[int, NavInstruction]]):
        self.events = sorted(events, key=lambda e: e[0])
        self._next = 0
        self._pub = Publisher(endpoint, bind=False)
        self.sent = 0

    def due(self, t_ms: float) -> list[NavInstruction]:
        out = []
        while self._next < len(self.events) and self.events[self._next][0] <= t_ms:
            out.append(self.events[self._next][1])
            self._next += 1
        return out

    def deliver_until(self, t_ms: float, loop: AdviceLoop) -> None:
        """Lock-step delivery: publish what is due and wait until the loop has taken it."""
        for message in self.due(t_ms):
            deadline = time.monotonic() + NAV_DELIVERY_TIMEOUT_S
            while True:
                self._pub.publish(message)
                self.sent += 1
                got = loop.parts.nav_in.receive(timeout_ms=100) if loop.parts.nav_in else None
                if got is not None:
                    loop.offer_nav(got.message)  # type: ignore[arg-type]
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the runtime's nav socket did not receive the timeline")
            # A retry's duplicate (slow joiner) is harmless: the latest valid instruction wins.

    def publish_due(self, t_ms: float) -> None:
        for message in self.due(t_ms):
            self._pub.publish(message)
            self.sent += 1

    def close(self) -> None:
        self._pub.close()


def replay_config(
    bundle: Path,
    *,
    vision_precision: str = "auto",
    decoder_quant: str = "auto",
    interval_ms: int = 500,
    audit_path: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    config_file: Path | None = None,
) -> RuntimeConfig:
    """The runtime configuration of a replay. Endpoints the configuration (file or overrides) names
    are bound as given, so a planner outside the simulator can follow the replay; the others are
    a free port on the loopback interface, so replays never collide with a runtime on the box."""
    sets = [
        f"bundle={str(bundle)!r}",
        f"vision.precision={vision_precision!r}",
        f"decoder.quant={decoder_quant!r}",
        f"camera.interval_ms={interval_ms}",
    ]
    if audit_path is not None:
        sets.append(f"audit.path={str(audit_path)!r}")
    config = load_config(config_file, [*sets, *overrides])
    for key in ("publish_endpoint", "nav_endpoint"):
        if key not in config.bus.model_fields_set:
            setattr(config.bus, key, REPLAY_ENDPOINT)
    return config


def for_video(config: RuntimeConfig, video: Path) -> RuntimeConfig:
    """`config` for replaying `video`: a rendered scene stands still while the car waits (its renderer
    repeats frames exactly, which a camera never does), so identical frames count as frozen input only
    after RENDERED_STILL_S there; an `advice.frozen_after_s` the configuration sets is kept."""
    if "frozen_after_s" in config.advice.model_fields_set or not is_rendered_scene(video):
        return config
    advice = config.advice.model_copy(update={"frozen_after_s": RENDERED_STILL_S})
    return config.model_copy(update={"advice": advice})


def _print_nothing(_outcome: CycleOutcome) -> None:
    pass


@dataclass(frozen=True)
class ReplayOptions:
    """How a drive is replayed (`edge sim`'s flags)."""

    mode: Mode = "lockstep"
    speed: float = 1.0  # realtime mode: video seconds per wall second
    vision_precision: str = "auto"
    decoder_quant: str = "auto"
    interval_ms: int = 500
    max_cycles: int | None = None
    annotate: bool = True  # the report's annotated.mp4 (needs out_dir)


def replay_scene(
    bundle: Path,
    video: Path,
    nav: Path | None = None,
    labels: Path | None = None,
    options: ReplayOptions | None = None,
    *,
    out_dir: Path | None = None,
    config: RuntimeConfig | None = None,
    models: ModelParts | None = None,
    on_cycle: Callable[[CycleOutcome], None] = _print_nothing,
) -> ReplayResult:
    """Replay `video` (with its nav timeline) through the runtime; with `out_dir`, write the report.
    `config` and `models` default to the replay configuration and the bundle's parts."""
    o = options or ReplayOptions()
    if o.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {o.mode!r}")
    if o.speed <= 0:
        raise ValueError(f"speed must be > 0, got {o.speed}")
    video = Path(video)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    if config is None:
        config = replay_config(
            bundle, vision_precision=o.vision_precision, decoder_quant=o.decoder_quant, interval_ms=o.interval_ms,
            audit_path=Path(out_dir) / "audit.jsonl" if out_dir is not None else None,
        )
    config = for_video(config, video)
    own_models = models is None
    parts = load_model_parts(config) if models is None else models
    nav_events = load_nav(nav) if nav is not None else []
    try:
        if o.mode == "realtime":
            result = _replay_realtime(config, parts, video, nav_events, o.speed, o.max_cycles, on_cycle)
        else:
            result = _replay_stepped(config, parts, video, nav_events, o.mode, o.max_cycles, on_cycle,
                                     parts.manifest.profile.frames_per_clip)
    finally:
        if own_models:
            parts.close()
    if out_dir is not None:
        result.report = write_report(
            out_dir,
            advice=[a.model_dump(mode="json") for a in result.advice],
            status=[s.model_dump(mode="json") for s in result.status],
            labels=labels,
            budgets_ms=config.budgets.model_dump(),
            video=video if o.annotate else None,
            video_times_ms=result.video_times_ms,
            extra={"mode": o.mode, "speed": o.speed, "video": str(video), "wall_s": result.wall_s,
                   "video_duration_ms": result.video_duration_ms, "lost_cycles": result.lost_cycles,
                   "vision_backend": parts.vision.name, "decoder": parts.decoder.artifact.quant},
        )
    return result


def _video_time_ms(advice: ActionAdvice, fps: float) -> float:
    return advice.frames[-1].frame_id * 1000.0 / fps if advice.frames else 0.0


def _replay_stepped(config, models, video, nav_events, mode, max_cycles, on_cycle, frames_per_clip) -> ReplayResult:
    clock = SimClock()
    stepper = VideoFileStepper(video)
    feed = SteppedFeed(stepper, clock, config.camera.interval_ms, frames_per_clip)
    lockstep = mode == "lockstep"
    outcomes: list[CycleOutcome] = []
    started = time.monotonic()
    with running_loop(config, models=models, feed=feed, clock=clock, enforce_deadlines=not lockstep) as loop:
        planner = RecordingPlanner(loop.parts.publisher.endpoint).start(loop.publish_status)
        timeline = NavTimeline(loop.parts.nav_in.endpoint, nav_events)  # type: ignore[union-attr]
        try:
            while max_cycles is None or len(outcomes) < max_cycles:
                clip = loop.next_clip()
                if clip is None:
                    break
                t_ms = clock.mono_ns() / 1e6
                if lockstep:
                    timeline.deliver_until(t_ms, loop)
                else:
                    timeline.publish_due(t_ms)
                outcome = loop.run_cycle(clip)
                outcomes.append(outcome)
                on_cycle(outcome)
            loop.publish_status()
            planner.wait_for_advice(len(outcomes))
        finally:
            timeline.close()
            planner.close()
    return ReplayResult(planner.advice, planner.status, stepper.fps, time.monotonic() - started, stepper.duration_ms,
                        outcomes=outcomes)


def _replay_realtime(config, models, video, nav_events, speed, max_cycles, on_cycle) -> ReplayResult:
    probe = VideoFileStepper(video)
    fps = probe.fps
    probe.close()
    options = CaptureOptions(
        interval_ms=config.camera.interval_ms / speed,  # sample the same video instants, faster
        frames_per_clip=models.manifest.profile.frames_per_clip,
        fps_override=fps * speed,
    )
    feed = open_live_feed(str(video), options, models.preprocessor)
    capture = feed.capture
    outcomes: list[CycleOutcome] = []
    started = time.monotonic()
    with running_loop(config, models=models, feed=feed, clock=SystemClock(), enforce_deadlines=True) as loop:
        planner = RecordingPlanner(loop.parts.publisher.endpoint).start(loop.publish_status)
        timeline = NavTimeline(loop.parts.nav_in.endpoint, nav_events)  # type: ignore[union-attr]
        stop = threading.Event()

        def publish_nav() -> None:
            while not stop.wait(0.02):
                timeline.publish_due((time.monotonic() - started) * 1000 * speed)

        nav_thread = threading.Thread(target=publish_nav, name="nav-timeline", daemon=True)
        nav_thread.start()
        try:
            loop.run(max_cycles=max_cycles, on_cycle=lambda o: (outcomes.append(o), on_cycle(o)))
            loop.publish_status()
            planner.wait_for_advice(len(outcomes))
        finally:
            stop.set()
            nav_thread.join(timeout=2)
            timeline.close()
            planner.close()
    ended = capture.status()
    duration = ended.last_frame_id * 1000.0 / fps if ended.last_frame_id is not None else None
    return ReplayResult(planner.advice, planner.status, fps, time.monotonic() - started, duration, outcomes=outcomes)
