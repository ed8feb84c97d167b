"""Labels for recorded (real) drives, in the format of the synthetic scenes.

A recording `NAME.mp4` is labelled by `NAME.labels.jsonl` beside it: the same time windows with
acceptable actions as a rendered scene's `labels.jsonl` (sim.labels), contiguous from 0 to the
end of the video. An optional `clips.json` in the same folder says, per recording, its condition
(day, overcast, rain, dusk, night, ...) and whether it is a training or a validation clip:

    {"clips": {"udacity_solidWhiteRight": {"condition": "day", "split": "train"}}}

A labels file must match its video: windows that leave a gap, overlap, or end more than
`DURATION_TOLERANCE_MS` away from the decoded video's duration are refused with the reason.
"""

from __future__ import annotations

import itertools
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import EdgeError
from sim.labels import LabelWindow, SidecarError, load_labels
from sim.real_views import RandomView, Transform

LABELS_SUFFIX = ".labels.jsonl"
CLIPS_JSON = "clips.json"
# Containers round durations and some headers miscount frames: a quarter of a second, or two
# frames at low frame rates, is a mismatch of bookkeeping, not of content.
DURATION_TOLERANCE_MS = 250.0
# Acceptable actions on ordinary driving with nothing that calls for more.
ORDINARY = ("keep_speed", "keep_lane")


class RealLabelsError(EdgeError, ValueError):
    """A recording whose labels cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class RealClip:
    video: Path
    labels: Path
    name: str
    condition: str = "unknown"
    split: str = "validation"
    # (start, end) seconds where actors rendered on a straight road fit the recording (sim.composite).
    composite_window: tuple[float, float] | None = None
    # (x, y) of the road's vanishing point as fractions of the frame (sim.composite lines actors up).
    vanishing_point: tuple[float, float] | None = None


def video_frames(video: Path) -> tuple[int, float]:
    """(decoded frames, fps) as the runtime's reader sees the file (headers can miscount)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise RealLabelsError(f"{video}: cannot be opened as a video")
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 0.0
    frames = 0
    while cap.grab():
        frames += 1
    cap.release()
    if frames == 0 or fps <= 0:
        raise RealLabelsError(f"{video}: no decodable frames (or no frame rate)")
    return frames, fps


def video_duration_ms(video: Path) -> float:
    frames, fps = video_frames(video)
    return frames * 1000.0 / fps


def check_windows(windows: list[LabelWindow], duration_ms: float, where: str) -> None:
    """Refuse labels that do not tile [0, duration) of the video."""
    if not windows:
        raise RealLabelsError(f"{where}: no label windows")
    if windows[0].start_ms != 0:
        raise RealLabelsError(f"{where}: the first window starts at {windows[0].start_ms} ms, not 0")
    for a, b in itertools.pairwise(windows):
        if b.start_ms != a.end_ms:
            raise RealLabelsError(f"{where}: windows must be contiguous; one ends at {a.end_ms} ms, "
                                  f"the next starts at {b.start_ms} ms")
    for w in windows:
        if w.end_ms <= w.start_ms:
            raise RealLabelsError(f"{where}: empty window [{w.start_ms}, {w.end_ms}) ms")
    end = windows[-1].end_ms
    if abs(end - duration_ms) > DURATION_TOLERANCE_MS:
        raise RealLabelsError(f"{where}: labels end at {end / 1000:.2f} s but the video lasts "
                              f"{duration_ms / 1000:.2f} s (tolerance {DURATION_TOLERANCE_MS / 1000:.2f} s); "
                              "the labels were made for another video or another cut of it")


def load_clip_labels(clip: RealClip) -> list[LabelWindow]:
    try:
        windows = load_labels(clip.labels)
    except SidecarError as exc:
        raise RealLabelsError(str(exc)) from None
    check_windows(windows, video_duration_ms(clip.video), str(clip.labels))
    return windows


