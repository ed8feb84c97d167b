"""Rendered events on real roads: actors pasted onto recorded frames keep their labels, the rest
of the frame is the recording."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

from sim.composite import COMPOSITE_SCENARIOS, composite_scene, paste_actors, vanishing_offset
from sim.drive import simulate
from sim.labels import label_windows
from sim.real_labels import find_real_clips
from sim.render import SceneRenderer
from sim.scene import resolve
from tests.conftest import DRIVE_DIR


@pytest.fixture(scope="module")
def highway():
    return {c.name: c for c in find_real_clips(DRIVE_DIR)}["udacity_solidWhiteRight"]


def real_frame(clip, size=(640, 360)):
    cap = cv2.VideoCapture(str(clip.video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return cv2.resize(frame, size)


def light_frame():
    """A red_light drive and the first frame whose traffic light is on screen."""
    drive = simulate(resolve("red_light", variant="day"), 0)
    renderer = SceneRenderer(drive)
    for frame in drive.frames:
        _, notes = renderer.render(frame)
        lights = [n for n in notes if n.kind == "traffic_light"]
        if lights and lights[0].bbox[2] - lights[0].bbox[0] > 6:
            return renderer, frame, lights[0].bbox
    raise AssertionError("the traffic light never comes into view")


def test_actors_replace_the_recording_only_where_they_are(highway):
    renderer, frame, (x0, y0, x1, y1) = light_frame()
    real = real_frame(highway)
    out = paste_actors(renderer, frame, real)
    assert out.shape == real.shape and out.dtype == np.uint8
    inside = np.abs(out[int(y0):int(y1), int(x0):int(x1)].astype(int) - real[int(y0):int(y1), int(x0):int(x1)])
    assert inside.mean() > 20, "the traffic light is not on the frame"
    # Far from every actor the frame is the recording, untouched (no rendered road, sky or trees).
    assert np.array_equal(out[-40:, :100], real[-40:, :100])
    without = paste_actors(renderer, dataclasses.replace(frame, actors=[]), real)
    assert np.array_equal(without, real)


def test_actors_move_to_the_recordings_vanishing_point(highway):
    renderer, frame, (x0, y0, x1, y1) = light_frame()
    clip = dataclasses.replace(highway, vanishing_point=(0.55, 0.52))
    dx, dy = vanishing_offset(clip, 640, 360)
    assert (dx, dy) == (32, 36)  # 0.05 of 640 right, 0.10 of 360 down from the rendered camera's
    assert vanishing_offset(dataclasses.replace(highway, vanishing_point=None), 640, 360) == (0, 0)
    grey = np.full((360, 640, 3), 128, np.uint8)  # a plain background: what differs is the actor
    still, moved = paste_actors(renderer, frame, grey), paste_actors(renderer, frame, grey, (dx, dy))
    box = np.s_[int(y0):int(y1), int(x0):int(x1)]
    box_moved = np.s_[int(y0) + dy:int(y1) + dy, int(x0) + dx:int(x1) + dx]
    assert not np.array_equal(still[box], grey[box])
    assert np.array_equal(moved[box_moved], still[box])


def test_a_composite_scene_is_a_training_scene_with_the_rendered_labels(tmp_path, highway):
    from train.dataset import find_scenes

    folder = composite_scene("red_light", 0, highway, tmp_path / "red_light")
    drive = simulate(resolve("red_light", variant="day"), 0)
    labels = [json.loads(line) for line in (folder / "labels.jsonl").read_text().splitlines()]
    assert labels == [w.to_json() for w in label_windows(drive)]
    cap = cv2.VideoCapture(str(folder / "video.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(drive.frames)
    cap.release()
    meta = json.loads((folder / "scene.json").read_text())
    assert meta["scenario"] == "composite_red_light" and meta["source_video"] == highway.video.name
    # The recording (8.8 s) is played slower to span the 16 s scene, never looped.
    assert meta["window_s"][0] == 0.0 and meta["window_s"][1] < 8.84
    [scene] = find_scenes(tmp_path)
    assert scene.scenario == "composite_red_light"


def test_clips_json_gives_the_composite_window_and_vanishing_point():
    clips = {c.name: c for c in find_real_clips(DRIVE_DIR)}
    forest = clips["gauravyadav016-png_lane_detection_lane"]
    assert forest.composite_window == (20.0, 41.0)  # the straight half: actors stand on a straight road
    assert forest.vanishing_point is not None
    assert clips["udacity_vehdet_test_video"].composite_window is None
    assert set(COMPOSITE_SCENARIOS) <= {p.stem for p in (DRIVE_DIR.parent.parent / "sim" / "scenarios").glob("*.toml")}
