"""Calibration and held-out clips from drive videos, through the runtime's own capture and preprocessing.

Calibrating on tensors preprocessed differently from the runtime's (another resize filter, another
crop, RGB/BGR swapped) is the classic silent INT8 accuracy loss, so clips come from
`edge.capture.VideoFileStepper` (the simulator's deterministic frame reader) sampled at the camera's
interval, and pass through `edge.preprocess.Preprocessor` exactly as in the loop.

Clip positions are spread evenly over each video's length and over the videos, and no two clips
share a frame; held-out clips are interleaved between calibration clips, so the accuracy report
measures frames the quantiser never saw, from the same scenes and lighting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.capture import CaptureError, VideoFileStepper
from edge.config import CameraConfig
from edge.errors import EdgeError
from edge.manifest import CameraProfile, Normalization
from edge.preprocess import Preprocessor

DEFAULT_INTERVAL_MS = CameraConfig().interval_ms
DEFAULT_RESIZE = CameraConfig().resize


class CalibrationError(EdgeError, ValueError):
    """Calibration cannot proceed (no readable clip, bad arguments); the message says why."""


@dataclass(frozen=True)
class ClipSample:
    video: str  # path as given
    t_ms: float  # time of the clip's newest frame on the video's own clock
    frame_ids: tuple[int, ...]
    pixel_values: np.ndarray  # encoder input in its pixel format, owned (not the preprocessor's buffer)

    @property
    def label(self) -> str:
        """Human-readable name used in reports (e.g. the worst held-out clip)."""
        return f"{Path(self.video).name}@{self.t_ms / 1000:.2f}s (frames {self.frame_ids[0]}-{self.frame_ids[-1]})"


@dataclass
class ClipSplit:
    calibration: list[ClipSample] = field(default_factory=list)
    heldout: list[ClipSample] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Video:
    path: str
    stepper: VideoFileStepper
    candidates: list[float]  # newest-frame times of pairwise frame-disjoint clips, in spread-out order


def _duration_ms(stepper: VideoFileStepper) -> float:
    """Length from the header; when the header has no frame count, decode once to the end."""
    if stepper.claimed_frames > 0:
        return stepper.claimed_frames * 1000.0 / stepper.fps
    t, step = 0.0, 10_000.0
    while stepper.frame_at(t) is not None:  # forward-only decoding: cheap apart from the decode itself
        t += step
    return float(stepper.duration_ms or 0.0)


def _spread_order(n: int) -> list[int]:
    """0..n-1 in van der Corput order: any prefix is spread evenly over the range."""

    def radical_inverse(i: int) -> float:
        value, base = 0.0, 0.5
        while i:
            if i & 1:
                value += base
            i >>= 1
            base /= 2
        return value

    return sorted(range(n), key=lambda i: (radical_inverse(i), i))


def clip_frame_indices(stepper: VideoFileStepper, t_ms: float, interval_ms: float, frames: int) -> tuple[int, ...]:
    """The frame indices `VideoFileStepper.clip_at(t_ms, ...)` will return, without decoding."""
    return tuple(stepper.index_at(t_ms - k * interval_ms) for k in range(frames - 1, -1, -1))


def _disjoint_candidates(
    stepper: VideoFileStepper, first_ms: float, last_ms: float, interval_ms: float, frames: int, limit: int
) -> list[float]:
    """Up to `limit` clip times whose frame sets are pairwise disjoint, spread over [first, last].

    Candidates sit on the frame grid; taken greedily in van der Corput order, so the clips cover the
    whole video evenly and two clips never share a frame (clips offset by a fraction of the sampling
    interval interleave their frames: a short video still yields many distinct clips).
    """
    frame_ms = 1000.0 / stepper.fps
    n = int((last_ms - first_ms) // frame_ms) + 1
    grid = [first_ms + i * frame_ms for i in range(n)]
    used: set[int] = set()
    chosen: list[float] = []
    for i in _spread_order(n):
        ids = set(clip_frame_indices(stepper, grid[i], interval_ms, frames))
        if len(ids) < frames or ids & used:
            continue
        used |= ids
        chosen.append(grid[i])
        if len(chosen) >= limit:
            break
    return chosen


def _open_video(path: str, profile: CameraProfile, interval_ms: float, limit: int) -> _Video | str:
    """An opened video with its candidate clip times, or the reason it cannot be used."""
    if not Path(path).is_file():
        return "file not found"
    try:
        stepper = VideoFileStepper(path)
    except CaptureError as exc:
        return f"cannot be decoded ({exc})"
    except Exception as exc:  # OpenCV/FFmpeg raise assorted errors on damaged containers
        return f"cannot be decoded ({type(exc).__name__}: {exc})"
    clip_span_ms = (profile.frames_per_clip - 1) * interval_ms
    duration = _duration_ms(stepper)
    last = duration - 1000.0 / stepper.fps  # time of the last frame
    if last < clip_span_ms:
        stepper.close()
        return (
            f"too short ({duration / 1000:.2f} s) for one clip of {profile.frames_per_clip} frames "
            f"every {interval_ms:g} ms"
        )
    candidates = _disjoint_candidates(stepper, clip_span_ms, last, interval_ms, profile.frames_per_clip, limit)
    return _Video(path, stepper, candidates)


def _share(total: int, capacities: Sequence[int]) -> list[int]:
    """Split `total` clips over videos as evenly as their capacities allow (round-robin)."""
    counts = [0] * len(capacities)
    remaining = total
    while remaining > 0:
        progressed = False
        for i, cap in enumerate(capacities):
            if remaining and counts[i] < cap:
                counts[i] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            break
    return counts


def _read_clips(
    video: _Video,
    plan: Sequence[tuple[_Video, float]],
    preprocess: Preprocessor,
    interval_ms: float,
    notes: list[str],
) -> list[ClipSample | None]:
    """Decode one video's clips in a single forward pass.

    Clips interleave (their frames alternate in time), so reading them one by one would rewind
    the decoder for almost every clip. Instead every wanted frame is fetched in time order through
    the same `VideoFileStepper.frame_at` that `clip_at` uses, resized at once with the runtime's
    `Preprocessor.resize_into`, and each clip is then normalised and patchified by
    `Preprocessor.patchify`: exactly the two halves of `Preprocessor.preprocess_clip`.
    """
    profile = preprocess.profile
    n = profile.frames_per_clip
    resized = np.empty((len(plan), n, profile.height, profile.width, 3), dtype=np.uint8)
    frame_ids = [[-1] * n for _ in plan]
    requests = sorted(
        (t_ms - (n - 1 - slot) * interval_ms, clip, slot) for clip, (_, t_ms) in enumerate(plan) for slot in range(n)
    )
    missing: set[int] = set()
    for t, clip, slot in requests:
        if clip in missing:
            continue
        frame = video.stepper.frame_at(t)
        if frame is None:  # the header claimed more frames than the file holds
            missing.add(clip)
            notes.append(f"{Path(video.path).name}: no frame at {t / 1000:.2f} s (file shorter than its header)")
            continue
        preprocess.resize_into(frame.image, resized[clip, slot])
        frame_ids[clip][slot] = frame.frame_id
    samples: list[ClipSample | None] = []
    for clip, (_, t_ms) in enumerate(plan):
        if clip in missing:
            samples.append(None)
            continue
        samples.append(
            ClipSample(
                video=video.path,
                t_ms=t_ms,
                frame_ids=tuple(frame_ids[clip]),
                pixel_values=preprocess.patchify(resized[clip]).copy(),
            )
        )
    return samples


def heldout_indices(total: int, n_heldout: int) -> set[int]:
    """Evenly spread indices (over videos and time) of the clips kept out of calibration."""
    if n_heldout <= 0:
        return set()
    return {min(total - 1, int((j + 0.5) * total / n_heldout)) for j in range(n_heldout)}


def sample_clips(
    videos: Sequence[str | Path],
    profile: CameraProfile,
    normalization: Normalization,
    n_calibration: int,
    n_heldout: int,
    *,
    interval_ms: float = DEFAULT_INTERVAL_MS,
    resize_mode: str = DEFAULT_RESIZE,
    pixel_format: str = "float32",
    on_skip: Callable[[str, str], None] | None = None,
    progress: bool = True,
) -> ClipSplit:
    """Read `n_calibration` + `n_heldout` disjoint clips spread over `videos`.

    `pixel_format` is the encoder's input (`VisionArtifact.pixel_format`): the clips are what the
    runtime would feed it. Unreadable videos are skipped (reported through `on_skip` and in
    `ClipSplit.skipped`); raises CalibrationError when no clip at all can be read, or when too few
    exist for both sets.
    """
    if n_calibration < 1 or n_heldout < 1:
        raise CalibrationError(
            f"need at least one calibration and one held-out clip (got {n_calibration} and {n_heldout})"
        )
    if not videos:
        raise CalibrationError("no video given: pass at least one --video")
    split = ClipSplit()
    total = n_calibration + n_heldout
    opened: list[_Video] = []
    for path in videos:
        result = _open_video(str(path), profile, interval_ms, total)
        if isinstance(result, str):
            split.skipped.append((str(path), result))
            if on_skip:
                on_skip(str(path), result)
        else:
            opened.append(result)
    try:
        if not opened:
            reasons = "; ".join(f"{Path(v).name}: {why}" for v, why in split.skipped)
            raise CalibrationError(f"no clip can be read: all {len(videos)} video(s) were skipped ({reasons})")
        counts = _share(total, [len(v.candidates) for v in opened])
        n_heldout = _fit_heldout(split, sum(counts), total, n_heldout, profile, interval_ms)
        preprocess = Preprocessor(profile, normalization, resize_mode=resize_mode, input_order="bgr",
                                  pixel_format=pixel_format)  # type: ignore[arg-type]
        _read_split(split, opened, counts, n_heldout, preprocess, interval_ms, progress)
    finally:
        for video in opened:
            video.stepper.close()
    if not split.calibration or not split.heldout:
        raise CalibrationError(
            f"too few readable clips: {len(split.calibration)} for calibration, {len(split.heldout)} held out"
        )
    return split


def _fit_heldout(split: ClipSplit, available: int, total: int, n_heldout: int, profile: CameraProfile,
                 interval_ms: float) -> int:
    """The held-out count once the clips asked for meet the `available` ones: scaled down (noted in
    `split`) when the videos hold fewer; at least 2 clips must fit."""
    if available >= total:
        return n_heldout
    split.notes.append(
        f"the videos hold only {available} frame-disjoint clips of {profile.frames_per_clip} frames "
        f"every {interval_ms:g} ms; {total} were asked for"
    )
    if available < 2:
        raise CalibrationError(
            f"only {available} clip(s) fit in the readable videos; need at least 2 "
            "(one to calibrate on, one held out)"
        )
    return max(1, round(n_heldout * available / total))


def _read_split(split: ClipSplit, opened: list[_Video], counts: list[int], n_heldout: int, preprocess: Preprocessor,
                interval_ms: float, progress: bool) -> None:
    """Read `counts[i]` clips of video i into `split`, the held-out ones spread evenly over all."""
    from tqdm import tqdm

    # Per video, the first `count` candidates (already spread over its length), in time order so
    # that decoding only moves forward.
    plan = [
        (video, t) for video, count in zip(opened, counts, strict=True) for t in sorted(video.candidates[:count])
    ]
    held = heldout_indices(len(plan), n_heldout)
    bar = tqdm(total=len(plan), desc="calibration clips", unit="clip", disable=not progress)
    start = 0
    for video, count in zip(opened, counts, strict=True):
        clips = _read_clips(video, plan[start : start + count], preprocess, interval_ms, split.notes)
        for offset, sample in enumerate(clips):
            if sample is not None:
                (split.heldout if start + offset in held else split.calibration).append(sample)
        start += count
        bar.update(count)
    bar.close()


def overlapping_frames(a: Sequence[ClipSample], b: Sequence[ClipSample]) -> set[tuple[str, int]]:
    """(video, frame id) pairs present in both sets: must be empty for an honest held-out report."""
    seen = {(c.video, f) for c in a for f in c.frame_ids}
    return {(c.video, f) for c in b for f in c.frame_ids} & seen

