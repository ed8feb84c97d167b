"""Training examples from `edge scene` folders, sampled exactly as the runtime samples a video.

For every scene folder (found recursively: video.mp4 + labels.jsonl [+ nav.jsonl] + scene.json):

- frames come from the runtime's lock-step video reader (edge.capture.VideoFileStepper: same
  decoder, same frame index for a video time) and are resized by the runtime's Preprocessor; the
  resized uint8 frames are cached once per video as .npy, and `normalize_patchify` turns a clip into
  the bit-exact `pixel_values` the runtime feeds its encoder (a few ms, so no float cache is needed);
- a clip is `frames_per_clip` samples `interval_ms` apart ending at a newest frame; every frame that
  has a full clip behind it is a newest frame (the live sampler's phase is arbitrary, lock-step
  replay uses multiples of the interval: both are covered);
- the prompt is edge.prompt's text with Qwen3-VL's per-pair timestamps computed from the frames'
  capture times like the loop does, and the navigation line the runtime would hold at that time;
- the answer is the label window of the newest frame, as the grammar's JSON (train.targets).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.config import CameraConfig, NavConfig
from edge.errors import EdgeError
from edge.llm.video import frame_pair_timestamps, on_sampling_grid
from edge.manifest import CameraProfile, Normalization
from edge.messages import MetaAction, NavInstruction
from edge.nav import NavState, nav_sentence
from edge.preprocess import Preprocessor
from edge.prompt import PromptTemplate
from sim.labels import LabelWindow, load_labels, load_nav, window_at
from train.targets import target_action, target_text

SCENE_META = "scene.json"
VIDEO_NAME = "video.mp4"
LABELS_NAME = "labels.jsonl"
NAV_NAME = "nav.jsonl"
CACHE_VERSION = 1


class DatasetError(EdgeError, ValueError):
    pass


@dataclass(frozen=True)
class Sampling:
    """How the runtime turns a video into clips (the defaults are the runtime's defaults)."""

    width: int = 448
    height: int = 256
    frames_per_clip: int = CameraConfig().frames_per_clip
    interval_ms: float = CameraConfig().interval_ms
    resize: str = CameraConfig().resize
    nav_max_ttl_ms: int = NavConfig().max_ttl_ms
    # Newest frames are taken every `stride_frames` frames (1: every frame).
    stride_frames: int = 1

    @property
    def profile(self) -> CameraProfile:
        return CameraProfile(width=self.width, height=self.height, frames_per_clip=self.frames_per_clip)

    def to_json(self) -> dict:
        return {"width": self.width, "height": self.height, "frames_per_clip": self.frames_per_clip,
                "interval_ms": self.interval_ms, "resize": self.resize, "nav_max_ttl_ms": self.nav_max_ttl_ms,
                "stride_frames": self.stride_frames}


@dataclass(frozen=True)
class Scene:
    folder: Path
    rel: str  # folder relative to the scenes root (stable name in reports and recipes)
    scenario: str
    seed: int
    variant: str
    fps: float

    @property
    def video(self) -> Path:
        return self.folder / VIDEO_NAME

    @property
    def labels(self) -> Path:
        return self.folder / LABELS_NAME

    @property
    def nav(self) -> Path | None:
        path = self.folder / NAV_NAME
        return path if path.is_file() else None


def find_scenes(root: Path | str) -> list[Scene]:
    """Every `edge scene` output folder under root (root itself included), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"scenes folder {root} does not exist")
    scenes = []
    for meta_path in sorted(root.rglob(SCENE_META)):
        folder = meta_path.parent
        if not (folder / VIDEO_NAME).is_file() or not (folder / LABELS_NAME).is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{meta_path}: invalid JSON ({exc})") from None
        rel = folder.relative_to(root).as_posix() or "."
        scenes.append(Scene(folder, rel, str(meta.get("scenario", folder.name)), int(meta.get("seed", 0)),
                            str(meta.get("variant", "")), float(meta.get("fps", 0.0))))
    if not scenes:
        raise DatasetError(f"no scene folders (scene.json + {VIDEO_NAME} + {LABELS_NAME}) under {root}; "
                           "render some with `edge scene --scenario all --out DIR`")
    return scenes


def scene_fingerprint(scene: Scene) -> str:
    """sha256 over the files that define a scene's examples (video, labels, nav)."""
    digest = hashlib.sha256()
    for path in (scene.video, scene.labels, scene.nav):
        if path is None:
            continue
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# navigation: the line the runtime holds at a given video time
# ---------------------------------------------------------------------------------------------
class NavTimeline:
    """The runtime's NavState fed with a scene's nav timeline as the runtime receives it: the loop
    takes nav messages at the start of a cycle (lock-step replay delivers each one right before the
    first cycle at or after its `at_ms`), so an instruction is offered at that cycle's time and
    held until its ttl runs out; the latest valid one wins."""

    def __init__(self, events: Sequence[tuple[int, NavInstruction]], max_ttl_ms: int):
        self.events = sorted(events, key=lambda e: e[0])
        self.max_ttl_ms = max_ttl_ms

    @classmethod
    def load(cls, path: Path | None, max_ttl_ms: int) -> NavTimeline:
        return cls(load_nav(path) if path is not None else [], max_ttl_ms)

    def instruction_at(self, t_ms: float, interval_ms: float, first_cycle_ms: float) -> NavInstruction | None:
        """The instruction held at the cycle at t_ms, cycles running every interval_ms since
        first_cycle_ms (<= t_ms) on the same phase as t_ms."""
        state = NavState(max_ttl_ms=self.max_ttl_ms)
        for at_ms, message in self.events:
            if at_ms > t_ms:
                break
            # The first cycle at or after at_ms on t_ms's grid (never before the first cycle).
            back = math.floor((t_ms - max(at_ms, first_cycle_ms)) / interval_ms + 1e-9)
            offered_ms = t_ms - back * interval_ms
            state.offer(message, round(offered_ms * 1_000_000))
        return state.current(round(t_ms * 1_000_000))

    def line_at(self, t_ms: float, interval_ms: float, first_cycle_ms: float) -> str:
        return nav_sentence(self.instruction_at(t_ms, interval_ms, first_cycle_ms))


# ---------------------------------------------------------------------------------------------
# frames: decode + resize once per video
# ---------------------------------------------------------------------------------------------
def frame_time_ns(index: int, fps: float) -> int:
    """The capture time the lock-step reader stamps on frame `index` (VideoFileStepper.frame_at)."""
    return round(index * 1e9 / fps)


def cache_frames(scene: Scene, fingerprint: str, preprocessor: Preprocessor, cache_dir: Path,
                 resize: str) -> tuple[Path, float]:
    """Resized uint8 frames [n, H, W, 3] of the scene's video in `cache_dir` (reused when present).
    Returns (path, fps as the runtime's reader sees it)."""
    from edge.capture import VideoFileStepper

    profile = preprocessor.profile
    key = hashlib.sha256(
        f"{CACHE_VERSION}|{fingerprint}|{profile.width}x{profile.height}|{resize}|"
        f"{preprocessor.resize_filter}".encode()
    ).hexdigest()[:24]
    path = cache_dir / f"frames_{key}.npy"
    meta_path = cache_dir / f"frames_{key}.json"
    if path.is_file() and meta_path.is_file():
        return path, float(json.loads(meta_path.read_text())["fps"])
    cache_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    with VideoFileStepper(scene.video) as stepper:
        fps = stepper.fps
        index = 0
        while (frame := stepper.frame_at(index * 1000.0 / fps)) is not None:
            if frame.frame_id != index:
                raise DatasetError(f"{scene.video}: reader returned frame {frame.frame_id} for index {index}")
            resized = np.empty((profile.height, profile.width, 3), dtype=np.uint8)
            preprocessor.resize_into(frame.image, resized)
            frames.append(resized)
            index += 1
    if len(frames) < profile.frames_per_clip:
        raise DatasetError(f"{scene.video}: {len(frames)} frames, fewer than one clip")
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, np.stack(frames))
    tmp.replace(path)
    meta_path.write_text(json.dumps({"scene": scene.rel, "fps": fps, "frames": len(frames)}) + "\n")
    return path, fps


