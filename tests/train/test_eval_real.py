"""`edge eval --real`: recorded drives with labels through the runtime loop; confidence, out-of-domain
warnings on a black video, false alarms, and labels that do not fit their video refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge.llm.confidence import CALIBRATION_KEY
from edge.manifest import load_bundle
from sim.labels import LabelWindow
from tests.conftest import DRIVE_DIR
from train.advice_stats import apply_to_bundle, clip_embeddings
from train.eval_real import aggregate, clip_figures, evaluate_real, false_alarm

pytestmark = pytest.mark.slow

DRIVE = DRIVE_DIR / "udacity_vehdet_pr2_test_small1.mp4"  # 88 frames at 25 fps: 3.52 s


def labels_row(end_ms, hazards=("vehicle",)):
    return json.dumps({"start_ms": 0, "end_ms": end_ms, "actions": ["keep_speed", "keep_lane", "decelerate"],
                       "lateral": None, "hazards": list(hazards), "urgency": "low", "rationale": "highway",
                       "source": "drive"}) + "\n"


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle with out-of-domain statistics of one real drive and a fitted-looking calibration."""
    from edge.ood import OodStats

    out = tmp_path_factory.mktemp("real_bundle") / "bundle"
    shutil.copytree(tiny_bundle, out)
    stats = OodStats.fit(clip_embeddings(out, [DRIVE, DRIVE_DIR / "udacity_solidWhiteRight.mp4"], every_ms=250))
    apply_to_bundle(out, {"ood": stats.to_json(), "confidence": {"method": "platt", "a": 0.8, "b": 0.1,
                                                                 "ood_cap": 0.3}})
    return out


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recordings")
    shutil.copy(DRIVE, folder / "drive.mp4")
    (folder / "drive.labels.jsonl").write_text(labels_row(3520))
    writer = cv2.VideoWriter(str(folder / "black.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 360))
    for _ in range(75):
        writer.write(np.zeros((360, 640, 3), np.uint8))
    writer.release()
    (folder / "black.labels.jsonl").write_text(labels_row(3000, hazards=()))
    (folder / "clips.json").write_text(json.dumps({"clips": {"drive": {"condition": "day"},
                                                              "black": {"condition": "black"}}}))
    return folder


def test_false_alarm_is_an_alarming_action_or_a_hazard_not_there():
    window = LabelWindow.from_json(json.loads(labels_row(1000)))
    assert false_alarm("stop", (), window)
    assert false_alarm("pull_over", (), window)
    assert not false_alarm("keep_speed", ("vehicle",), window)
    assert false_alarm("keep_speed", ("pedestrian",), window)
    assert not false_alarm("nudge_left", (), window)  # wrong, but not an alarm


def test_clip_figures_count_alarms_and_unwarranted_manoeuvres_apart():
    from train.dataset import Scene
    from train.eval import CycleSignals, SceneRun

    window = LabelWindow.from_json(json.loads(labels_row(4000)))
    actions = ["keep_speed", "nudge_right", "stop", "change_lane_left", "decelerate"]
    hazards = [(), ("vehicle",), ("vehicle",), (), ("cyclist",)]
    run = SceneRun(Scene(DRIVE_DIR, "x", "x", 0, "day", 0.0), actions, [500.0 * (i + 1) for i in range(5)],
                   [None] * 5, 0.0, signals=[CycleSignals(0.9, 0.9, False, h) for h in hazards])
    figures = clip_figures(run, [window], "day")
    assert figures["cycles"] == 5 and figures["accuracy"] == 2 / 5
    assert figures["false_alarms"] == 2  # the stop, and the cyclist that is not there
    assert figures["unwarranted_manoeuvres"] == 2  # the nudge and the lane change
    total = aggregate({"a": figures, "b": figures})
    assert total["unwarranted_manoeuvres"] == 4 and total["accuracy"] == 2 / 5


def test_real_recordings_are_scored_with_confidence_and_black_video_is_out_of_domain(bundle, recordings, tmp_path):
    manifest, _ = load_bundle(bundle)
    assert manifest.reports["ood_stats"] == "ood_stats.json" and manifest.quality[CALIBRATION_KEY]["a"] == 0.8
    out = tmp_path / "real.json"
    report = evaluate_real(bundle, recordings, out, combos=["fp32+q4_k_m"], split=None, progress=None)
    assert report["confirm_cycles"] == 2  # scored as the runtime publishes (edge.confirm)
    figures = report["precisions"]["fp32+q4_k_m"]
    assert set(figures["per_clip"]) == {"drive", "black"}
    assert set(figures["per_condition"]) == {"day", "black"}
    black = figures["per_clip"]["black"]
    assert black["cycles"] >= 3 and black["out_of_domain_rate"] == 1.0
    # Out-of-domain advice is never confident, whatever it says.
    assert all(c[2] is None or c[2] <= 0.3 for c in black["cycles_detail"])
    drive = figures["per_clip"]["drive"]
    assert drive["cycles"] >= 4 and 0 <= drive["false_alarm_rate"] <= 1
    confidences = [c[2] for c in drive["cycles_detail"] if c[2] is not None]
    assert confidences and all(0 <= c <= 1 for c in confidences)
    assert figures["calibration"]["n"] == sum(1 for clip in figures["per_clip"].values()
                                              for c in clip["cycles_detail"] if c[2] is not None)
    assert (tmp_path / "real.fp32+q4_k_m.reliability.png").is_file()


def test_status_heartbeat_and_verdict_reason_name_out_of_domain_input(bundle, recordings):
    from sim.replay import ReplayOptions, replay_config, replay_scene

    config = replay_config(bundle, overrides=["decoder.max_tokens=40"])
    result = replay_scene(bundle, recordings / "black.mp4", options=ReplayOptions(annotate=False), config=config)
    assert result.advice and all("out_of_domain: " in a.verdict_reason for a in result.advice)
    kinds = {e.kind for s in result.status for e in s.events}
    assert "out_of_domain" in kinds


def test_frozen_recording_is_flagged_after_three_seconds_a_rendered_wait_is_not(bundle, tmp_path):
    """One real frame held for 6 s: as a recording (a stuck camera) it is frozen input from
    advice.frozen_after_s (3 s) on; as a rendered scene's video (the renderer repeats frames while the
    car waits at a light) it is not, within sim.replay's 10 s."""
    from sim.replay import ReplayOptions, replay_config, replay_scene

    cap = cv2.VideoCapture(str(DRIVE))
    ok, frame = cap.read()
    cap.release()
    assert ok
    recording = tmp_path / "still.mp4"
    writer = cv2.VideoWriter(str(recording), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, frame.shape[1::-1])
    for _ in range(150):
        writer.write(frame)
    writer.release()
    scene = tmp_path / "scene"
    scene.mkdir()
    shutil.copy(recording, scene / "video.mp4")
    (scene / "scene.json").write_text(json.dumps({"scenario": "still", "files": {"video": "video.mp4"}}))

    config = replay_config(bundle, overrides=["decoder.max_tokens=40"])
    reasons = {}
    for name, video in (("recording", recording), ("rendered", scene / "video.mp4")):
        result = replay_scene(bundle, video, options=ReplayOptions(annotate=False), config=config)
        reasons[name] = [a.verdict_reason for a in result.advice]
    assert len(reasons["recording"]) >= 8
    frozen = ["frozen input (identical frames for 3 s)" in r for r in reasons["recording"]]
    assert not frozen[0] and frozen[-3:] == [True, True, True]
    assert not any("frozen input" in r for r in reasons["rendered"])
    assert config.advice.frozen_after_s == 3.0  # the caller's configuration is left as it was


def test_labels_that_do_not_fit_the_video_are_refused_before_any_replay(bundle, recordings, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(recordings, folder)
    (folder / "drive.labels.jsonl").write_text(labels_row(12000))
    run = subprocess.run([sys.executable, "-m", "edge_cli", "eval", "--bundle", str(bundle), "--real", str(folder),
                          "--split", "all"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "labels end at 12.00 s but the video lasts 3.52 s" in run.stderr
