"""The drives of a fleet run and the per-drive input checks a worker makes before replaying one.

A drive is an `edge scene`-style folder: video.mp4, labels.jsonl, optional nav.jsonl, scene.json.
Discovery is deliberately lenient (any folder with scene.json or labels.jsonl counts), so a folder
whose video is missing shows up in the report as a failed drive instead of silently vanishing.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.errors import EdgeError
from sim.labels import load_labels, load_nav
from train.dataset import LABELS_NAME, SCENE_META, Scene

# Labels may end up to one frame interval after the last decoded frame (the renderer closes the
# last window at the scene's duration); anything later does not belong to this video.
LABEL_END_SLACK_MS = 250.0


class DriveError(EdgeError):
    """A drive's own input is unusable (missing or undecodable video, labels that do not fit)."""


def find_drives(roots: list[Path]) -> list[Scene]:
    """Every drive folder under the roots, sorted by path within each root; names are unique."""
    drives: list[Scene] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise DriveError(f"drives folder {root} does not exist")
        folders = sorted({p.parent for name in (SCENE_META, LABELS_NAME) for p in root.rglob(name)})
        prefix = root.name if len(roots) > 1 else ""
        for folder in folders:
            rel = folder.relative_to(root).as_posix()
            rel = "/".join(part for part in (prefix, "" if rel == "." else rel) if part) or "."
            drives.append(_scene(folder, rel))
    if not drives:
        raise DriveError(f"no drive folders ({SCENE_META} or {LABELS_NAME}) under {', '.join(map(str, roots))}")
    return drives


def _scene(folder: Path, rel: str) -> Scene:
    meta: dict = {}
    try:
        meta = json.loads((folder / SCENE_META).read_text())
    except (OSError, json.JSONDecodeError):
        pass  # the worker's check reports what is wrong with the drive
    meta = meta if isinstance(meta, dict) else {}
    return Scene(folder, rel, str(meta.get("scenario", folder.name)), int(meta.get("seed", 0) or 0),
                 str(meta.get("variant", "")), float(meta.get("fps", 0.0) or 0.0))


def check_drive(drive: Scene) -> None:
    """Raise DriveError (one line, naming the file) if the drive cannot be replayed and judged."""
    from edge.preflight import check_video_file

    if not drive.video.is_file():
        raise DriveError(f"no video: {drive.video} is missing")
    if not drive.labels.is_file():
        raise DriveError(f"no labels: {drive.labels} is missing")
    try:
        stepper = check_video_file(drive.video)
    except EdgeError as exc:
        raise DriveError(f"video does not decode: {exc}") from None
    # The header's frame count: decoding the whole video just to check the labels would cost as much as a replay.
    duration_ms = stepper.claimed_frames * 1000.0 / stepper.fps if stepper.claimed_frames else None
    stepper.close()
    try:
        windows = load_labels(drive.labels)
        if drive.nav is not None:
            load_nav(drive.nav)
    except EdgeError as exc:
        raise DriveError(str(exc)) from None
    if not windows:
        raise DriveError(f"labels do not match the video: {drive.labels} has no label window")
    last_end = max(w.end_ms for w in windows)
    if duration_ms is not None and last_end > duration_ms + LABEL_END_SLACK_MS:
        raise DriveError(f"labels do not match the video: {drive.labels} runs to {last_end} ms, "
                         f"the video ends at {duration_ms:.0f} ms")
