"""Build a running loop from a configuration: bundle, vision backend, decoder, bus, camera, audit.

Everything that can be refused is checked here, before the first frame: the bundle's hashes
and shapes, the decoder's input width, the endpoints. A refusal raises with a message that
names what is wrong; nothing half-starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from edge.audit import AuditLog
from edge.bus import CurveKeys, CurveServer, Publisher, Subscriber
from edge.capture import CaptureOptions
from edge.config import RuntimeConfig
from edge.cpus import pinned
from edge.decoder import AdviceDecoder
from edge.drivelog import DriveTap
from edge.drivelog.tap import Sink
from edge.feeds import ClipFeed, Clock, LiveFeed, SystemClock, open_live_feed
from edge.llm.confidence import CALIBRATION_KEY, ConfidenceCalibration
from edge.llm.openmp import wait_policy
from edge.loop import AdviceLoop, LoopParts
from edge.manifest import BundleError, BundleManifest, load_bundle
from edge.messages import TOPIC_ADAPTER, TOPIC_FEEDBACK, TOPIC_NAV
from edge.ood import OodDetector
from edge.preprocess import Preprocessor
from edge.quality import agreement_warning
from edge.telemetry import Telemetry
from edge.vision import VisionBackend, select_backend

log = logging.getLogger(__name__)


@dataclass
class ModelParts:
    """The heavy, feed-independent parts: loaded once, reusable across replays."""

    manifest: BundleManifest
    bundle_dir: Path
    preprocessor: Preprocessor
    vision: VisionBackend
    vision_reason: str
    decoder: AdviceDecoder
    warnings: list[str] = field(default_factory=list)  # said at load, then on the status topic
    ood: OodDetector | None = None
    calibration: ConfidenceCalibration | None = None

    def close(self) -> None:
        self.decoder.close()
        self.vision.close()


def load_model_parts(config: RuntimeConfig, verify_hashes: bool = True) -> ModelParts:
    if config.bundle is None:
        raise BundleError("no bundle given (config key 'bundle' or --bundle)")
    manifest, bundle_dir = load_bundle(config.bundle, verify_hashes=verify_hashes)
    if manifest.profile.frames_per_clip != config.camera.frames_per_clip:
        log.info(
            "camera.frames_per_clip %d differs from the bundle's %d; the bundle's profile wins",
            config.camera.frames_per_clip, manifest.profile.frames_per_clip,
        )
        config.camera.frames_per_clip = manifest.profile.frames_per_clip
    model_cpus = config.cpu.model_cpus()
    # Both libraries start their worker threads here; a new thread inherits its creator's CPU set.
    with pinned(model_cpus):
        choice = select_backend(bundle_dir, manifest, config.vision, model_cpus)
        decoder = AdviceDecoder(bundle_dir, manifest, config.decoder, model_cpus)
    log.info("vision backend %s: %s", choice.backend.name, choice.reason)
    # The encoder decides what it is fed: float32 normalised patches, uint8 patch levels it normalises
    # itself, or whole uint8 frames it also cuts into patches.
    preprocessor = Preprocessor(manifest.profile, manifest.normalization, resize_mode=config.camera.resize,
                                pixel_format=choice.backend.artifact.pixel_format)
    log.info("decoder threads: %d generation, %d prefill; OpenMP wait policy %s",
             decoder.threads, decoder.threads_batch, wait_policy())
    warning = agreement_warning(manifest, choice.backend.artifact.precision, decoder.artifact.quant,
                                config.min_agreement)
    if warning:
        log.warning("bundle %s: %s", bundle_dir, warning)
    return ModelParts(manifest, bundle_dir, preprocessor, choice.backend, choice.reason, decoder,
                      [warning] if warning else [], OodDetector.from_bundle(bundle_dir, manifest.reports),
                      ConfidenceCalibration.from_json(manifest.quality.get(CALIBRATION_KEY)))


@dataclass
class BusParts:
    context: zmq.Context
    publisher: Publisher
    nav_in: Subscriber
    curve_server: CurveServer | None

    def close(self) -> None:
        self.publisher.close()
        self.nav_in.close()
        if self.curve_server is not None:
            self.curve_server.stop()
        self.context.destroy(linger=0)


def open_bus(config: RuntimeConfig) -> BusParts:
    bus = config.bus
    context = zmq.Context()
    curve_server, keys = None, None
    if bus.curve.enabled:
        secret_key_file, clients_dir = bus.curve.files()
        keys = CurveKeys.load(secret_key_file)
        curve_server = CurveServer(context, clients_dir)
    publisher = Publisher(bus.publish_endpoint, context=context, send_hwm=bus.send_hwm, curve_keys=keys,
                          kernel_buffer_bytes=bus.send_buffer_bytes or None)
    nav_in = Subscriber(
        bus.nav_endpoint, [TOPIC_NAV, TOPIC_FEEDBACK, TOPIC_ADAPTER], context=context, bind=True, receive_hwm=bus.receive_hwm,
        max_message_bytes=bus.max_message_bytes, curve_keys=keys,
    )
    return BusParts(context, publisher, nav_in, curve_server)


def open_camera_feed(config: RuntimeConfig, preprocessor: Preprocessor | None = None) -> LiveFeed:
    """The live camera feed. With `preprocessor`, each sampled frame is prepared for the encoder
    in the capture thread (while the loop decodes the previous clip), so a cycle only assembles."""
    camera = config.camera
    if not camera.source:
        raise BundleError("no camera source given (config key 'camera.source' or --camera)")
    return open_live_feed(camera.source, CaptureOptions.from_camera_config(camera), preprocessor)


def open_drive_tap(config: RuntimeConfig, manifest: BundleManifest, clock: Clock,
                   telemetry: Telemetry) -> DriveTap | None:
    """The drive log's writer thread with the sinks the configuration asks for; None if none."""
    from edge.drivelog.mcapfile import config_json, runtime_metadata

    record, sinks = config.record, list[Sink]()
    metadata = runtime_metadata(manifest.bundle_sha256(), config_json(config))
    try:
        _open_sinks(config, metadata, sinks)
    except BaseException:
        for sink in sinks:  # nothing half-starts
            sink.close()
        raise
    if not sinks:
        return None
    return DriveTap(sinks, clock, telemetry, queue_size=record.queue_size, image_format=record.image_format,
                    jpeg_quality=record.jpeg_quality)


