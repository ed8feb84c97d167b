"""The loop's side of drive logging: hand over, never wait.

``DriveTap.clip`` and ``DriveTap.message`` put a reference on a bounded queue and return (the clip's
frames and the frozen messages are never written to after they are handed out, so no copy is
needed). One writer thread encodes them into ``LogRecord``s and gives each to every sink. A full
queue drops the item, counts it and says so on ``status`` (event ``drivelog_dropped``); a sink
that fails (a full disk, a port gone) is switched off with a status event and the others go on.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Sequence
from typing import Protocol

from edge.capture import Clip
from edge.drivelog.channels import TOPIC_CAMERA, LogRecord, encode_image, message_record
from edge.feeds import Clock
from edge.messages import WireMessage
from edge.telemetry import Telemetry

log = logging.getLogger(__name__)

_STOP = object()
MANUAL_POLL_S = 0.2
# The writer thread's nice value. JPEG encoding is real CPU work; on a small, busy CPU the kernel
# should give the loop thread the core first and the writer whatever is left (Linux sets nice per
# thread). A writer that falls behind drops log items, the loop never waits.
WRITER_NICE = 19


class Sink(Protocol):
    name: str

    def write(self, record: LogRecord) -> None: ...

    def trigger(self, reason: str, log_time_ns: int) -> None: ...

    def close(self) -> None: ...


class DriveTap:
    def __init__(
        self,
        sinks: Sequence[Sink],
        clock: Clock,
        telemetry: Telemetry,
        *,
        queue_size: int = 256,
        image_format: str = "jpeg",
        jpeg_quality: int = 80,
    ):
        self.sinks = list(sinks)
        self.clock = clock
        self.telemetry = telemetry
        self.image_format = image_format
        self.jpeg_quality = jpeg_quality
        # log_time = monotonic + this offset, fixed once, so frames and messages share one time line
        # (the simulator's clock included: its frames carry simulated monotonic times).
        self.wall_offset_ns = clock.wall_ns() - clock.mono_ns()
        self.dropped = 0
        self.written = 0
        self._last_frame_id = -1
        self._manual: tuple[str, int] | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="drivelog-writer", daemon=True)
        self._thread.start()

    # -- the loop's side (any thread): O(1), never blocks --------------------------------------

    def clip(self, clip: Clip) -> None:
        self._put(("clip", clip))

    def message(self, message: WireMessage) -> None:
        self._put(("message", message, self.clock.mono_ns()))

    def trigger(self, reason: str) -> None:
        """A manual bad-case capture. Safe in a signal handler: it only sets an attribute (a queue
        put could wait forever on the lock the interrupted loop thread holds); the writer thread
        picks it up within MANUAL_POLL_S."""
        self._manual = (reason, self.clock.mono_ns())

    def _put(self, item: tuple) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            self.telemetry.event("drivelog_dropped", f"{self.dropped} log items dropped: the writer is behind")

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
        except (OSError, AttributeError):  # not Linux, or not allowed: the default priority
            pass
        while True:
            manual, self._manual = self._manual, None
            if manual is not None:
                item: tuple | object = ("trigger", *manual)
            else:
                try:
                    item = self._queue.get(timeout=MANUAL_POLL_S)
                except queue.Empty:
                    continue
            if not isinstance(item, tuple):  # _STOP
                return
            try:
                self._handle(item)
            except Exception as exc:  # a bad item must not end logging
                log.exception("drive log item failed")
                self.telemetry.event("drivelog_error", f"{type(exc).__name__}: {exc}")

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "clip":
            for record in self._frame_records(item[1]):
                self._dispatch(record)
        elif kind == "call":
            item[1]()
        elif kind == "message":
            message, mono = item[1], item[2]
            self._dispatch(message_record(message, mono + self.wall_offset_ns, mono))
        else:
            for sink in list(self.sinks):
                self._guarded(sink, sink.trigger, item[1], item[2] + self.wall_offset_ns)

    def _frame_records(self, clip: Clip) -> list[LogRecord]:
        """The clip's frames not logged yet (consecutive clips share all but their newest frames)."""
        records = []
        for image, frame_id, mono in zip(clip.frames, clip.frame_ids, clip.t_mono_ns, strict=True):
            if frame_id <= self._last_frame_id:
                continue
            log_time = mono + self.wall_offset_ns
            data = encode_image(image, self.image_format, self.jpeg_quality, log_time)
            records.append(LogRecord(TOPIC_CAMERA, log_time, mono, frame_id, data))
            self._last_frame_id = frame_id
        return records

    def _dispatch(self, record: LogRecord) -> None:
        for sink in list(self.sinks):
            self._guarded(sink, sink.write, record)
        self.written += 1

    def _guarded(self, sink: Sink, call, *args) -> None:
        try:
            call(*args)
        except OSError as exc:  # full disk, file size limit, port gone: this sink stops, the rest go on
            self.sinks.remove(sink)
            log.error("%s stopped: %s", sink.name, exc)
            self.telemetry.event(f"{sink.name}_stopped", f"{sink.name} stopped: {exc}")
            try:
                sink.close()
            except OSError:
                pass

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until the writer has handled everything queued so far (benchmarks, tests)."""
        done = threading.Event()
        self._queue.put(("call", done.set))
        done.wait(timeout_s)

    def live_view(self):
        """The live view sink, if one is on (for its address)."""
        return next((sink for sink in self.sinks if sink.name == "live_view"), None)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, then close every sink (their files end complete)."""
        self._queue.put(_STOP)  # blocking put: the loop is over, waiting here is fine
        self._thread.join(timeout=timeout_s)
        for sink in self.sinks:
            try:
                sink.close()
            except OSError as exc:
                log.error("%s did not close cleanly: %s", sink.name, exc)
