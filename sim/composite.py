"""Rendered events on real roads: a scenario's actors pasted onto a recorded drive.

The renderer's roads, sky and trees are what the model learns "synthetic" from; its actors (lights,
pedestrians, cones, stalled cars, cyclists, emergency vehicles, braking and ambient traffic) are
what the advice is about. A composite scene keeps the actors and the labels of a rendered drive and
replaces everything else by the frames of a real recording, so events are learnt on real
backgrounds and a real background alone never carries an event's label.

The actors' pixels are found by painting every frame twice, with and without the drive's actors,
before lighting: what differs is the actor, already occluded by nearer scenery. Lamps (traffic
lights, brake lights, beacons) are then added as light, their glow over the real frame. The part of
the recording used is the clip's `composite_window` in clips.json (where its road is straight enough
for actors placed on a straight rendered road; the whole clip by default), stretched in time to the
scene's length (played slower, never looped, so there is no cut) and resized to the frame size.
The actors are moved so the rendered road's vanishing point lands on the recording's
(`vanishing_point` in clips.json, as fractions of the width and height).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from sim.drive import FrameState, simulate
from sim.geometry import HORIZON_FRACTION
from sim.labels import label_windows, nav_lines, write_jsonl
from sim.real_labels import RealClip, RealLabelsError, video_frames
from sim.render import SceneRenderer
from sim.render.lighting import compose
from sim.scene import LABELS_NAME, META_NAME, NAV_NAME, VIDEO_NAME, resolve

# Scenarios whose advice is about an actor. Turns, exits and arrivals are about the rendered road
# and the navigation, which a real recording does not show, so they are not composited.
COMPOSITE_SCENARIOS = (
    "red_light",
    "pedestrian_crossing",
    "cones_change_left",
    "stalled_car_nudge_right",
    "cyclist_nudge",
    "emergency_pull_over",
    "lead_brake",
    "speed_limit",
)
# Rendered in the day look: the recordings this is meant for are daylight drives, and the other
# looks' lighting would be baked into the actors' pixels.
VARIANT = "day"
# Soft actor edges: a hard cut-out edge is a cue no camera produces.
FEATHER_PX = 1.0


def actor_mask(with_actors: np.ndarray, without: np.ndarray) -> np.ndarray:
    """Per-pixel weight in [0, 1] of the actor layer: where the two paintings differ, feathered."""
    differs = np.any(with_actors != without, axis=2).astype(np.float32)
    if differs.any():
        differs = cv2.GaussianBlur(differs, (0, 0), FEATHER_PX)
    return differs[..., None]


def shifted(layer: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """`layer` moved by (dx, dy) pixels; what moves in is empty (zero)."""
    if dx == 0 and dy == 0:
        return layer
    h, w = layer.shape[:2]
    moved = cv2.warpAffine(layer, np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32), (w, h), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return moved.reshape(layer.shape)


def paste_actors(renderer: SceneRenderer, frame: FrameState, real: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """`real` with the frame's actors painted over it and their lamps' light added; `offset` moves the
    actors so the rendered road's vanishing point lands on the recording's."""
    painted, _ = renderer.paint(frame)
    empty, _ = renderer.paint(dataclasses.replace(frame, actors=[]))
    dx, dy = offset
    alpha = shifted(actor_mask(painted.img, empty.img), dx, dy)
    lit = shifted(compose(renderer.look, painted.img, painted.light, np.zeros_like(painted.emissive)), dx, dy)
    glow = shifted(compose(renderer.look, np.zeros_like(painted.img), None, painted.emissive), dx, dy)
    out = alpha * lit + (1.0 - alpha) * real + glow.astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def vanishing_offset(clip: RealClip, width: int, height: int) -> tuple[int, int]:
    """Pixels from the rendered camera's vanishing point to the recording's (clips.json)."""
    if clip.vanishing_point is None:
        return 0, 0
    x, y = clip.vanishing_point
    return round((x - 0.5) * width), round((y - HORIZON_FRACTION) * height)


def background_frames(video: Path, times_s: np.ndarray, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The recording's frames at `times_s` (ascending), resized to `size` (width, height)."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    wanted = np.floor(times_s * fps).astype(int)
    index, frame = -1, None
    try:
        for target in wanted:
            while index < target:
                ok, nxt = cap.read()
                if not ok:
                    break
                index, frame = index + 1, nxt
            if frame is None:
                raise RealLabelsError(f"{video}: no decodable frames")
            yield cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    finally:
        cap.release()


def composite_scene(scenario: str, seed: int, clip: RealClip, out_dir: Path | str,
                    clip_frames: tuple[int, float] | None = None) -> Path:
    """Render `scenario` (seed) with its actors pasted onto `clip`; a scene folder `edge train` reads.

    `clip_frames` is the recording's (decoded frames, fps) when the caller has counted them already
    (counting decodes the whole recording)."""
    sc = resolve(scenario, variant=VARIANT)
    drive = simulate(sc, seed)
    renderer = SceneRenderer(drive)
    frames, fps = clip_frames or video_frames(clip.video)
    start_s, end_s = clip.composite_window or (0.0, frames / fps)
    end_s = min(end_s, frames / fps) - 1.0 / fps  # one frame of slack: headers miscount
    n = len(drive.frames)
    # Slower playback, never a loop: a window shorter than the scene spans all of it.
    if end_s - start_s < sc.duration_s:
        times = np.linspace(start_s, end_s, n)
    else:
        times = start_s + np.arange(n) / sc.fps
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    offset = vanishing_offset(clip, sc.width, sc.height)
    writer = cv2.VideoWriter(str(out / VIDEO_NAME), cv2.VideoWriter_fourcc(*"mp4v"), sc.fps, (sc.width, sc.height))
    try:
        for frame, real in zip(drive.frames, background_frames(clip.video, times, (sc.width, sc.height)),
                               strict=True):
            writer.write(paste_actors(renderer, frame, real, offset))
    finally:
        writer.release()
    write_jsonl(out / LABELS_NAME, (w.to_json() for w in label_windows(drive)))
    write_jsonl(out / NAV_NAME, nav_lines(drive))
    meta = {"scenario": f"composite_{scenario}", "seed": seed, "variant": clip.condition, "fps": sc.fps,
            "width": sc.width, "height": sc.height, "n_frames": n, "duration_s": sc.duration_s,
            "source_video": clip.video.name, "window_s": [round(float(times[0]), 3), round(float(times[-1]), 3)],
            "rendered": {"scenario": scenario, "variant": VARIANT},
            "files": {"video": VIDEO_NAME, "labels": LABELS_NAME, "nav": NAV_NAME}}
    (out / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def composite_scenes(clips: list[RealClip], out: Path | str, seeds: tuple[int, ...] = (0,),
                     scenarios: tuple[str, ...] = COMPOSITE_SCENARIOS) -> Path:
    """One composite scene per scenario, seed and clip under `out` (existing ones are kept).

    Each scenario's composites share the name `composite_<scenario>`, so batch balancing weighs
    them as one scenario whichever recording is underneath."""
    out = Path(out)
    for clip in clips:
        clip_frames = None
        for scenario in scenarios:
            for seed in seeds:
                folder = out / f"composite_{clip.name}" / f"{scenario}_s{seed}"
                if not (folder / META_NAME).is_file():
                    clip_frames = clip_frames or video_frames(clip.video)
                    composite_scene(scenario, seed, clip, folder, clip_frames)
    return out