def find_real_clips(folder: Path | str, split: str | None = None) -> list[RealClip]:
    """Every labelled recording in `folder` (videos without labels are skipped), optionally only
    one split of clips.json."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RealLabelsError(f"recordings folder {folder} does not exist")
    meta_path = folder / CLIPS_JSON
    meta = json.loads(meta_path.read_text()).get("clips", {}) if meta_path.is_file() else {}
    clips = []
    for labels in sorted(folder.glob(f"*{LABELS_SUFFIX}")):
        name = labels.name[: -len(LABELS_SUFFIX)]
        videos = [p for p in (folder / f"{name}{ext}" for ext in (".mp4", ".avi", ".mkv", ".mov")) if p.is_file()]
        if not videos:
            raise RealLabelsError(f"{labels}: no video {name}.mp4 (or .avi/.mkv/.mov) beside it")
        info = meta.get(name, {})
        window, vanishing = info.get("composite_window"), info.get("vanishing_point")
        clip = RealClip(videos[0], labels, name, str(info.get("condition", "unknown")),
                        str(info.get("split", "validation")),
                        (float(window[0]), float(window[1])) if window else None,
                        (float(vanishing[0]), float(vanishing[1])) if vanishing else None)
        if split is None or clip.split == split:
            clips.append(clip)
    if not clips:
        which = f" of split {split!r}" if split else ""
        raise RealLabelsError(f"no labelled recordings{which} in {folder} (NAME.mp4 + NAME{LABELS_SUFFIX})")
    return clips


# ---------------------------------------------------------------------------------------------
# looks: the same frames as another condition, or flipped (training augmentation, emulation)
# ---------------------------------------------------------------------------------------------
def _dark(frame: np.ndarray, gain: float, gamma: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    x = (frame.astype(np.float32) / 255.0) ** gamma * gain
    if noise:
        x = x + rng.normal(0.0, noise, size=x.shape).astype(np.float32)
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)


def _dashboard(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dark hood or dashboard across the bottom and an A-pillar wedge at the left edge: what a
    windscreen or dashcam mount shows and a clean roof camera does not."""
    out = frame.copy()
    h, w = out.shape[:2]
    out[int(0.8 * h):] = (out[int(0.8 * h):] * 0.25).astype(np.uint8)
    pillar = np.array([[0, 0], [int(0.12 * w), 0], [int(0.04 * w), h], [0, h]], dtype=np.int32)
    import cv2

    cv2.fillPoly(out, [pillar], (25, 25, 30))
    return out


