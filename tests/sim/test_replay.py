"""Replay through the real runtime loop: lock-step determinism, real-time pacing, real drive
videos (one of them lies about its length), and the report files."""

from __future__ import annotations

import json

import cv2
import pytest

from edge.runtime import load_model_parts
from sim.replay import ReplayOptions, replay_config, replay_scene
from sim.scene import render_scene

pytestmark = pytest.mark.slow

FAST = ["decoder.max_tokens=40", "decoder.threads=1"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene") / "red_light"
    return render_scene("red_light", seed=3, out_dir=out, duration_s=4.0)


@pytest.fixture(scope="module")
def models(tiny_bundle):
    parts = load_model_parts(replay_config(tiny_bundle, overrides=FAST))
    yield parts
    parts.close()


def timing_free(advice):
    """An advice sequence without the fields that depend on the machine's speed."""
    out = []
    for a in advice:
        row = a.model_dump(mode="json")
        for key in ("mono_ns", "wall_ns", "stages", "valid_until_wall_ns"):
            row.pop(key)
        for frame in row["frames"]:
            frame.pop("capture_wall_ns")  # the simulated wall clock follows the real one
        out.append(row)
    return out


def test_lockstep_replay_is_deterministic(tiny_bundle, models, scene, tmp_path):
    config = replay_config(tiny_bundle, overrides=FAST)
    runs = [
        replay_scene(tiny_bundle, scene.video, scene.nav, scene.labels, ReplayOptions(mode="lockstep"),
                     config=config, models=models)
        for _ in range(2)
    ]
    first, second = (timing_free(r.advice) for r in runs)
    # 4 s at 10 fps (last frame at 3.9 s), 500 ms sampling, 4-frame clips: clips end at 1.5 .. 3.5 s.
    assert runs[0].video_times_ms == [1500.0, 2000.0, 2500.0, 3000.0, 3500.0]
    assert first == second
    # Every cycle the loop ran is matched with the message the planner received for it.
    cycles = runs[0].cycles()
    assert [c.video_time_ms for c in cycles] == runs[0].video_times_ms and runs[0].lost_cycles == []
    assert [c.received.cycle for c in cycles] == [o.advice.cycle for o in runs[0].outcomes]  # type: ignore[union-attr]
    # The navigation timeline reached the prompt: advice names the instruction it used.
    nav_ids = {line["nav_id"] for line in map(json.loads, scene.nav.read_text().splitlines())}
    if nav_ids:
        assert any(a["nav_id"] in nav_ids for a in first)


def test_lockstep_replay_does_not_depend_on_how_busy_the_machine_is(tiny_bundle, models, scene):
    """Budgets no machine meets (a busy one, scaled up): every cycle is over budget, yet lock-step
    skips no clip and shortens no answer, so the advice is the one a quiet machine gives."""
    hopeless = [f"budgets.{stage}_ms=0.001" for stage in ("preprocess", "encode", "prefill", "decode", "total")]
    quiet, busy = (
        replay_scene(tiny_bundle, scene.video, scene.nav, None, ReplayOptions(mode="lockstep"),
                     models=models, config=replay_config(tiny_bundle, overrides=[*FAST, *extra]))
        for extra in ([], hopeless)
    )
    assert busy.video_times_ms == quiet.video_times_ms == [1500.0, 2000.0, 2500.0, 3000.0, 3500.0]
    assert all(a.verdict.value == "degraded" and a.degrade_level == 0 for a in busy.advice)
    assert [a.advice for a in busy.advice] == [a.advice for a in quiet.advice]
    assert [a.generated_tokens for a in busy.advice] == [a.generated_tokens for a in quiet.advice]


def test_realtime_replay_keeps_pace_with_the_video(tiny_bundle, models, scene):
    config = replay_config(tiny_bundle, overrides=FAST)
    result = replay_scene(tiny_bundle, scene.video, options=ReplayOptions(mode="realtime", speed=1.0),
                          config=config, models=models)
    assert len(result.advice) >= 2
    first, last = result.advice[0], result.advice[-1]
    video_span_ms = result.video_times_ms[-1] - result.video_times_ms[0]
    capture_span_ms = (last.frames[-1].capture_mono_ns - first.frames[-1].capture_mono_ns) / 1e6
    assert video_span_ms > 0
    assert abs(capture_span_ms - video_span_ms) <= 0.05 * video_span_ms


def test_every_real_drive_video_replays_to_a_clean_end(tiny_bundle, models, drive_videos, tmp_path):
    config = replay_config(tiny_bundle, overrides=[*FAST, "decoder.max_tokens=16"], interval_ms=1000)
    for video in drive_videos:
        capture = cv2.VideoCapture(str(video))
        claimed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        result = replay_scene(tiny_bundle, video, options=ReplayOptions(mode="lockstep"), config=config,
                              models=models)
        # One clip per second once four samples exist; the end is where decoding stops, not the header.
        assert result.video_duration_ms is not None
        assert result.video_duration_ms <= claimed * 1000 / fps
        expected = max(0, int((result.video_duration_ms - 1) // 1000) - 2)
        assert len(result.advice) >= expected, video.name
        ids = [a.frames[-1].frame_id for a in result.advice]
        assert ids == sorted(ids)


def coloured_text_pixels(band) -> int:
    """Pixels of the overlay band in a saturated colour: the advice and verdict lines are drawn in
    colour, "waiting for advice" in grey over the darkened picture."""
    spread = band.max(axis=2).astype(int) - band.min(axis=2).astype(int)
    return int((spread > 120).sum())


def assert_video_shows_the_advice(path, report, result):
    """From the first advice's publication on, every frame shows an advice (report and pixels)."""
    per_frame = [run["cycle"] for run in report["annotated_cycles"]
                 for _ in range(run["first_frame"], run["last_frame"] + 1)]
    assert len(per_frame) == report["annotated_frames"]
    first = next(i for i, c in enumerate(per_frame) if c is not None)
    fps = result.fps
    # The first advice is in force from its newest frame's time plus its capture-to-publish time.
    assert first * 1000 / fps >= result.video_times_ms[0]
    assert first * 1000 / fps <= result.video_times_ms[0] + result.advice[0].stages.total_ms + 2000 / fps
    assert all(c is not None for c in per_frame[first:])
    assert [c for c in dict.fromkeys(per_frame[first:])] == sorted(set(per_frame[first:]))
    video = cv2.VideoCapture(str(path))
    bands = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        bands.append(frame[: int(70 * frame.shape[1] / 640)])
    video.release()
    assert coloured_text_pixels(bands[first - 1]) < 20 if first > 0 else True
    assert all(coloured_text_pixels(band) >= 20 for band in bands[first:])


def test_report_files_are_written_and_images_are_real(tiny_bundle, models, scene, tmp_path):
    out = tmp_path / "report"
    config = replay_config(tiny_bundle, overrides=FAST, audit_path=out / "audit.jsonl")
    result = replay_scene(tiny_bundle, scene.video, scene.nav, scene.labels, ReplayOptions(mode="lockstep"),
                          config=config, models=models, out_dir=out)
    report = json.loads((out / "report.json").read_text())
    assert report["advice_count"] == len(result.advice)
    assert report["lost_cycles"] == []  # every published advice reached the recording planner
    assert set(report["stages"]) >= {"encode", "prefill", "decode", "total"}
    assert 0.0 <= report["accuracy"] <= 1.0 and "confusion" in report
    for png in ("stages.png", "timeline.png"):
        image = cv2.imread(str(out / png))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    annotated = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == scene.n_frames
    annotated.release()
    assert_video_shows_the_advice(out / "annotated.mp4", report, result)
    audit_lines = (out / "audit.jsonl").read_text().splitlines()
    assert len(audit_lines) == len(result.advice)
    assert (out / "report.md").read_text().strip()
