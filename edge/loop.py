"""The advice loop: clip -> preprocess -> encode -> prefill -> decode -> publish, under budgets.

One cycle takes the freshest clip from its feed and always ends in exactly one ``advice``
message (``ok``, ``degraded``, ``late`` or ``no_advice``), never in silence. A heartbeat thread
publishes ``status`` at a fixed rate even while a cycle is busy or the camera is gone. The loop
does not know whether it runs on the road or in the simulator: that is the feed's and the
clock's business (edge/feeds.py).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TypeVar, cast

from edge.adapter_control import offer_adapter_switch
from edge.audit import AuditLog, AuditWriteError
from edge.budgets import DegradeController, degrade_policy, over_budget
from edge.bus import Publisher, Subscriber
from edge.capture import CaptureState, Clip
from edge.config import BudgetConfig, RuntimeConfig
from edge.confirm import AlarmConfirmation
from edge.cpus import pinned
from edge.decoder import AdviceDecoder, DecodeResult
from edge.drivelog import DriveTap
from edge.feeds import ClipFeed, Clock, FeedHealth
from edge.llm.confidence import ConfidenceCalibration
from edge.llm.video import on_sampling_grid
from edge.manifest import BundleManifest
from edge.messages import (
    ActionAdvice,
    AdapterChoice,
    AdapterSwitch,
    Advice,
    Feedback,
    FrameRef,
    NavInstruction,
    RuntimeState,
    StageTimings,
    Status,
    Verdict,
)
from edge.nav import NavRefused, NavState, nav_sentence
from edge.ood import OodCheck, OodDetector
from edge.preprocess import Preprocessor
from edge.telemetry import Telemetry
from edge.vision import VisionBackend

log = logging.getLogger(__name__)
M = TypeVar("M", ActionAdvice, Status)

FEED_STATE_TO_RUNTIME: dict[CaptureState, RuntimeState] = {
    "camera_lost": RuntimeState.CAMERA_LOST,
    "ended": RuntimeState.CAMERA_LOST,
    "stopped": RuntimeState.STOPPING,
    "starting": RuntimeState.STARTING,
}


@dataclass
class CycleOutcome:
    """What one cycle produced, for the audit log, the simulator and the benchmarks."""

    advice: ActionAdvice
    stages_ms: dict[str, float | None]
    cycle_wall_ms: float
    raw_text: str = ""
    nav_line: str = ""
    prompt_sha256: str = ""
    decode: DecodeResult | None = None
    ood: OodCheck | None = None


@dataclass
class LoopParts:
    """The components a loop drives. The runtime builds them from a bundle and a config; tests and
    the simulator may build them differently, but they are always the real components."""

    manifest: BundleManifest
    preprocessor: Preprocessor
    vision: VisionBackend
    vision_reason: str
    decoder: AdviceDecoder
    feed: ClipFeed
    clock: Clock
    publisher: Publisher
    nav_in: Subscriber | None = None
    audit: AuditLog | None = None
    tap: DriveTap | None = None  # drive log, capture, live view: handed every clip and message
    enforce_deadlines: bool = True  # False in lock-step replay: the simulated clock decides ages
    # Out-of-domain checks and the confidence calibration the bundle carries (edge.ood,
    # edge.llm.confidence); without them: no embedding check, raw confidence.
    ood: OodDetector | None = None
    calibration: ConfidenceCalibration | None = None


@dataclass
class AdviceLoop:
    config: RuntimeConfig
    parts: LoopParts
    telemetry: Telemetry = field(default_factory=Telemetry)

    def __post_init__(self) -> None:
        budgets = self.config.budgets
        self.degrade = DegradeController.from_budgets(budgets)
        self.nav = NavState(max_ttl_ms=self.config.nav.max_ttl_ms)
        self.confirmation = AlarmConfirmation(self.config.advice.confirm_cycles)
        self.bundle_sha256 = self.parts.manifest.bundle_sha256()
        self._publish_lock = threading.Lock()
        self._stop = threading.Event()
        self._started_ns = time.monotonic_ns()
        self._last_seq = 0
        self._cycle = 0
        self._last_feed_state: CaptureState = "ok"
        self._feed_lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self.replayed_degrade_level: int | None = None
        self._model_cpus = self.config.cpu.model_cpus()
        self._audit_failing = False

    # -- publishing ---------------------------------------------------------------------------

    def _publish(self, message: M) -> M:
        # ZeroMQ sockets are not thread-safe; the loop and the heartbeat share one under a lock.
        with self._publish_lock:
            sent = self.parts.publisher.publish(message)
            if not self.parts.publisher.last_send_complete:
                self._planner_not_reading(sent.TOPIC)
        if self.parts.tap is not None:
            self.parts.tap.message(sent)
        return sent

    def _planner_not_reading(self, topic: str) -> None:
        """A subscriber's queue is full: it stopped reading (or reads slower than we publish).
        libzmq drops for it from now on without telling us, until it reads again; the next time
        its queue fills it is counted again, so the event's count is the stalls seen."""
        publisher = self.parts.publisher
        undelivered = ", ".join(f"{t} {n}" for t, n in sorted(publisher.undelivered.items()))
        self.telemetry.event("planner_not_reading", f"a subscriber of {topic!r} stopped reading: its queue "
                             f"({publisher.send_hwm} messages) is full; messages to it are dropped "
                             f"(undelivered so far: {undelivered})")

    def status_message(self) -> Status:
        health = self.parts.feed.health()
        self._feed_changed(health)  # the heartbeat notices a lost camera even mid-cycle
        state = FEED_STATE_TO_RUNTIME.get(health.state)
        if state is None:
            state = RuntimeState.DEGRADED if self.degrade_level else RuntimeState.RUNNING
        rejected = dict(self.nav.refused)
        if self.parts.nav_in is not None:  # the inbound socket: nav and feedback
            for (topic, kind), count in self.parts.nav_in.rejected_per_topic.items():
                rejected[f"{topic or 'nav'}_{kind}"] = count
        current_nav = self.nav.current(self.parts.clock.mono_ns())
        return Status(
            state=state,
            heartbeat_interval_ms=self.config.bus.status_interval_ms,
            uptime_ms=(time.monotonic_ns() - self._started_ns) // 1_000_000,
            vision_backend=self.parts.vision.name,
            vision_backend_reason=self.parts.vision_reason[:200],
            bundle_sha256=self.bundle_sha256,
            cycles=self.telemetry.cycles,
            verdicts=dict(self.telemetry.verdicts),
            frame_drop_ratio=min(1.0, max(0.0, health.drop_ratio)),
            stages=self.telemetry.stage_stats(),
            degrade_level=self.degrade_level,
            nav_id=current_nav.nav_id if current_nav else None,
            inbound_rejected=rejected,
            events=self.telemetry.events(),
            # The applied set, not a pending request: it changes with the advice that first uses it.
            adapters=[AdapterChoice(name=n, scale=s) for n, s in self.parts.decoder.adapters.active],
        )

    def publish_status(self) -> Status:
        return self._publish(self.status_message())

    def _heartbeat_run(self) -> None:
        interval_s = self.config.bus.status_interval_ms / 1000
        while not self._stop.wait(interval_s):
            try:
                self.publish_status()
            except Exception:  # the heartbeat must outlive any single bad reading
                log.exception("status heartbeat failed")

    def start_heartbeat(self) -> None:
        self._heartbeat = threading.Thread(target=self._heartbeat_run, name="status-heartbeat", daemon=True)
        self._heartbeat.start()

    def stop(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)

    # -- navigation ---------------------------------------------------------------------------

    def poll_nav(self) -> int:
        """Take the inbound messages waiting on the socket: nav (only the latest valid one counts)
        and feedback.

        At most ``bus.receive_hwm`` raw messages per cycle, so a publisher flooding faster than
        they can be parsed delays a cycle by that many parse costs and no more; the rest waits
        for the next cycle or is dropped by the socket's high-water mark. Returns how many were
        taken (valid or not)."""
        nav_in = self.parts.nav_in
        if nav_in is None:
            return 0
        cap = self.config.bus.receive_hwm
        taken = 0
        while taken < cap:
            before = nav_in.handled()
            got = nav_in.receive(timeout_ms=0, max_messages=cap - taken)
            step = nav_in.handled() - before
            taken += step
            if got is None:
                if step == 0:  # nothing waiting (a rejected message ends receive(), not the drain)
                    break
            elif isinstance(got.message, Feedback):
                self.offer_feedback(got.message)
            elif isinstance(got.message, AdapterSwitch):
                offer_adapter_switch(self.parts.decoder.adapters, got.message, self.telemetry.event)
            else:
                self.offer_nav(cast(NavInstruction, got.message))
        if taken >= cap:
            self.telemetry.event("nav_flood", f"{taken} nav messages waiting in one cycle (the per-cycle cap); "
                                 "the rest wait or are dropped at the receive high-water mark")
        return taken

    def offer_feedback(self, message: Feedback) -> None:
        """A planner says advice `advice_seq` was wrong: logged (and captured); the advice is not changed."""
        self.telemetry.event("feedback", f"advice seq {message.advice_seq}: {message.reason}")
        if self.parts.tap is not None:
            self.parts.tap.message(message)

    def offer_nav(self, message: NavInstruction) -> bool:
        if self.parts.tap is not None:
            self.parts.tap.message(message)
        accepted = self.nav.offer(message, self.parts.clock.mono_ns())
        if not accepted:
            self.telemetry.event("nav_refused", f"nav {message.nav_id} refused: {self.nav.last_refusal}")
        return accepted

    # -- one cycle ----------------------------------------------------------------------------

    def _feed_changed(self, health: FeedHealth) -> None:
        with self._feed_lock:  # called by the loop and by the heartbeat
            self._note_feed_state(health)

    def _note_feed_state(self, health: FeedHealth) -> None:
        if health.state != self._last_feed_state:
            if health.state in ("camera_lost", "ended"):
                self.telemetry.event("camera_lost", health.reason or health.state)
                # A video file that ends (a replay, a looped test drive) is expected; a lost camera is not.
                (log.info if health.state == "ended" else log.warning)("camera %s: %s", health.state, health.reason)
            elif self._last_feed_state in ("camera_lost", "ended") and health.state == "ok":
                self.telemetry.event("camera_recovered", "frames are flowing again")
            self._last_feed_state = health.state

    @property
    def degrade_level(self) -> int:
        """The level that shapes the next cycle. Lock-step replay never degrades by itself: the
        level follows real-time budgets, and letting it skip clips or shorten answers would make the
        advice sequence depend on how busy the machine is. Process replay of a drive log sets the
        level each recorded cycle ran at (`replayed_degrade_level`): it is part of that input."""
        if self.replayed_degrade_level is not None:
            return self.replayed_degrade_level
        return self.degrade.level if self.parts.enforce_deadlines else 0

    def next_clip(self) -> Clip | None:
        policy = degrade_policy(self.degrade_level, self.config.decoder.max_tokens)
        skip = max(1, round(policy.interval_factor))
        timeout_s = 2 * self.config.camera.interval_ms * skip / 1000
        clip = self.parts.feed.next_clip(self._last_seq, timeout_s, skip)
        self._feed_changed(self.parts.feed.health())
        if clip is not None:
            self._last_seq = clip.seq
        return clip

    def run_cycle(self, clip: Clip) -> CycleOutcome:
        """Process one clip and publish exactly one advice message for it."""
        clock, budgets = self.parts.clock, self.config.budgets
        started = time.perf_counter()
        # The cycle's deadline on time.monotonic(), which llama.cpp's loop checks per chunk and per
        # token. Lock-step replay computes on a clock that stands still: no deadline there.
        enforce = self.parts.enforce_deadlines
        deadline = time.monotonic() + budgets.total_ms / 1000 if enforce else float("inf")
        decode_budget_s = budgets.decode_ms / 1000 if enforce else float("inf")
        self.poll_nav()
        age_ms = clip.age_ms(clock.mono_ns())
        stages: dict[str, float | None] = {"capture_age_ms": age_ms}
        level = self.degrade_level
        policy = degrade_policy(level, self.config.decoder.max_tokens)

        def finish(verdict: Verdict, reason: str, advice: Advice | None, **extra) -> CycleOutcome:
            return self._finish(clip, started, stages, verdict, reason, advice, level, **extra)

        if enforce and age_ms > budgets.max_frame_age_ms:
            self.telemetry.event("stale_clip_dropped", f"clip age {age_ms:.0f} ms")
            return finish(Verdict.NO_ADVICE, f"stale clip: newest frame {age_ms:.0f} ms old "
                          f"> {budgets.max_frame_age_ms:.0f} ms", None)

        t = time.perf_counter()
        pixels = self.parts.preprocessor.preprocess_clip(clip.frames, clip.frame_ids)
        stages["preprocess_ms"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        with pinned(self._model_cpus):
            rows = self.parts.vision.encode(pixels)
        stages["encode_ms"] = (time.perf_counter() - t) * 1e3
        if time.monotonic() >= deadline:
            return finish(Verdict.NO_ADVICE, "deadline passed during encoding", None)
        ood = self._check_domain(rows, clip)

        now = clock.mono_ns()
        nav = self.nav.current(now)
        try:
            nav_line = nav_sentence(nav)
        except NavRefused:  # offer() already checks; this keeps a bug from reaching the prompt
            nav, nav_line = None, nav_sentence(None)
        frame_times_s = on_sampling_grid([(ts - clip.t_mono_ns[0]) / 1e9 for ts in clip.t_mono_ns],
                                         self.config.camera.interval_ms / 1000)
        with pinned(self._model_cpus):
            result = self.parts.decoder.decode(rows, frame_times_s, nav_line, policy, deadline, decode_budget_s)
        stages["prefill_ms"] = result.prefill_ms
        stages["decode_ms"] = result.decode_ms if result.stop != "prefill_deadline" else None
        verdict, reason, advice = judge_decode(result, level, stages, self.config.budgets)
        if ood is not None and ood.out_of_domain:
            reason = f"{reason}; {ood.reason}" if reason else ood.reason
        prompt_sha = hashlib.sha256(
            f"{self.parts.decoder.template.prefix()}|{frame_times_s}|{nav_line}".encode()
        ).hexdigest()
        return finish(verdict, reason, advice, nav=nav, decode=result, nav_line=nav_line, prompt_sha256=prompt_sha,
                      ood=ood)

    def _check_domain(self, rows, clip: Clip) -> OodCheck | None:
        """The out-of-domain checks of one clip; a warning goes on the status topic."""
        if self.parts.ood is None:
            return None
        check = self.parts.ood.check(rows, clip.frames, list(clip.t_mono_ns), self.config.advice.frozen_after_s)
        if check.out_of_domain:
            self.telemetry.event("out_of_domain", check.reason)
        return check

    def _confidence(self, advice: Advice | None, decode: DecodeResult | None, ood: OodCheck | None) -> float | None:
        if advice is None or decode is None:
            return None
        calibration = self.parts.calibration or ConfidenceCalibration()
        return calibration.apply(decode.confidence_raw, ood is not None and ood.out_of_domain)

    def _finish(
        self,
        clip: Clip,
        started: float,
        stages: dict[str, float | None],
        verdict: Verdict,
        reason: str,
        advice: Advice | None,
        level: int,
        *,
        nav: NavInstruction | None = None,
        decode: DecodeResult | None = None,
        nav_line: str = "",
        prompt_sha256: str = "",
        ood: OodCheck | None = None,
    ) -> CycleOutcome:
        advice, held = self.confirmation.apply(advice)
        if held:
            reason = f"{reason}; {held}" if reason else held
        t = time.perf_counter()
        stages["total_ms"] = (t - started) * 1e3
        message = self._advice_message(clip, stages, verdict, reason, advice, level, nav, decode, ood, t)
        if self.parts.tap is not None:
            # Handed over with its advice, not at the start: the writer's JPEG encoding then runs in
            # the gap before the next clip rather than beside this cycle's stages.
            self.parts.tap.clip(clip)
        sent = self._publish(message)
        # The whole publish, send included: in the status stage figures, the audit record and the
        # budget check that drives the degrade level.
        stages["publish_ms"] = (time.perf_counter() - t) * 1e3
        self._cycle += 1
        stage_record = {k.removesuffix("_ms"): v for k, v in message.stages.model_dump().items()}
        stage_record["publish"] = stages["publish_ms"]
        self.telemetry.record_cycle(verdict, stage_record)
        self.degrade.record(verdict, bool(over_budget(stages, self.config.budgets)))
        outcome = CycleOutcome(
            advice=sent,
            stages_ms=stages,
            cycle_wall_ms=(time.perf_counter() - started) * 1e3,
            raw_text=decode.text if decode else "",
            nav_line=nav_line,
            prompt_sha256=prompt_sha256,
            decode=decode,
            ood=ood,
        )
        self._write_audit(outcome)
        return outcome

    def _advice_message(self, clip: Clip, stages: dict[str, float | None], verdict: Verdict, reason: str,
                        advice: Advice | None, level: int, nav: NavInstruction | None,
                        decode: DecodeResult | None, ood: OodCheck | None, t: float) -> ActionAdvice:
        """The cycle's advice, valid from its newest frame; `t` is when publishing began."""
        clock, budgets = self.parts.clock, self.config.budgets
        valid_ns = int(budgets.advice_valid_ms * 1e6)
        # Advice describes the scene at capture time: its validity runs from the newest frame.
        newest_mono, newest_wall = clip.t_mono_ns[-1], clip.t_wall_ns[-1]
        if not self.parts.enforce_deadlines:
            newest_wall = clock.wall_ns() - (clock.mono_ns() - newest_mono)
        return ActionAdvice(
            cycle=self._cycle,
            verdict=verdict,
            verdict_reason=reason[:200],
            advice=advice,
            confidence=self._confidence(advice, decode, ood),
            frames=[
                FrameRef(frame_id=fid, capture_mono_ns=mono, capture_wall_ns=wall)
                for fid, mono, wall in zip(clip.frame_ids, clip.t_mono_ns, clip.t_wall_ns, strict=True)
            ],
            valid_until_mono_ns=newest_mono + valid_ns,
            valid_until_wall_ns=newest_wall + valid_ns,
            nav_id=nav.nav_id if nav else None,
            # The message cannot carry its own send: on the wire, publish_ms runs up to the send.
            stages=StageTimings(**stages, publish_ms=(time.perf_counter() - t) * 1e3),
            generated_tokens=decode.generated_tokens if decode else 0,
            degrade_level=level,
            bundle_sha256=self.bundle_sha256,
            adapters=list(decode.adapters) if decode else self.parts.decoder.adapters.names,
        )

    def _write_audit(self, outcome: CycleOutcome) -> None:
        """The advice is out already: a full disk costs the record, never the loop."""
        if self.parts.audit is None:
            return
        try:
            self.parts.audit.write(audit_record(outcome))
        except AuditWriteError as exc:
            if not self._audit_failing:
                log.error("%s; the loop goes on, failed records are counted", exc)
            self._audit_failing = True
            self.telemetry.event("audit_write_failed", f"{exc} ({self.parts.audit.failed_writes} records lost)")
            return
        if self._audit_failing:
            self._audit_failing = False
            self.telemetry.event("audit_recovered", f"writing again after {self.parts.audit.failed_writes} lost")

    # -- the loop -----------------------------------------------------------------------------

    def run(self, max_cycles: int | None = None, on_cycle=None) -> int:
        """Cycle until stopped, the feed ends, or max_cycles advice messages went out."""
        self.publish_status()
        done = 0
        while not self._stop.is_set() and (max_cycles is None or done < max_cycles):
            clip = self.next_clip()
            if clip is None:
                if self.parts.feed.health().state == "ended":
                    break  # a video played without looping is over
                continue
            outcome = self.run_cycle(clip)
            done += 1
            if on_cycle is not None:
                on_cycle(outcome)
        self.publish_status()
        return done


def judge_decode(
    result: DecodeResult, level: int, stages: dict[str, float | None], budgets: BudgetConfig
) -> tuple[Verdict, str, Advice | None]:
    """The budget verdict of a cycle that reached the decoder, and the advice it may carry."""
    if result.advice is not None:
        late_stages = over_budget(stages, budgets)
        if level > 0:
            return Verdict.DEGRADED, f"degrade level {level}", result.advice
        if late_stages:
            return Verdict.DEGRADED, "over budget: " + ", ".join(late_stages), result.advice
        return Verdict.OK, "", result.advice
    if result.stop == "prefill_deadline":
        return Verdict.NO_ADVICE, "deadline passed during prefill", None
    if result.stop == "deadline":
        if result.partial is not None:
            return Verdict.LATE, "generation cut at the deadline after the decision", result.partial
        return Verdict.NO_ADVICE, "generation cut at the deadline before the decision", None
    if result.partial is not None:
        return Verdict.DEGRADED, f"incomplete output ({result.stop}); decision kept", result.partial
    return Verdict.NO_ADVICE, f"no usable output ({result.stop}) {result.error}"[:200], None


def audit_record(outcome: CycleOutcome) -> dict[str, object]:
    advice = outcome.advice
    return {
        "cycle": advice.cycle,
        "seq": advice.seq,
        "wall_ns": advice.wall_ns,
        "frame_ids": [f.frame_id for f in advice.frames],
        "nav_id": advice.nav_id,
        "nav_line": outcome.nav_line,
        "prompt_sha256": outcome.prompt_sha256,
        "raw_text": outcome.raw_text,
        "advice": advice.advice.model_dump(mode="json") if advice.advice else None,
        "confidence": advice.confidence,
        "confidence_raw": outcome.decode.confidence_raw if outcome.decode else None,
        "ood_distance": outcome.ood.distance if outcome.ood else None,
        "verdict": advice.verdict.value,
        "verdict_reason": advice.verdict_reason,
        "stages_ms": outcome.stages_ms,
        "prefill_tokens": outcome.decode.prefill_tokens if outcome.decode else 0,
        "generated_tokens": advice.generated_tokens,
        "degrade_level": advice.degrade_level,
    }
