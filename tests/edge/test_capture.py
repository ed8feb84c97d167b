"""Capture: real OpenCV decoding of real and freshly written video files, real threads and clocks."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture import (
    CameraCapture,
    CaptureError,
    CaptureOptions,
    ClipSampler,
    DropMeter,
    Frame,
    VideoFileStepper,
    open_capture,
    parse_source,
    wait_for_state,
)
from edge.capture.readers import PacedFileReader

DRIVE = Path(__file__).resolve().parents[2] / "data" / "drive"
# This one's header claims 91 frames; the stream holds 88.
HEADER_LIES = DRIVE / "udacity_vehdet_pr2_test_small1.mp4"

BITS = 8
BAR = 16


def encode_index(index: int, height: int = 96) -> np.ndarray:
    """A frame whose 8 vertical bars spell `index` in binary: survives lossy compression."""
    image = np.zeros((height, BITS * BAR, 3), dtype=np.uint8)
    for bit in range(BITS):
        if (index >> bit) & 1:
            image[:, bit * BAR : (bit + 1) * BAR] = 255
    return image


def decode_index(image: np.ndarray) -> int:
    bars = image.reshape(image.shape[0], BITS, BAR, 3).mean(axis=(0, 2, 3))
    return int(sum(1 << bit for bit in range(BITS) if bars[bit] > 127))


def write_video(path: Path, n_frames: int, fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (BITS * BAR, 96))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(n_frames):
        writer.write(encode_index(i))
    writer.release()
    return path


@pytest.fixture
def short_video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "cam.mp4", n_frames=60)


def test_source_strings_are_classified():
    assert parse_source(0).kind == "v4l2"
    assert parse_source("2").target == 2
    assert parse_source("/dev/video1").kind == "v4l2"
    assert parse_source("gst:nvarguscamerasrc ! appsink").target == "nvarguscamerasrc ! appsink"
    assert parse_source("videotestsrc ! videoconvert ! appsink").kind == "gstreamer"
    assert parse_source("rtsp://10.0.0.2:8554/cam").kind == "network"
    assert parse_source("drive.mp4").kind == "file"
    with pytest.raises(CaptureError, match="empty"):
        parse_source("  ")


def test_unavailable_live_sources_fail_with_a_reason():
    with pytest.raises(CaptureError, match="V4L2 camera /dev/video63"):
        open_capture(parse_source("/dev/video63"))
    # Nothing listens on port 9 of localhost: refused at once.
    with pytest.raises(CaptureError, match="network stream"):
        open_capture(parse_source("rtsp://127.0.0.1:9/none"))
    spec = parse_source("gst:videotestsrc num-buffers=3 ! videoconvert ! appsink")
    if cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        cap = open_capture(spec)
        ok, image = cap.read()
        cap.release()
        assert ok and image.ndim == 3
    else:
        with pytest.raises(CaptureError, match="no GStreamer backend"):
            open_capture(spec)


def test_missing_live_camera_reports_camera_lost_and_keeps_retrying():
    capture = CameraCapture("/dev/video63", CaptureOptions(backoff_min_s=0.02, backoff_max_s=0.05))
    with capture:
        status = wait_for_state(capture, ("camera_lost",), timeout_s=2)
        assert status.state == "camera_lost"
        assert "/dev/video63" in status.reason
        time.sleep(0.2)
        # Still trying, still reporting (no crash, no silent exit).
        assert capture.status().state == "camera_lost"
        assert capture._backoff.attempts >= 2


def test_video_file_plays_as_a_camera_with_freshest_frame(short_video: Path):
    options = CaptureOptions(interval_ms=100, frames_per_clip=3)
    t_before_open = time.monotonic()
    with CameraCapture(short_video, options) as capture:
        t_after_open = time.monotonic()
        first = capture.wait_frame(None, timeout_s=2)
        assert first is not None
        time.sleep(0.5)  # no consumer for a while: there must be no backlog afterwards
        latest = capture.latest_frame()
        now = time.monotonic()
        # Wall-clock pacing at 30 fps: never ahead of the clock, and the frame due now rather than
        # the next one in the file (slack for a loaded machine starving the capture thread).
        assert latest.frame_id <= int((now - t_before_open) * 30) + 1
        assert latest.frame_id >= int((now - t_after_open - 0.35) * 30)
        assert decode_index(latest.image) == latest.frame_id
        newer = capture.wait_frame(latest.frame_id, timeout_s=1)
        assert newer is not None and newer.frame_id > latest.frame_id
        assert latest.age_ms() < 1000
        status = capture.status()
        assert status.state == "ok" and status.fps == pytest.approx(30.0)
        assert status.frames_captured >= 10


def test_sampler_takes_one_frame_per_interval_into_a_ring():
    sampler = ClipSampler(interval_ms=35, frames=3)
    image = np.zeros((2, 2, 3), np.uint8)
    taken = [i for i in range(20) if sampler.offer(Frame(i, image, i * 10_000_000, 0))]
    # Grid 0, 35, 70, 105, 140, 175: first frame at or after each due time.
    assert taken == [0, 4, 7, 11, 14, 18]
    clip = sampler.clip()
    assert clip.frame_ids == (11, 14, 18) and clip.seq == 6 and len(clip) == 3
    assert list(clip.t_mono_ns) == sorted(clip.t_mono_ns)
    assert sampler.wait_clip(after_seq=6, timeout_s=0.01) is None
    assert sampler.wait_clip(after_seq=5, timeout_s=0.01).seq == 6
    sampler.reset()
    assert sampler.clip() is None


def test_live_sampling_interval_and_ring(short_video: Path):
    options = CaptureOptions(interval_ms=100, frames_per_clip=3)
    with CameraCapture(short_video, options) as capture:
        clip = capture.wait_clip(after_seq=0, timeout_s=3)
        assert clip is not None and len(clip) == 3
        steps_ms = np.diff(np.asarray(clip.t_mono_ns)) / 1e6
        # One sample per 100 ms on the frames' own clock (30 fps: a frame every 33 ms; a starved
        # capture thread may skip a few frames, hence the upper slack).
        assert np.all(steps_ms >= 100 - 1e-6) and np.all(steps_ms < 200)
        assert [decode_index(im) for im in clip.frames] == list(clip.frame_ids)
        next_clip = capture.wait_clip(after_seq=clip.seq, timeout_s=2)
        assert next_clip.frame_ids[:2] == clip.frame_ids[1:]  # the ring slid by one sample


def test_drops_are_counted_from_frame_id_gaps(short_video: Path):
    meter = DropMeter(alpha=0.5)
    assert [meter.observe(i) for i in (0, 1, 2, 5, 6, 6, 10)] == [0, 0, 0, 2, 0, 0, 3]
    assert meter.frames_dropped == 5 and meter.frames_seen == 6
    assert 0 < meter.ratio < 1
    peak = meter.ratio
    for i in range(11, 40):
        meter.observe(i)
    assert meter.ratio < peak / 100  # filtered: a past hiccup fades

    # A reader that falls behind the camera skips the frames whose time has passed.
    spec = parse_source(short_video)
    reader = PacedFileReader(spec)
    try:
        import threading

        stop = threading.Event()
        meter = DropMeter()
        first = reader.read(stop)
        meter.observe(first.index)
        time.sleep(0.3)  # ~9 frame periods at 30 fps
        later = reader.read(stop)
        assert meter.observe(later.index) >= 5
        assert decode_index(later.image) == later.index
    finally:
        reader.close()


def test_vanished_source_gives_camera_lost_then_recovers(short_video: Path, tmp_path: Path):
    path = write_video(tmp_path / "short.mp4", n_frames=12)  # 0.4 s, looped
    options = CaptureOptions(
        interval_ms=50, frames_per_clip=2, loop=True, backoff_min_s=0.02, backoff_max_s=0.1
    )
    hidden = tmp_path / "hidden.mp4"
    with CameraCapture(path, options) as capture:
        assert capture.wait_frame(None, timeout_s=2) is not None
        deadline = time.monotonic() + 3
        while capture.status().loops < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        # The end of a looping file restarts it: not a loss, not a reconnect.
        assert capture.status().loops >= 1 and capture.status().reconnects == 0
        assert capture.status().state == "ok"
        path.rename(hidden)
        status = wait_for_state(capture, ("camera_lost",), timeout_s=3)
        assert status.state == "camera_lost", status
        assert "does not exist" in status.reason
        lost_id = capture.latest_frame().frame_id
        # A truncated file in its place is still no camera, with the decoder's reason.
        path.write_bytes(hidden.read_bytes()[: hidden.stat().st_size // 3])
        deadline = time.monotonic() + 3
        while "cannot decode" not in capture.status().reason and time.monotonic() < deadline:
            time.sleep(0.02)
        assert capture.status().state == "camera_lost"
        assert "cannot decode" in capture.status().reason
        assert capture.latest_frame().frame_id == lost_id
        os.replace(hidden, path)
        status = wait_for_state(capture, ("ok",), timeout_s=3)
        assert status.state == "ok" and status.reconnects == 1
        resumed = capture.wait_frame(lost_id, timeout_s=2)
        assert resumed is not None and resumed.frame_id > lost_id
        # The outage is not counted as dropped frames.
        assert capture.status().frames_dropped < 5


@pytest.mark.skipif(not HEADER_LIES.exists(), reason="drive videos not present")
def test_video_whose_header_lies_ends_cleanly():
    with VideoFileStepper(HEADER_LIES) as stepper:
        assert stepper.claimed_frames == 91
        last_ms = 87 * 1000 / stepper.fps
        assert stepper.frame_at(last_ms).frame_id == 87
        assert stepper.frame_at(last_ms + 40) is None  # frame 88: claimed, absent
        assert stepper.frame_count == 88
        assert stepper.frame_at(89 * 40) is None
    # As a camera (paced fast so the test is short): it ends, it does not hang or crash.
    options = CaptureOptions(interval_ms=20, frames_per_clip=2, fps_override=400)
    with CameraCapture(HEADER_LIES, options) as capture:
        status = wait_for_state(capture, ("ended",), timeout_s=10)
        assert status.state == "ended" and "88 frames" in status.reason
        # Frames the decoder could not keep up with were skipped (counted as drops), never queued.
        assert status.last_frame_id <= 87
        assert status.frames_captured + status.frames_dropped == status.last_frame_id + 1


def test_corrupt_or_missing_file_gives_a_clear_error(tmp_path: Path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    with pytest.raises(CaptureError, match=r"cannot decode video file .*corrupt\.mp4"):
        VideoFileStepper(corrupt)
    with pytest.raises(CaptureError, match="cannot decode video file"):
        CameraCapture(corrupt).start()
    with pytest.raises(CaptureError, match="does not exist"):
        CameraCapture(tmp_path / "nope.mp4").start()
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(CaptureError, match="is empty"):
        VideoFileStepper(tmp_path / "empty.mp4")


def test_stepped_mode_is_deterministic(tmp_path: Path):
    path = write_video(tmp_path / "steps.mp4", n_frames=40, fps=20)
    times = [0, 49.9, 50, 333, 999, 120, 0, 1500, 700]
    with VideoFileStepper(path, cache_frames=2) as a, VideoFileStepper(path) as b:
        forward = [a.frame_at(t) for t in times]
        backward = [b.frame_at(t) for t in reversed(times)][::-1]
        for fa, fb, t in zip(forward, backward, times, strict=True):
            assert fa.frame_id == fb.frame_id == int(t * 20 / 1000)
            assert np.array_equal(fa.image, fb.image)
            assert decode_index(fa.image) == fa.frame_id
            assert fa.t_mono_ns == fa.frame_id * 50_000_000
        assert a.frame_at(2000) is None and a.frame_count == 40
        clip = b.clip_at(1000, interval_ms=200, frames=4)
        assert clip.frame_ids == (8, 12, 16, 20)
        assert b.clip_at(500, interval_ms=200, frames=4) is None  # would need t < 0
    with VideoFileStepper(path, loop=True) as looped:
        frame = looped.frame_at(2500)  # index 50 -> source frame 10 of 40
        assert frame.frame_id == 50 and decode_index(frame.image) == 10


@pytest.mark.skipif(not DRIVE.is_dir() or not any(DRIVE.glob("*.mp4")), reason="drive videos not present")
def test_real_drive_video_as_camera():
    video = DRIVE / "udacity_solidWhiteRight.mp4"
    options = CaptureOptions(interval_ms=120, frames_per_clip=4)
    with CameraCapture(video, options) as capture:
        clip = capture.wait_clip(after_seq=0, timeout_s=5)
        assert clip is not None
        assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in clip.frames)
        assert list(clip.frame_ids) == sorted(set(clip.frame_ids))
        status = capture.status()
        assert status.kind == "file" and status.state == "ok" and status.fps == pytest.approx(25.0)


def test_status_is_serialisable(short_video: Path, tmp_path: Path):
    copy = tmp_path / "copy.mp4"
    shutil.copy(short_video, copy)
    with CameraCapture(copy) as capture:
        capture.wait_frame(None, timeout_s=2)
        data = capture.status().as_dict()
    assert {"state", "reason", "drop_ratio", "frames_dropped", "last_frame_id"} <= data.keys()
    assert capture.status().state == "stopped"


def test_on_sample_sees_every_sampled_frame_and_survives_errors(short_video: Path):
    """on_sample runs in the capture thread for each frame the sampler takes (the frames clips are
    made of), and a callback that raises is logged and counted, never fatal to capture."""
    seen: list[int] = []

    def on_sample(frame: Frame) -> None:
        seen.append(frame.frame_id)
        if len(seen) % 2 == 0:
            raise RuntimeError("consumer failed")

    options = CaptureOptions(interval_ms=100, frames_per_clip=3)
    with CameraCapture(short_video, options, on_sample=on_sample) as capture:
        first = capture.wait_clip(after_seq=0, timeout_s=3)
        assert first is not None
        clip = capture.wait_clip(after_seq=first.seq + 1, timeout_s=3)
        assert clip is not None, capture.status()
        # The callback runs after the sampler took the frame; give it the moment it needs.
        deadline = time.monotonic() + 2
        while clip.frame_ids[-1] not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert capture.status().state == "ok"
        assert capture.sample_errors >= 1
    assert set(clip.frame_ids) <= set(seen)
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    # Only sampled frames: 100 ms sampling of a 30 fps video takes about every third frame.
    assert len(seen) < capture.status().frames_captured
