"""The capture thread: freshest frame, sampled clips, drop accounting, reconnects.

`CameraCapture` owns one thread that reads its source as fast as the source delivers, keeps only
the freshest frame (no backlog: a slow consumer gets the newest frame, never a queue of old ones),
feeds a `ClipSampler`, and counts frame-id gaps. A source that fails (or a file that ends, when
`loop` is set) is reopened; failed reopen attempts back off exponentially, and meanwhile the status
says `camera_lost` with the reason, so the loop can keep publishing `status`.

`on_sample`, when given, runs in the capture thread for every frame the sampler takes: the place to
prepare a frame for the model once, while the loop is still busy with the previous clip
(openpilot's camerad/modeld split). Its errors are logged, never fatal to capture.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from edge.capture.backoff import Backoff
from edge.capture.drops import DropMeter
from edge.capture.frames import Clip, Frame
from edge.capture.readers import LiveReader, PacedFileReader, open_reader
from edge.capture.sampler import ClipSampler
from edge.capture.sources import CaptureError, SourceSpec, parse_source

if TYPE_CHECKING:
    from edge.config import CameraConfig

log = logging.getLogger(__name__)

CaptureState = Literal["starting", "ok", "camera_lost", "ended", "stopped"]


@dataclass(frozen=True)
class CaptureOptions:
    interval_ms: float = 500.0  # one sample per interval goes into the clip ring
    frames_per_clip: int = 4
    loop: bool = False  # a file source restarts at its end (else the capture ends: state "ended")
    backoff_min_s: float = 0.1
    backoff_max_s: float = 5.0
    # A source that delivers nothing for this long is reported lost even while its read() blocks.
    stall_timeout_ms: float = 2000.0
    fps_override: float | None = None  # pace a file at this rate instead of its header's
    drop_filter_alpha: float = 0.1
    # None: a file that cannot be opened at start() raises (a typo should fail loudly), a live
    # camera does not (it may come up later; the loop reports camera_lost meanwhile).
    fail_fast: bool | None = None

    @classmethod
    def from_camera_config(cls, camera: CameraConfig) -> CaptureOptions:
        """The `[camera]` section's capture settings (the rest keep their defaults)."""
        return cls(
            interval_ms=camera.interval_ms,
            frames_per_clip=camera.frames_per_clip,
            loop=camera.loop_video,
            backoff_min_s=camera.reopen_backoff_min_ms / 1000,
            backoff_max_s=camera.reopen_backoff_max_ms / 1000,
        )