def _open_sinks(config: RuntimeConfig, metadata: dict[str, str], sinks: list[Sink]) -> None:
    from edge.drivelog.mcapfile import McapLog

    record = config.record
    if record.dir is not None:
        sinks.append(McapLog(record.dir, metadata, max_file_bytes=record.max_file_bytes,
                             max_file_s=record.max_file_s, quota_bytes=record.quota_bytes,
                             frames_per_clip=config.camera.frames_per_clip, chunk_bytes=record.chunk_bytes))
    if config.capture.dir is not None:
        from edge.drivelog.capture import CaptureSink

        sinks.append(CaptureSink(config.capture, metadata))
    if config.live.enabled:
        from edge.drivelog.live import LiveView

        sinks.append(LiveView(config.live.host, config.live.port))


@contextlib.contextmanager
def running_loop(
    config: RuntimeConfig,
    *,
    models: ModelParts | None = None,
    feed: ClipFeed | None = None,
    clock: Clock | None = None,
    enforce_deadlines: bool = True,
) -> Iterator[AdviceLoop]:
    """Everything opened in order and closed in reverse, the audit log synced last."""
    with contextlib.ExitStack() as stack:
        # The loop thread's CPU set; the capture and heartbeat threads started below inherit it.
        stack.enter_context(pinned(config.cpu.loop_cpus()))
        if models is None:
            models = load_model_parts(config)
            stack.callback(models.close)
        bus = open_bus(config)
        stack.callback(bus.close)
        if feed is None:
            feed = open_camera_feed(config, models.preprocessor)
        stack.callback(feed.close)
        audit = None
        if config.audit.path is not None:
            audit = AuditLog(config.audit.path, config.audit.max_bytes, config.audit.keep)
            stack.callback(audit.close)
        clock = clock or SystemClock()
        telemetry = Telemetry()
        tap = open_drive_tap(config, models.manifest, clock, telemetry)
        if tap is not None:
            stack.callback(tap.close)  # after the loop has stopped: every last message is written
        parts = LoopParts(
            manifest=models.manifest,
            preprocessor=models.preprocessor,
            vision=models.vision,
            vision_reason=models.vision_reason,
            decoder=models.decoder,
            feed=feed,
            clock=clock,
            publisher=bus.publisher,
            nav_in=bus.nav_in,
            audit=audit,
            tap=tap,
            enforce_deadlines=enforce_deadlines,
            ood=models.ood,
            calibration=models.calibration,
        )
        loop = AdviceLoop(config, parts, telemetry)
        for warning in models.warnings:
            loop.telemetry.event("low_agreement", warning)
        loop.start_heartbeat()
        stack.callback(loop.stop)
        yield loop


@contextlib.contextmanager
def stop_on_signals(loop: AdviceLoop) -> Iterator[None]:
    """SIGINT/SIGTERM stop the loop after the current cycle and sync the audit log at once, so a
    supervisor's kill never leaves a torn record."""

    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        log.warning("%s: stopping after this cycle", name)
        loop.telemetry.event("signal", f"{name}: stopping after this cycle")  # the last status names it
        if loop.parts.audit is not None:
            loop.parts.audit.sync()
        loop.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def capture_on_signal(loop: AdviceLoop) -> Iterator[None]:
    """With bad-case capture on: SIGUSR1 captures the window around now (`edge capture now`), and
    the process id is left in the capture folder for that command to find."""
    tap, folder = loop.parts.tap, loop.config.capture.dir
    if tap is None or folder is None:
        yield
        return
    pid_file = Path(folder) / "runtime.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    previous = signal.signal(signal.SIGUSR1, lambda _signum, _frame: tap.trigger("SIGUSR1 (edge capture now)"))
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)
        pid_file.unlink(missing_ok=True)
