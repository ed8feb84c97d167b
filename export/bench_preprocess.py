"""`edge bench preprocess`: our fixed-profile preprocessing vs the transformers processor.

Both sides get the same full-size real drive frames (synthetic frames when the videos are absent)
in the same run, interleaved so that load on the machine hits both alike, and both produce the
profile's grid:

- ours: `edge.preprocess.Preprocessor` on a clip of BGR frames straight from OpenCV: centre-crop,
  resize, BGR->RGB, in the pixel format the encoder takes: for bundles from `edge export bundle`
  whole frames as uint8 RGB planes (their graph normalises and cuts the patches: its patch
  embedding is a strided convolution over each frame pair); for older graphs the video
  (frame-pair) patch layout, as uint8 levels or float32 normalised values. A frames run also
  times the two patch-layout paths (`ours_streaming_uint8`, `ours_streaming_float32`) and what
  the in-graph normalisation costs ONNX Runtime's CPU provider (`in_graph_normalise_cpu`: Cast,
  Mul, Add alone). Moving the patch cut into the graph costs the encoder nothing: it runs faster
  than the patch layout's (`edge bench encoder` on both kinds of bundle; docs/PERFORMANCE.md).
- hf: `Qwen2VLImageProcessorPil` (the torchvision-free Qwen2/3-VL processor; patch 16, merge 2,
  mean/std 0.5) on the same frames, already centre-cropped to the profile's aspect and converted
  to RGB outside the timer (free help for the baseline), with `longest_edge` = the profile's
  pixel count so its aspect-keeping resize lands exactly on the profile grid. Without torchvision
  transformers has no video processor, so each frame goes through as an image.

Times are per clip (`frames_per_clip` frames). The report also records how far apart the two
outputs are (mean |diff| of normalised pixels; the resize filters differ: INTER_AREA vs PIL
bicubic), so a "speed-up" cannot come from doing different work.

transformers is imported inside the bench function only: `edge` never needs it at import time.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.benchreport import Report, Stats, make_report, print_ratios, ratio, write_report
from edge.manifest import CameraProfile, Normalization
from edge.preprocess import Preprocessor, normalize_levels, patch_layout

DRIVE_DIR = Path(__file__).resolve().parents[1] / "data" / "drive"
QWEN3_VL_NORMALIZATION = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
DEFAULT_PROFILE = CameraProfile(width=448, height=256, frames_per_clip=4)


def load_frames(videos: list[Path], count: int) -> tuple[list[np.ndarray], str]:
    """`count` full-size BGR frames spread over the videos; synthetic ones when there are none."""
    per_video = max(1, -(-count // max(1, len(videos))))
    frames: list[np.ndarray] = []
    for video in videos:
        cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        step = max(1, total // (per_video + 1)) if total else 5
        taken = 0
        index = 0
        while taken < per_video:
            ok, frame = cap.read()
            if not ok:
                break
            if index % step == 0:
                frames.append(frame)
                taken += 1
            index += 1
        cap.release()
    if frames:
        names = ", ".join(v.name for v in videos)
        return frames[:count] if len(frames) >= count else (frames * count)[:count], f"drive videos: {names}"
    return synthetic_frames(count), "synthetic 1280x720 frames (no drive videos found)"


def synthetic_frames(count: int, width: int = 1280, height: int = 720, seed: int = 0) -> list[np.ndarray]:
    """Road-like frames: gradients plus texture, so neither side meets a trivially flat image."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(count):
        base = np.stack([xs / width * 255, ys / height * 255, (xs + ys + 37 * i) % 256], axis=-1)
        noise = rng.normal(0, 20, size=base.shape)
        frames.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return frames


def centre_crop(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """The same window `Preprocessor(resize_mode="crop")` resizes from."""
    fh, fw = frame.shape[:2]
    if fw * height > width * fh:
        cw = round(fh * width / height)
        x0 = (fw - cw) // 2
        return frame[:, x0 : x0 + cw]
    ch = round(fw * height / width)
    y0 = (fh - ch) // 2
    return frame[y0 : y0 + ch]


def make_hf_processor(profile: CameraProfile, normalization: Normalization):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        patch_size=profile.patch_size,
        temporal_patch_size=profile.temporal_patch_size,
        merge_size=profile.merge_size,
        image_mean=list(normalization.mean),
        image_std=list(normalization.std),
        rescale_factor=normalization.rescale_factor,
        # shortest_edge is a lower bound on pixels; longest_edge caps them at the profile's count.
        size={"shortest_edge": 32 * 32, "longest_edge": profile.width * profile.height},
    )


