"""Render a scenario to a scene folder: video.mp4, labels.jsonl, nav.jsonl, scenario.toml and
scene.json (what was rendered, with which seed and overrides)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sim.drive import Drive, FrameState, simulate
from sim.labels import label_windows, nav_lines, write_jsonl
from sim.render import Annotation, SceneRenderer
from sim.scenario import Scenario, ScenarioError, load_scenario

VIDEO_NAME = "video.mp4"
LABELS_NAME = "labels.jsonl"
NAV_NAME = "nav.jsonl"
SCENARIO_NAME = "scenario.toml"
META_NAME = "scene.json"


@dataclass(frozen=True)
class SceneFiles:
    out_dir: Path
    video: Path
    labels: Path
    nav: Path
    scenario: Path
    meta: Path
    name: str
    seed: int
    variant: str
    fps: float
    width: int
    height: int
    n_frames: int
    duration_s: float


def resolve(
    scenario: str | Path | Scenario,
    *,
    duration_s: float | None = None,
    fps: float | None = None,
    variant: str | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Scenario:
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    return sc.with_overrides(duration_s=duration_s, fps=fps, variant=variant, width=width, height=height)


def iter_frames(
    scenario: str | Path | Scenario, seed: int = 0, **overrides: Any
) -> Iterator[tuple[FrameState, np.ndarray, list[Annotation]]]:
    """Frames of a scenario in memory (for tests and training): (state, BGR image, annotations)."""
    drive = simulate(resolve(scenario, **overrides), seed)
    yield from SceneRenderer(drive).frames()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def scenario_toml(sc: Scenario) -> str:
    """The effective scenario (overrides applied) as TOML that parses back to the same thing."""
    lines = [f"# {sc.description}" if sc.description else "# scenario"]
    top = {"name": sc.name, "description": sc.description, "duration_s": sc.duration_s, "fps": sc.fps,
           "variant": sc.variant, "width": sc.width, "height": sc.height, "ambient_traffic": sc.ambient_traffic}
    lines += [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for table, model in (("road", sc.road), ("ego", sc.ego)):
        lines += ["", f"[{table}]"]
        for k, v in model.model_dump().items():
            if v == [] and k == "speed_profile":
                continue
            lines.append(f"{k} = {_toml_value(v)}")
    for event in sc.events:
        lines += ["", "[[events]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in event.model_dump().items()]
    return "\n".join(lines) + "\n"


def render_scene(
    name_or_path: str | Path | Scenario,
    seed: int = 0,
    out_dir: str | Path = "scene",
    *,
    duration_s: float | None = None,
    fps: float | None = None,
    variant: str | None = None,
    width: int | None = None,
    height: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SceneFiles:
    """Render one scenario to ``out_dir``. Raises ScenarioError for a bad scenario."""
    sc = resolve(name_or_path, duration_s=duration_s, fps=fps, variant=variant, width=width, height=height)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drive: Drive = simulate(sc, seed)
    video_path = out / VIDEO_NAME
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), sc.fps, (sc.width, sc.height))
    if not writer.isOpened():
        raise ScenarioError(f"OpenCV cannot write {video_path} with the mp4v codec")
    try:
        renderer = SceneRenderer(drive)
        total = len(drive.frames)
        for i, (_, img, _) in enumerate(renderer.frames()):
            writer.write(img)
            if progress is not None:
                progress(i + 1, total)
    finally:
        writer.release()
    labels_path = write_jsonl(out / LABELS_NAME, (w.to_json() for w in label_windows(drive)))
    nav_path = write_jsonl(out / NAV_NAME, nav_lines(drive))
    scenario_path = out / SCENARIO_NAME
    scenario_path.write_text(scenario_toml(sc))
    files = SceneFiles(out, video_path, labels_path, nav_path, scenario_path, out / META_NAME, sc.name, seed,
                       sc.variant, sc.fps, sc.width, sc.height, len(drive.frames), sc.duration_s)
    meta = {"scenario": sc.name, "seed": seed, "variant": sc.variant, "fps": sc.fps, "width": sc.width,
            "height": sc.height, "n_frames": files.n_frames, "duration_s": sc.duration_s,
            "description": sc.description,
            "files": {"video": VIDEO_NAME, "labels": LABELS_NAME, "nav": NAV_NAME, "scenario": SCENARIO_NAME}}
    files.meta.write_text(json.dumps(meta, indent=2) + "\n")
    return files


def is_rendered_scene(video: Path | str) -> bool:
    """Whether `video` is the video of a scene folder `render_scene` wrote: every pixel drawn by the
    renderer, none from a recording (real-drive looks and composites name their `source_video`)."""
    video = Path(video)
    try:
        meta = json.loads((video.parent / META_NAME).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(meta, dict) and meta.get("files", {}).get("video") == video.name
            and "source_video" not in meta)