def _zoomed(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The centre 75% enlarged: a longer lens, another mounting height."""
    import cv2

    h, w = frame.shape[:2]
    y0, x0 = int(0.125 * h), int(0.125 * w)
    return cv2.resize(frame[y0:h - y0, x0:w - x0], (w, h), interpolation=cv2.INTER_LINEAR)


def _rainy(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, lower contrast and drops on the glass (an emulation, not rain footage)."""
    import cv2

    out = cv2.GaussianBlur(frame, (0, 0), 2.0).astype(np.float32)
    out = 0.6 * out + 0.4 * out.mean()
    h, w = frame.shape[:2]
    for _ in range(60):
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(2, max(3, w // 80)))
        cv2.circle(out, (x, y), r, (200, 200, 200), -1)
    return np.clip(out, 0, 255).astype(np.uint8)


# Where the pale-pavement look starts repainting: the road is below the horizon, which the training
# recordings put at 57-58% of the frame height; the mask fades in over the rows around it.
PAVEMENT_FROM = 0.55
PAVEMENT_FULL = 0.62
# Concrete in bright daylight (BGR): a little above the worn bridge pavement of the real validation clip.
CONCRETE_BGR = (150.0, 162.0, 176.0)
# The asphalt level assumed when no pixel below the horizon is grey (the look then changes little).
ASPHALT_LEVEL = 100.0


def _pale_pavement(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark asphalt repainted as pale concrete: grey (unsaturated, not bright) pixels below the horizon
    are scaled towards concrete's tone, keeping their texture; lane paint, grass and bright cars are left.

    Both training recordings are dark asphalt, while every white expanse on a rendered road is a zebra
    crossing, so a model trained on them reads a concrete carriageway as a crossing and stops."""
    import cv2

    h = frame.shape[0]
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    grey = ((hsv[..., 1] < 60) & (hsv[..., 2] < 150)).astype(np.float32)
    rows = np.clip((np.arange(h, dtype=np.float32) / h - PAVEMENT_FROM) / (PAVEMENT_FULL - PAVEMENT_FROM), 0, 1)
    road = grey * rows[:, None]
    mask = cv2.GaussianBlur(road, (0, 0), max(1.0, h / 180))[..., None]
    x = frame.astype(np.float32)
    # The road's own level (its median over pixels and channels) is what is scaled onto concrete's tone.
    on_road = road > 0.5
    level = max(float(np.median(x[on_road])), 1.0) if on_road.any() else ASPHALT_LEVEL
    concrete = x * (np.asarray(CONCRETE_BGR, np.float32) / level)
    return np.clip(x + (concrete - x) * mask, 0, 255).astype(np.uint8)


LOOKS = {
    "as_recorded": lambda f, rng: f,
    "mirrored": lambda f, rng: np.ascontiguousarray(f[:, ::-1]),
    # Exposure emulation, not real dusk or night footage: darker, more contrast in the shadows, sensor noise.
    "dusk_emulated": lambda f, rng: _dark(f, 0.55, 1.3, 0.01, rng),
    "night_emulated": lambda f, rng: _dark(f, 0.25, 1.8, 0.02, rng),
    "dashboard": _dashboard,
    "zoomed": _zoomed,
    "rain_emulated": _rainy,
    "pale_pavement": _pale_pavement,
    "pale_pavement_zoomed": lambda f, rng: _zoomed(_pale_pavement(f, rng), rng),
    "pale_pavement_dashboard": lambda f, rng: _dashboard(_pale_pavement(f, rng), rng),
}
# What `edge train --real` draws by default (the shipped model's training.json records the looks it used).
TRAINING_LOOKS = tuple(LOOKS)
# Random cameras (sim.real_views): each is drawn once per clip, from the clip's name and the look's.
RANDOM_VIEWS = tuple(f"random_view_{i}" for i in range(4))
LOOKS.update({name: RandomView() for name in RANDOM_VIEWS})


def look_seed(clip_name: str, look: str) -> int:
    """The seed a training look of a clip is written with: 0 for the fixed looks (their noise and drops
    as before), per clip and look for the random views, so every clip gets cameras of its own."""
    return zlib.crc32(f"{clip_name}/{look}".encode()) if look in RANDOM_VIEWS else 0


def write_look(video: Path, out: Path, look: str, seed: int = 0) -> Path:
    """`video` re-encoded with one of LOOKS applied to every frame (same frame count and rate)."""
    import cv2

    look_fn = LOOKS[look]
    rng = np.random.default_rng(seed)
    transform: Transform = look_fn.for_video(rng) if isinstance(look_fn, RandomView) else look_fn
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = None
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        writer.write(transform(frame, rng))
    cap.release()
    if writer is None:
        raise RealLabelsError(f"{video}: no decodable frames")
    writer.release()
    return out


def training_scenes(clips: list[RealClip], out: Path | str, looks: tuple[str, ...] = TRAINING_LOOKS) -> Path:
    """Scene folders (video.mp4 + labels.jsonl + scene.json) for `edge train`, one per clip and
    look; each (clip, look) is a scenario of its own, so batch balancing gives each its draws."""
    out = Path(out)
    unknown = sorted(set(looks) - set(LOOKS))
    if unknown:
        raise RealLabelsError(f"unknown look(s) {unknown}; known: {sorted(LOOKS)}")
    for clip in clips:
        windows = load_clip_labels(clip)
        for look in looks:
            folder = out / f"real_{clip.name}" / look
            if (folder / "scene.json").is_file():
                continue
            write_look(clip.video, folder / "video.mp4", look, seed=look_seed(clip.name, look))
            (folder / "labels.jsonl").write_text("".join(json.dumps(w.to_json()) + "\n" for w in windows))
            meta = {"scenario": f"real_{clip.name}_{look}", "seed": 0, "variant": clip.condition,
                    "source_video": clip.video.name, "look": look}
            (folder / "scene.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