def run_preprocess_bench(
    clips: int = 20,
    ours_per_hf: int = 10,
    profile: CameraProfile = DEFAULT_PROFILE,
    normalization: Normalization = QWEN3_VL_NORMALIZATION,
    videos: list[Path] | None = None,
    resize_filter: str = "fast",
    pixel_format: str = "frames",
) -> Report:
    """Measure `clips` HF runs and `clips * ours_per_hf` runs of each of our variants, interleaved.

    Variants (ms per clip of `frames_per_clip` frames):
    - `ours`: every frame of every clip resized anew (frame cache off): the same work as HF.
    - `ours_streaming`: a sliding window over the frame sequence, through the runtime's path
      (`preprocess_clip(frames, frame_ids)`: frames prepared once, by id, then assembled), as the
      loop runs it (the sampler's ring advances one sample per cycle): one new frame per clip. The
      runtime does the new frame's share in the capture thread; here all of it is timed.
    - `ours_streaming_<format>`: the same into the formats slower than `pixel_format` (frames runs:
      uint8 and float32 patches; uint8 runs: float32), for older graphs.
    - `hf`: the transformers processor on the clip's frames.
    """
    if clips < 1 or ours_per_hf < 1:
        raise ValueError("clips and ours_per_hf must be >= 1")
    videos = sorted(DRIVE_DIR.glob("*.mp4")) if videos is None else videos
    n = profile.frames_per_clip
    frames, frames_source = load_frames(videos, count=max(n * 4, 16))
    clip_frames = [frames[i : i + n] for i in range(0, len(frames) - n + 1, n)]
    hf_inputs = [
        [np.ascontiguousarray(centre_crop(f, profile.width, profile.height)[:, :, ::-1]) for f in clip]
        for clip in clip_frames
    ]

    def ours(fmt: str, **options) -> Preprocessor:
        return Preprocessor(profile, normalization, resize_mode="crop", resize_filter=resize_filter,
                            pixel_format=fmt, **options)  # type: ignore[arg-type]

    slower_formats = {"frames": ["uint8", "float32"], "uint8": ["float32"]}.get(pixel_format, [])
    sides = _Sides(cold=ours(pixel_format, cache_frames=0), streaming=ours(pixel_format),
                   streaming_other={fmt: ours(fmt) for fmt in slower_formats},
                   hf=make_hf_processor(profile, normalization))
    # Warm-up (first-call allocations, lazy imports inside transformers) and a correctness probe.
    pixel_diff = _same_work_probe(sides, clip_frames[0], hf_inputs[0], profile, normalization, pixel_format)
    times = _time_interleaved(sides, frames, clip_frames, hf_inputs, clips, ours_per_hf, n)
    results, ratios = _results_and_ratios(times)
    if pixel_format != "float32":
        moved = in_graph_normalise_ms(profile, normalization)
        if moved is not None:
            results["in_graph_normalise_cpu"] = moved.as_dict()
    return make_report(
        "preprocess",
        results=results,
        ratios=ratios,
        setup={
            "profile": {"width": profile.width, "height": profile.height, "frames_per_clip": n},
            "unit": "ms per clip",
            "frames": frames_source,
            "frame_sizes": sorted({f"{f.shape[1]}x{f.shape[0]}" for f in frames}),
            "pixel_format": pixel_format,
            "ours": f"edge.preprocess.Preprocessor: crop + resize ({resize_filter}) + BGR->RGB + "
            + {"frames": "RGB planes (the encoder graph normalises and patchifies)",
               "uint8": "patchify (video layout) into uint8 levels (the encoder graph normalises)",
               "float32": "patchify (video layout) + LUT normalise into float32"}[pixel_format]
            + "; every frame resized (cache off)",
            "ours_streaming": "the runtime's frame-id path (prepared blocks), sliding window: one new frame per clip",
            "hf": f"transformers Qwen2VLImageProcessorPil, {n} images per clip (pre-cropped RGB input)",
            "opencv_threads": cv2.getNumThreads(),
            "pixel_mean_abs_diff_normalised": pixel_diff,
            "min_ms": {"ours": min(times.cold), "ours_streaming": min(times.streaming), "hf": min(times.hf)},
            "load_average": os.getloadavg(),
        },
    )


