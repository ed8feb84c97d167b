"""Labels for recorded drives: the shipped ones fit their videos, mismatched ones are refused with the reason."""

from __future__ import annotations

import dataclasses
import json
import shutil

import cv2
import numpy as np
import pytest

from sim.real_labels import (
    LOOKS,
    RANDOM_VIEWS,
    TRAINING_LOOKS,
    RealClip,
    RealLabelsError,
    find_real_clips,
    load_clip_labels,
    look_seed,
    training_scenes,
    video_duration_ms,
    write_look,
)
from tests.conftest import DRIVE_DIR


def window(start, end, actions=("keep_speed", "keep_lane"), hazards=(), source="drive"):
    return {"start_ms": start, "end_ms": end, "actions": list(actions), "lateral": None, "hazards": list(hazards),
            "urgency": "low", "rationale": "road", "source": source}


def write_video(path, frames=30, fps=10.0, value=None):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        image = np.full((48, 64, 3), value, np.uint8) if value is not None else \
            rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        writer.write(image)
    writer.release()
    return path


def test_every_shipped_recording_has_labels_that_match_it():
    clips = find_real_clips(DRIVE_DIR, split=None)
    assert {c.split for c in clips} == {"train", "validation"}
    for clip in clips:
        windows = load_clip_labels(clip)
        assert windows[0].start_ms == 0
        assert abs(windows[-1].end_ms - video_duration_ms(clip.video)) <= 1
    assert {c.name for c in find_real_clips(DRIVE_DIR, split="train")}.isdisjoint(
        {c.name for c in find_real_clips(DRIVE_DIR, split="validation")})


def test_labels_that_do_not_match_the_video_are_refused_with_the_reason(tmp_path):
    video = write_video(tmp_path / "drive.mp4")  # 30 frames at 10 fps: 3.0 s
    labels = tmp_path / "drive.labels.jsonl"
    labels.write_text(json.dumps(window(0, 9000)) + "\n")
    clip = RealClip(video, labels, "drive")
    with pytest.raises(RealLabelsError, match=r"labels end at 9.00 s but the video lasts 3.00 s"):
        load_clip_labels(clip)
    labels.write_text(json.dumps(window(0, 1000)) + "\n" + json.dumps(window(1500, 3000)) + "\n")
    with pytest.raises(RealLabelsError, match="contiguous"):
        load_clip_labels(clip)
    labels.write_text(json.dumps(window(0, 3000, actions=("fly",))) + "\n")
    with pytest.raises(RealLabelsError, match="label 1"):
        load_clip_labels(clip)
    labels.write_text(json.dumps(window(0, 3000)) + "\n")
    assert len(load_clip_labels(clip)) == 1


def test_a_labels_file_without_its_video_is_named(tmp_path):
    (tmp_path / "lonely.labels.jsonl").write_text(json.dumps(window(0, 1000)) + "\n")
    with pytest.raises(RealLabelsError, match="no video lonely.mp4"):
        find_real_clips(tmp_path)