@dataclass(frozen=True)
class CaptureStatus:
    state: CaptureState
    reason: str  # why the camera is lost / ended; "" while ok
    source: str
    kind: str
    fps: float | None
    frames_captured: int
    frames_dropped: int
    drop_ratio: float  # filtered (EMA) fraction of frames lost, from frame-id gaps
    reconnects: int  # successful reopens after a failure (a looping file's restarts are `loops`)
    loops: int  # times a looping video file restarted from its beginning
    last_frame_id: int | None
    last_frame_age_ms: float | None
    clips_sampled: int  # the sampler's sequence number

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class CameraCapture:
    def __init__(
        self,
        source: str | int | Path | SourceSpec,
        options: CaptureOptions | None = None,
        on_sample: Callable[[Frame], None] | None = None,
    ) -> None:
        self.spec = source if isinstance(source, SourceSpec) else parse_source(source)
        self.options = options or CaptureOptions()
        self.on_sample = on_sample
        self.sample_errors = 0  # on_sample calls that raised (logged, capture goes on)
        self.sampler = ClipSampler(self.options.interval_ms, self.options.frames_per_clip)
        self.drops = DropMeter(expected_step=1, alpha=self.options.drop_filter_alpha)
        self._backoff = Backoff(self.options.backoff_min_s, self.options.backoff_max_s)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._new_frame = threading.Condition(self._lock)
        self._latest: Frame | None = None
        self._state: CaptureState = "starting"
        self._reason = ""
        self._fps: float | None = None
        self._frames_captured = 0
        self._reconnects = 0
        self._loops = 0
        self._opens = 0
        self._next_id = 0  # camera-global frame id of the next frame index 0 after an open
        self._thread: threading.Thread | None = None
        self._reader: LiveReader | PacedFileReader | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> CameraCapture:
        if self._thread is not None:
            raise RuntimeError("capture already started")
        fail_fast = self.options.fail_fast if self.options.fail_fast is not None else self.spec.is_file
        try:
            self._reader = self._open()
        except CaptureError as err:
            if fail_fast:
                raise
            self._set_state("camera_lost", str(err))
        self._thread = threading.Thread(target=self._run, name=f"capture:{self.spec.text}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            self._new_frame.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._state not in ("ended",):
            self._set_state("stopped", "")

    def __enter__(self) -> CameraCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- consumer side ---------------------------------------------------------------------
    def latest_frame(self) -> Frame | None:
        """The freshest frame (None before the first one)."""
        with self._lock:
            return self._latest

    def wait_frame(self, after_id: int | None, timeout_s: float) -> Frame | None:
        """Block until a frame newer than `after_id` exists; returns it or None on timeout/stop."""
        with self._lock:
            self._new_frame.wait_for(
                lambda: (
                    self._stop.is_set()
                    or (self._latest is not None and (after_id is None or self._latest.frame_id > after_id))
                ),
                timeout=timeout_s,
            )
            frame = self._latest
        if frame is None or (after_id is not None and frame.frame_id <= after_id):
            return None
        return frame

    def latest_clip(self) -> Clip | None:
        """The freshest full clip of sampled frames (None until enough samples exist)."""
        return self.sampler.clip()

    def wait_clip(self, after_seq: int, timeout_s: float | None) -> Clip | None:
        return self.sampler.wait_clip(after_seq, timeout_s)

    @property
    def state(self) -> CaptureState:
        return self.status().state

    def status(self) -> CaptureStatus:
        with self._lock:
            latest = self._latest
            state, reason = self._state, self._reason
            frames_captured = self._frames_captured
        age_ms = None if latest is None else latest.age_ms()
        # A blocked read() cannot report itself; a frame that is too old can.
        if state == "ok" and age_ms is not None and age_ms > self.options.stall_timeout_ms:
            state, reason = "camera_lost", f"no frame from {self.spec.text} for {age_ms:.0f} ms"
        return CaptureStatus(
            state=state,
            reason=reason,
            source=self.spec.text,
            kind=self.spec.kind,
            fps=self._fps,
            frames_captured=frames_captured,
            frames_dropped=self.drops.frames_dropped,
            drop_ratio=self.drops.ratio,
            reconnects=self._reconnects,
            loops=self._loops,
            last_frame_id=None if latest is None else latest.frame_id,
            last_frame_age_ms=age_ms,
            clips_sampled=self.sampler.seq,
        )

    # ---- capture thread --------------------------------------------------------------------
    def _set_state(self, state: CaptureState, reason: str) -> None:
        with self._lock:
            changed = state != self._state
            self._state, self._reason = state, reason
        if changed:
            (log.warning if state == "camera_lost" else log.info)(
                "capture %s: %s%s", self.spec.text, state, f" ({reason})" if reason else ""
            )

    def _open(self, is_loop: bool = False) -> LiveReader | PacedFileReader:
        reader = open_reader(self.spec, self.options.fps_override)
        self._opens += 1
        if is_loop:
            self._loops += 1
        elif self._opens > 1:
            self._reconnects += 1
        self._fps = reader.fps
        # The gap across a reopen is an outage (reported as camera_lost), not frame drops;
        # a clip must not straddle it either.
        self.drops.restart(expected_next=self._next_id)
        self.sampler.reset()
        self._backoff.reset()
        self._set_state("ok", "")
        return reader

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as err:  # never die silently: the status must say why frames stopped
            log.exception("capture thread for %s crashed", self.spec.text)
            self._set_state("camera_lost", f"capture thread crashed: {err!r}")
        finally:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _loop(self) -> None:
        id_base = 0
        looping = False  # the next open restarts a file that ended (not a recovery)
        while not self._stop.is_set():
            if self._reader is None:
                try:
                    self._reader = self._open(is_loop=looping)
                    id_base = self._next_id
                    looping = False
                except CaptureError as err:
                    looping = False  # whatever opens next recovers from a loss
                    self._set_state("camera_lost", str(err))
                    self._stop.wait(self._backoff.next_delay())
                    continue
            raw = self._reader.read(self._stop)
            if raw is None:
                if self._stop.is_set():
                    break
                reader, self._reader = self._reader, None
                reader.close()
                if reader.end_of_stream and not self.options.loop:
                    self._set_state("ended", reader.end_reason)
                    with self._lock:
                        self._new_frame.notify_all()
                    return
                if reader.end_of_stream:
                    looping = True  # reopen at once; if that fails, the open branch reports it
                else:
                    # A live source failed: report it and back off before the first retry.
                    self._set_state("camera_lost", reader.end_reason)
                    self._stop.wait(self._backoff.next_delay())
                continue
            frame = Frame(id_base + raw.index, raw.image, raw.t_mono_ns, raw.t_wall_ns)
            self._next_id = frame.frame_id + 1
            self.drops.observe(frame.frame_id)
            with self._lock:
                self._latest = frame
                self._frames_captured += 1
                self._new_frame.notify_all()
            self.sampler.offer(frame, on_take=self._call_on_sample if self.on_sample is not None else None)

    def _call_on_sample(self, frame: Frame) -> None:
        try:
            cast(Callable[[Frame], None], self.on_sample)(frame)  # only installed when on_sample is set
        except Exception:
            # A failing consumer hook must not cost the camera: the loop still gets its clips.
            self.sample_errors += 1
            log.exception("on_sample callback failed for frame %d of %s", frame.frame_id, self.spec.text)


def wait_for_state(
    capture: CameraCapture, states: tuple[str, ...], timeout_s: float, poll_s: float = 0.02
) -> CaptureStatus:
    """Poll until the capture reports one of `states` (tests and start-up code use this)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = capture.status()
        if status.state in states or time.monotonic() >= deadline:
            return status
        time.sleep(poll_s)