@dataclass
class _Sides:
    """What the bench compares: our preprocessor without and with the frame cache (and in the slower
    pixel formats), and the transformers processor."""

    cold: Preprocessor
    streaming: Preprocessor
    streaming_other: dict[str, Preprocessor]
    hf: Any


@dataclass
class _Times:
    """Milliseconds per clip of each side, in run order."""

    cold: list[float] = field(default_factory=list)
    streaming: list[float] = field(default_factory=list)
    other: dict[str, list[float]] = field(default_factory=dict)
    hf: list[float] = field(default_factory=list)


def _same_work_probe(sides: _Sides, clip: list[np.ndarray], hf_input: list[np.ndarray], profile: CameraProfile,
                     normalization: Normalization, pixel_format: str) -> float:
    """Run both sides once (warm-up) and check they make the same grid; returns the mean |diff| of
    their normalised pixels."""
    ours_out = sides.cold(clip).copy()
    if pixel_format == "frames":
        ours_out = patch_layout(ours_out, profile.patch_size, profile.temporal_patch_size, profile.merge_size)
    if pixel_format != "float32":
        ours_out = normalize_levels(ours_out, normalization)
    hf_out = sides.hf(images=hf_input, return_tensors="np")
    grid = hf_out["image_grid_thw"].tolist()
    want_grid = [[1, profile.grid_h, profile.grid_w]] * profile.frames_per_clip
    if grid != want_grid:
        raise RuntimeError(f"HF processor landed on grid {grid}, not the profile's {want_grid}")
    return _mean_abs_pixel_diff(ours_out, np.asarray(hf_out["pixel_values"]), profile)


def _time_interleaved(sides: _Sides, frames: list[np.ndarray], clip_frames: list[list[np.ndarray]],
                      hf_inputs: list[list[np.ndarray]], clips: int, ours_per_hf: int, n: int) -> _Times:
    """`clips` HF runs, each after `ours_per_hf` runs of each of our variants."""
    times = _Times(other={fmt: [] for fmt in sides.streaming_other})
    step = 0
    for i in range(clips):
        k = i % len(clip_frames)
        for j in range(ours_per_hf):
            clip = clip_frames[(k + j) % len(clip_frames)]
            t0 = time.perf_counter()
            sides.cold(clip)
            times.cold.append((time.perf_counter() - t0) * 1e3)
            # One new frame object per clip, like the sampler's ring (the sequence is longer than
            # the cache, so a frame that left the window is resized again when it comes back).
            ids = [(step + w) % len(frames) for w in range(n)]
            window = [frames[i] for i in ids]
            step += 1
            t0 = time.perf_counter()
            sides.streaming.preprocess_clip(window, ids)
            times.streaming.append((time.perf_counter() - t0) * 1e3)
            for fmt, other in sides.streaming_other.items():
                t0 = time.perf_counter()
                other.preprocess_clip(window, ids)
                times.other[fmt].append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        sides.hf(images=hf_inputs[k], return_tensors="np")
        times.hf.append((time.perf_counter() - t0) * 1e3)
    return times


def _results_and_ratios(times: _Times) -> tuple[dict, dict]:
    """Each side's statistics, and how many times slower HF is than each of ours."""
    cold_stats = Stats.from_samples(times.cold)
    streaming_stats = Stats.from_samples(times.streaming)
    hf_stats = Stats.from_samples(times.hf)
    results = {"ours": cold_stats.as_dict(), "ours_streaming": streaming_stats.as_dict(), "hf": hf_stats.as_dict()}
    ratios = {
        "hf_over_ours_median": ratio(hf_stats.median_ms, cold_stats.median_ms),
        "hf_over_ours_streaming_median": ratio(hf_stats.median_ms, streaming_stats.median_ms),
        # Best-of-n: what each side costs when nothing else competes for the cores (on a
        # shared 2-core box medians mostly measure the neighbours).
        "hf_over_ours_min": ratio(min(times.hf), min(times.cold)),
        "hf_over_ours_streaming_min": ratio(min(times.hf), min(times.streaming)),
    }
    for fmt, samples in times.other.items():
        other_stats = Stats.from_samples(samples)
        results[f"ours_streaming_{fmt}"] = other_stats.as_dict()
        ratios[f"hf_over_ours_streaming_{fmt}_median"] = ratio(hf_stats.median_ms, other_stats.median_ms)
    return results, ratios


