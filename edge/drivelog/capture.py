"""Bad-case capture: keep the window around a trigger as its own MCAP segment.

The sink keeps the last ``before_s`` seconds of records in memory. A trigger opens a segment
(``capture-<time>-<trigger>.mcap``) holding that ring, keeps writing until ``after_s`` past the
latest trigger (triggers that arrive meanwhile extend the same segment) and then appends one line
to ``captures.jsonl``: time, triggers, reasons and the advice seqs the segment holds. Triggers:

- ``verdict``: an advice whose verdict is in ``capture.verdicts`` (no_advice and late by default);
- ``flip``: two advice within ``flip_cycles`` cycles whose actions conflict (left against right,
  speeding up against slowing down);
- ``unconfirmed``: an advice that held back an alarm the decoder decided once (edge.confirm): what
  the planner was spared is what the model should learn not to say;
- ``feedback``: a planner's message on the ``feedback`` topic;
- ``manual``: SIGUSR1 to the runtime (``edge capture now``).

It runs on the drive log's writer thread: the loop never waits for it. Segments are kept under
``quota_bytes``, the oldest removed first (with their index lines).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from edge.config import CaptureConfig
from edge.confirm import held_alarm
from edge.drivelog.channels import LogRecord
from edge.drivelog.mcapfile import McapSegment, enforce_quota
from edge.messages import ActionAdvice, Feedback, MetaAction

INDEX_NAME = "captures.jsonl"
CHUNK_BYTES = 256 * 1024
M = MetaAction
CONFLICTS = frozenset(frozenset(pair) for pair in (
    (M.TURN_LEFT, M.TURN_RIGHT), (M.CHANGE_LANE_LEFT, M.CHANGE_LANE_RIGHT), (M.NUDGE_LEFT, M.NUDGE_RIGHT),
    (M.TURN_LEFT, M.CHANGE_LANE_RIGHT), (M.TURN_RIGHT, M.CHANGE_LANE_LEFT),
    (M.ACCELERATE, M.DECELERATE), (M.ACCELERATE, M.STOP),
))


@dataclass(frozen=True)
class Trigger:
    kind: str  # verdict, flip, unconfirmed, feedback, manual
    reason: str
    log_time_ns: int
    advice_seqs: tuple[int, ...] = ()


@dataclass
class OpenCapture:
    segment: McapSegment
    end_ns: int
    triggers: list[Trigger]
    advice_seqs: list[int] = field(default_factory=list)


def conflicting(a: MetaAction, b: MetaAction) -> bool:
    return frozenset((a, b)) in CONFLICTS


class CaptureSink:
    name = "capture"

    def __init__(self, config: CaptureConfig, metadata: dict[str, str]):
        assert config.dir is not None
        self.config = config
        self.folder = Path(config.dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.metadata = metadata
        self._ring: deque[LogRecord] = deque()
        self._recent: deque[tuple[int, MetaAction]] = deque(maxlen=max(1, config.flip_cycles))
        self._open: OpenCapture | None = None
        self._clip_span_ns = 0
        self.captures: list[dict] = []

    # -- records -----------------------------------------------------------------------------

    def write(self, record: LogRecord) -> None:
        self._ring.append(record)
        message = record.message
        if isinstance(message, ActionAdvice) and message.frames:
            self._clip_span_ns = message.frames[-1].capture_mono_ns - message.frames[0].capture_mono_ns
        # Frames are kept a clip longer than the window: its first advice keeps all its frames.
        horizon = record.log_time_ns - int(self.config.before_s * 1e9) - self._clip_span_ns
        while self._ring and self._ring[0].log_time_ns < horizon:
            self._ring.popleft()
        if self._open is not None:
            self._open.segment.write(record)
            if isinstance(record.message, ActionAdvice):
                self._open.advice_seqs.append(record.sequence)
        for trigger in self._triggers(record):
            self._start_or_extend(trigger)
        if self._open is not None and record.log_time_ns >= self._open.end_ns:
            self._finish()

    def trigger(self, reason: str, log_time_ns: int) -> None:
        self._start_or_extend(Trigger("manual", reason, log_time_ns))

    def _triggers(self, record: LogRecord) -> list[Trigger]:
        message, t = record.message, record.log_time_ns
        if isinstance(message, Feedback):
            text = message.reason + (f" (expected {message.expected_action.value})" if message.expected_action else "")
            return [Trigger("feedback", text, t, (message.advice_seq,))]
        if not isinstance(message, ActionAdvice):
            return []
        found = []
        if message.verdict.value in self.config.verdicts:
            found.append(Trigger("verdict", f"{message.verdict.value}: {message.verdict_reason}", t, (message.seq,)))
        held = held_alarm(message.verdict_reason) if self.config.unconfirmed else ""
        if held:
            found.append(Trigger("unconfirmed", held, t, (message.seq,)))
        if self.config.flip_cycles and message.advice is not None:
            action = message.advice.action
            for seq, earlier in self._recent:
                if conflicting(earlier, action):
                    found.append(Trigger("flip", f"{earlier.value} -> {action.value}", t, (seq, message.seq)))
                    break
            self._recent.append((message.seq, action))
        return found

    # -- segments ----------------------------------------------------------------------------

    def _start_or_extend(self, trigger: Trigger) -> None:
        end = trigger.log_time_ns + int(self.config.after_s * 1e9)
        if self._open is not None:
            self._open.triggers.append(trigger)
            self._open.end_ns = max(self._open.end_ns, end)
            return
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(trigger.log_time_ns / 1e9))
        path = self.folder / f"capture-{stamp}-{trigger.log_time_ns % 1_000_000_000:09d}-{trigger.kind}.mcap"
        segment = McapSegment(path, self.metadata, CHUNK_BYTES)
        capture = OpenCapture(segment, end, [trigger])
        since = trigger.log_time_ns - int(self.config.before_s * 1e9)
        for record in self._ring:
            if record.message is not None and record.log_time_ns < since:
                continue  # older frames stay: they complete the clips of the first advice in the window
            segment.write(record)
            if isinstance(record.message, ActionAdvice):
                capture.advice_seqs.append(record.sequence)
        self._open = capture

    def _finish(self) -> None:
        capture, self._open = self._open, None
        assert capture is not None
        capture.segment.close()
        first = capture.triggers[0]
        row = {
            "file": capture.segment.path.name,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(first.log_time_ns / 1e9))
                    + f".{first.log_time_ns % 1_000_000_000 // 1_000_000:03d}Z",
            "log_time_ns": first.log_time_ns,
            "trigger": first.kind,
            "reason": first.reason,
            "advice_seqs": capture.advice_seqs,
            "triggers": [{"trigger": t.kind, "reason": t.reason, "log_time_ns": t.log_time_ns,
                          "advice_seqs": list(t.advice_seqs)} for t in capture.triggers],
            "bytes": capture.segment.path.stat().st_size,
        }
        self.captures.append(row)
        with (self.folder / INDEX_NAME).open("a") as index:
            index.write(json.dumps(row) + "\n")
        self._keep_quota(capture.segment.path)

    def _keep_quota(self, newest: Path) -> None:
        removed = enforce_quota(self.folder.glob("capture-*.mcap"), self.config.quota_bytes, keep=newest)
        if not removed:
            return
        gone = {p.name for p in removed}
        index = self.folder / INDEX_NAME
        kept = [line for line in index.read_text().splitlines() if json.loads(line)["file"] not in gone]
        index.write_text("".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self._open is not None:  # the drive ended inside a window: keep what there is
            self._finish()
