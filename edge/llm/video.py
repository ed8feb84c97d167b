"""How Qwen3-VL lays out a video clip in the token stream (torch-free, shared by runtime and verify).

A clip of 2k frames becomes k frame pairs (temporal patch 2). Before each pair's visual chunk comes a
text timestamp, the mean capture time of the pair's two frames in seconds with one decimal:

    <0.2 seconds><|vision_start|><|video_pad|> x N<|vision_end|><1.2 seconds><|vision_start|>...

(transformers: Qwen3VLProcessor.replace_video_token / _calculate_timestamps). Each pair's chunk has its
own M-RoPE positions, exactly like an image (transformers' get_rope_index splits the video grid per
pair), so the decoder treats a pair as one visual chunk.
"""

from __future__ import annotations

from collections.abc import Sequence


def frame_pair_timestamps(frame_times_s: Sequence[float], temporal_patch_size: int = 2) -> list[float]:
    """Per-pair timestamps: the mean of each pair's first and last frame time (seconds from clip start).

    An odd tail is padded with the last frame, as transformers does."""
    times = [float(t) for t in frame_times_s]
    if not times:
        raise ValueError("a clip needs at least one frame time")
    while len(times) % temporal_patch_size:
        times.append(times[-1])
    return [(times[i] + times[i + temporal_patch_size - 1]) / 2 for i in range(0, len(times), temporal_patch_size)]


def on_sampling_grid(frame_times_s: Sequence[float], interval_s: float) -> list[float]:
    """Frame times snapped to the grid the clip was sampled on (multiples of the interval).

    A clip's samples are due every `interval_s`; the frame that serves a sample is the newest one
    at that time, up to one frame period earlier (40 ms at 25 fps), and a live camera adds jitter.
    At the timestamps' 0.1 s resolution that offset flips a pair's text between '<0.2 seconds>' and
    '<0.3 seconds>' with the camera's frame rate, and the decoder's answer with it. The grid times
    say what the clip is, four samples `interval_s` apart, whatever camera delivered it."""
    if interval_s <= 0:
        raise ValueError(f"the sampling interval must be positive, got {interval_s}")
    return [round(float(t) / interval_s) * interval_s for t in frame_times_s]


def timestamp_text(seconds: float) -> str:
    """The text Qwen3-VL puts before a frame pair, e.g. '<1.2 seconds>'."""
    return f"<{seconds:.1f} seconds>"