def in_graph_normalise_ms(profile: CameraProfile, normalization: Normalization, runs: int = 200) -> Stats | None:
    """ONNX Runtime (CPU) running only the prelude a levels-input graph starts with (the exporter's
    own `levels_prelude`: Cast, Mul, Add on one clip): what moving normalisation into the encoder
    costs where the encoder runs on the CPU (on a GPU it fuses into the first layer). None without
    the export extra (onnx), as on device images."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        from export.vision_onnx import INPUT_NAME, NORMALIZED_NAME, OPSET, levels_prelude
    except ImportError:
        return None
    shape = [profile.patches_per_clip, profile.patch_dim]
    nodes, initializers = levels_prelude(normalization, profile.patch_dim)
    graph = helper.make_graph(
        nodes, "levels_prelude",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, shape)],
        [helper.make_tensor_value_info(NORMALIZED_NAME, TensorProto.FLOAT, shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    levels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    session.run(None, {INPUT_NAME: levels})
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {INPUT_NAME: levels})
        samples.append((time.perf_counter() - t0) * 1e3)
    return Stats.from_samples(samples)


def _mean_abs_pixel_diff(ours: np.ndarray, hf: np.ndarray, profile: CameraProfile) -> float:
    """Compare our clip with HF's per-image patches (temporal slot 0 of each image = that frame)."""
    t, p = profile.temporal_patch_size, profile.patch_size
    per_pair = profile.patches_per_pair
    ours_frames = ours.reshape(profile.frame_pairs, per_pair, 3, t, p, p)
    hf_frames = hf.reshape(profile.frames_per_clip, per_pair, 3, t, p, p)[:, :, :, 0]
    diffs = [
        np.abs(ours_frames[i // t, :, :, i % t] - hf_frames[i]).mean() for i in range(profile.frames_per_clip)
    ]
    return float(np.mean(diffs))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preprocess", help="frame preprocessing: ours vs the transformers processor (same frames, same run)"
    )
    parser.add_argument("--out", required=True, type=Path, help="JSON report path")
    parser.add_argument("--clips", type=int, default=20, help="HF processor runs (one clip each)")
    parser.add_argument("--ours-per-hf", type=int, default=10, help="runs of ours per HF run (interleaved)")
    parser.add_argument("--width", type=int, default=DEFAULT_PROFILE.width)
    parser.add_argument("--height", type=int, default=DEFAULT_PROFILE.height)
    parser.add_argument("--frames", type=int, default=DEFAULT_PROFILE.frames_per_clip, help="frames per clip")
    parser.add_argument(
        "--videos", type=Path, nargs="*", help="video files (default: data/drive/*.mp4)"
    )
    parser.add_argument("--resize-filter", choices=["fast", "area"], default="fast")
    parser.add_argument("--pixel-format", choices=["frames", "uint8", "float32"], default="frames",
                        help="the encoder's input: uint8 RGB frames (bundles from `edge export bundle`), "
                        "uint8 patch levels or float32 normalised patches (older graphs)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    profile = CameraProfile(width=args.width, height=args.height, frames_per_clip=args.frames)
    report = run_preprocess_bench(
        clips=args.clips,
        ours_per_hf=args.ours_per_hf,
        profile=profile,
        videos=args.videos,
        resize_filter=args.resize_filter,
        pixel_format=args.pixel_format,
    )
    path = write_report(args.out, report)
    for name, stats in report["results"].items():
        print(
            f"{name:<15} median {stats['median_ms']:.2f} ms  p99 {stats['p99_ms']:.2f} ms  n={stats['n']}  (per clip)"
        )
    print_ratios(report["ratios"], digits=1)
    print(f"wrote {path}")
    return 0