def clip_indices(newest: int, fps: float, interval_ms: float, frames_per_clip: int) -> list[int] | None:
    """Frame indices of the clip whose newest sample is frame `newest` (VideoFileStepper.clip_at:
    samples at t - k * interval, frame floor(t * fps / 1000)), or None when it starts before 0."""
    t_ms = newest * 1000.0 / fps
    out = []
    for k in range(frames_per_clip - 1, -1, -1):
        t = t_ms - k * interval_ms
        if t < 0:
            return None
        out.append(math.floor(t * fps / 1000.0 + 1e-9))
    return out


# ---------------------------------------------------------------------------------------------
# examples
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    scene: int  # index into the dataset's scenes
    frames: tuple[int, ...]  # frame indices of the clip, oldest first
    newest_ms: float  # video time of the newest frame (the label's time)
    prompt: str  # the whole prompt with <|video_pad|> placeholders (PromptTemplate.full_text)
    target: str  # the answer: advice JSON + <|im_end|>
    action: MetaAction  # the target's action (train.targets.target_action)
    accepted: tuple[MetaAction, ...]  # every action the label accepts
    hazards: tuple[str, ...] = ()  # the label's hazards
    # Index (in the dataset's examples) of the clip this one is the left-right mirror of, None for a
    # clip as recorded (train.mirror: the frames are flipped, the answer's sides swapped).
    mirror_of: int | None = None