def test_training_scenes_are_one_scenario_per_clip_and_look(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    write_video(folder / "a.mp4")
    (folder / "a.labels.jsonl").write_text(json.dumps(window(0, 3000)) + "\n")
    (folder / "clips.json").write_text(json.dumps({"clips": {"a": {"condition": "day", "split": "train"}}}))
    clips = find_real_clips(folder, split="train")
    out = training_scenes(clips, tmp_path / "scenes", looks=("as_recorded", "night_emulated"))
    metas = sorted(json.loads(p.read_text())["scenario"] for p in out.rglob("scene.json"))
    assert metas == ["real_a_as_recorded", "real_a_night_emulated"]
    dark = cv2.VideoCapture(str(out / "real_a" / "night_emulated" / "video.mp4"))
    ok, frame = dark.read()
    assert ok and frame.mean() < 0.5 * cv2.VideoCapture(str(folder / "a.mp4")).read()[1].mean()


def test_looks_keep_the_frame_count(tmp_path):
    source = shutil.copy(write_video(tmp_path / "s.mp4", frames=12), tmp_path / "copy.mp4")
    mirrored = write_look(source, tmp_path / "m.mp4", "mirrored")
    assert video_duration_ms(mirrored) == pytest.approx(video_duration_ms(source))


def test_foreign_videos_come_with_labels_that_fit_them(tmp_path):
    from sim.foreign import write_foreign_videos

    written = write_foreign_videos(tmp_path, DRIVE_DIR / "udacity_vehdet_test_video.mp4")
    assert [p.stem for p in written] == ["black", "noise", "test_pattern", "frozen"]
    clips = find_real_clips(tmp_path)
    assert {c.condition for c in clips} == {"black", "noise", "test_pattern", "frozen"}
    for clip in clips:
        assert load_clip_labels(clip)[0].hazards == ()


def test_a_random_view_is_one_camera_per_video_and_another_per_clip(tmp_path):
    """A random view keeps its camera over the frames of a video (only the noise is per frame), is
    the same camera when drawn again, and differs between clips and between views."""
    from sim.real_views import draw_view

    assert len({look_seed("a", RANDOM_VIEWS[0]), look_seed("b", RANDOM_VIEWS[0]), look_seed("b", RANDOM_VIEWS[1])}) == 3
    assert look_seed("a", "mirrored") == 0
    view = draw_view(np.random.default_rng(look_seed("a", RANDOM_VIEWS[0])))
    assert view == draw_view(np.random.default_rng(look_seed("a", RANDOM_VIEWS[0])))
    assert view != draw_view(np.random.default_rng(look_seed("b", RANDOM_VIEWS[0])))
    frame = np.random.default_rng(1).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    quiet = dataclasses.replace(view, noise=0.0)
    rng = np.random.default_rng(0)
    assert np.array_equal(quiet.apply(frame, rng), quiet.apply(frame, rng))
    out = view.apply(frame, rng)
    assert out.shape == frame.shape and out.dtype == np.uint8 and not np.array_equal(out, frame)
    assert not set(RANDOM_VIEWS) & set(TRAINING_LOOKS)  # the shipped recipe's looks stay as they were
    with pytest.raises(RealLabelsError, match="unknown look"):
        training_scenes([], tmp_path / "none", looks=("sepia",))
    with pytest.raises(TypeError, match="per video"):
        LOOKS[RANDOM_VIEWS[0]](frame, rng)
    source = write_video(tmp_path / "s.mp4", frames=12)
    written = write_look(source, tmp_path / "v.mp4", RANDOM_VIEWS[0], seed=3)
    assert video_duration_ms(written) == pytest.approx(video_duration_ms(source))


def test_pale_pavement_repaints_the_asphalt_below_the_horizon_as_concrete():
    """The look lifts grey road pixels to concrete's tone and keeps their texture; the sky, saturated
    verges and bright lane paint are left as they were, and it is one of the training looks."""
    from sim.real_labels import CONCRETE_BGR

    h, w = 180, 320
    frame = np.empty((h, w, 3), np.uint8)
    frame[: h // 2] = (140, 135, 130)  # overcast sky (BGR): as grey as asphalt, kept by being above the horizon
    frame[h // 2:] = (95, 96, 98)  # asphalt
    frame[h // 2:, : w // 8] = (40, 140, 60)  # green verge
    frame[h // 2:, w // 2 - 3: w // 2 + 3] = (245, 245, 245)  # lane paint
    frame[int(0.9 * h):, w // 4: w // 4 + 20] += 12  # a repaired patch: texture to keep
    out = LOOKS["pale_pavement"](frame, np.random.default_rng(0))
    road = out[int(0.8 * h): int(0.88 * h), w // 4 + 30: w // 2 - 10].reshape(-1, 3).mean(axis=0)
    assert np.allclose(road, CONCRETE_BGR, atol=6)
    assert np.array_equal(out[: int(0.5 * h)], frame[: int(0.5 * h)])
    assert np.abs(out[-5, 5].astype(int) - frame[-5, 5]).max() <= 2  # the verge
    assert out[-5, w // 2].min() >= 240  # the paint
    patch, around = out[-5, w // 4 + 10].astype(int), out[-5, w // 4 + 40].astype(int)
    assert (patch - around).min() > 12  # the patch is still brighter than the road around it
    assert {"pale_pavement", "pale_pavement_zoomed", "pale_pavement_dashboard"} <= set(TRAINING_LOOKS)