def build_examples(scene_index: int, scene: Scene, fps: float, n_frames: int, sampling: Sampling,
                   template: PromptTemplate) -> list[Example]:
    profile = sampling.profile
    windows: list[LabelWindow] = load_labels(scene.labels)
    nav = NavTimeline.load(scene.nav, sampling.nav_max_ttl_ms)
    first_clip_ms = (sampling.frames_per_clip - 1) * sampling.interval_ms
    examples = []
    for newest in range(0, n_frames, sampling.stride_frames):
        idx = clip_indices(newest, fps, sampling.interval_ms, sampling.frames_per_clip)
        if idx is None:
            continue
        newest_ms = newest * 1000.0 / fps
        window = window_at(windows, newest_ms)
        if window is None:
            continue
        t0 = frame_time_ns(idx[0], fps)
        frame_times_s = on_sampling_grid([(frame_time_ns(i, fps) - t0) / 1e9 for i in idx],
                                         sampling.interval_ms / 1000)
        stamps = frame_pair_timestamps(frame_times_s, profile.temporal_patch_size)
        # The first cycle of this phase: the earliest newest frame with a whole clip behind it.
        first_cycle_ms = newest_ms - math.floor((newest_ms - first_clip_ms) / sampling.interval_ms + 1e-9) * \
            sampling.interval_ms
        nav_line = nav.line_at(newest_ms, sampling.interval_ms, first_cycle_ms)
        prompt = template.full_text(stamps, profile.tokens_per_pair, nav_line)
        examples.append(Example(scene_index, tuple(idx), newest_ms, prompt, target_text(window), target_action(window),
                                window.actions, tuple(h.value for h in window.hazards)))
    return examples


@dataclass
class ClipDataset:
    """Examples plus their cached frames; `pixel_values(example)` is the runtime's encoder input."""

    scenes: list[Scene]
    examples: list[Example]
    sampling: Sampling
    normalization: Normalization
    frame_files: list[Path]
    fingerprints: list[str] = field(default_factory=list)
    _frames: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _preprocessor: Preprocessor | None = field(default=None, repr=False)

    @property
    def preprocessor(self) -> Preprocessor:
        if self._preprocessor is None:
            self._preprocessor = Preprocessor(self.sampling.profile, self.normalization,
                                              resize_mode=self.sampling.resize)  # type: ignore[arg-type]
        return self._preprocessor

    def frames_of(self, scene: int) -> np.ndarray:
        if scene not in self._frames:
            self._frames[scene] = np.load(self.frame_files[scene], mmap_mode="r")
        return self._frames[scene]

    def pixel_values(self, example: Example) -> np.ndarray:
        frames = self.frames_of(example.scene)
        images = [np.asarray(frames[i]) for i in example.frames]
        if example.mirror_of is not None:
            images = [np.ascontiguousarray(image[:, ::-1]) for image in images]
        # normalize_patchify reuses its output buffer: copy before the next call.
        return self.preprocessor.normalize_patchify(images).copy()

    def action_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for ex in self.examples:
            counts[ex.action.value] = counts.get(ex.action.value, 0) + 1
        return dict(sorted(counts.items()))


def load_dataset(
    scenes_root: Path | str,
    cache_dir: Path | str | None = None,
    sampling: Sampling | None = None,
    normalization: Normalization | None = None,
    template: PromptTemplate | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ClipDataset:
    """Find the scenes, cache their resized frames, build every example."""
    sampling = sampling or Sampling()
    normalization = normalization or Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    template = template or PromptTemplate()
    scenes = find_scenes(scenes_root)
    cache = Path(cache_dir) if cache_dir is not None else Path(scenes_root) / ".train_cache"
    preprocessor = Preprocessor(sampling.profile, normalization, resize_mode=sampling.resize)  # type: ignore[arg-type]
    examples: list[Example] = []
    files: list[Path] = []
    fingerprints: list[str] = []
    for i, scene in enumerate(scenes):
        if progress is not None:
            progress(i, len(scenes), scene.rel)
        fingerprint = scene_fingerprint(scene)
        path, fps = cache_frames(scene, fingerprint, preprocessor, cache, sampling.resize)
        n_frames = int(np.load(path, mmap_mode="r").shape[0])
        files.append(path)
        fingerprints.append(fingerprint)
        examples.extend(build_examples(i, scene, fps, n_frames, sampling, template))
    if progress is not None:
        progress(len(scenes), len(scenes), "")
    return ClipDataset(scenes, examples, sampling, normalization, files, fingerprints)
