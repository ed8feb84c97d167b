"""The replay report from recorded messages: numbers that follow from the input, real pictures,
an annotated video with every source frame."""

from __future__ import annotations

import json
import math

import cv2
import pytest

from edge.messages import (
    ActionAdvice,
    Advice,
    FrameRef,
    MetaAction,
    RuntimeState,
    StageTimings,
    Status,
    Urgency,
    Verdict,
)
from sim.labels import load_labels
from sim.report import write_report
from sim.scene import render_scene

SHA = "ab" * 32
BUDGETS = {"encode_ms": 60.0, "decode": 90.0, "total": 200.0}
FPS = 5
START_NS = 5_000_000_000  # the video's first frame, in the recorder's monotonic clock


def make_advice(cycle: int, newest_frame: int, action: MetaAction | None, total_ms: float, encode_ms: float) -> dict:
    frames = [
        FrameRef(frame_id=i, capture_mono_ns=START_NS + i * 1_000_000_000 // FPS, capture_wall_ns=1)
        for i in range(max(0, newest_frame - 3), newest_frame + 1)
    ]
    newest_ns = frames[-1].capture_mono_ns
    advice = Advice(action=action, urgency=Urgency.MEDIUM, rationale=f"cycle {cycle}") if action else None
    msg = ActionAdvice(
        seq=cycle, mono_ns=newest_ns + int(total_ms * 1e6), wall_ns=1, cycle=cycle,
        verdict=Verdict.OK if action else Verdict.NO_ADVICE, advice=advice, frames=frames,
        valid_until_mono_ns=newest_ns + 10**9, valid_until_wall_ns=1,
        stages=StageTimings(capture_age_ms=1.0, encode_ms=encode_ms, decode_ms=50.0, total_ms=total_ms),
        bundle_sha256=SHA,
    )
    return json.loads(msg.model_dump_json())


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene")
    return render_scene("red_light", seed=2, out_dir=out, width=320, height=180, fps=FPS)


@pytest.fixture(scope="module")
def recorded(scene):
    """One advice every 2 frames: right in every window except the red-light windows, where it
    says keep_speed; and one cycle without advice."""
    windows = load_labels(scene.labels)
    advice, expected_right, expected_judged = [], 0, 0
    for cycle, frame in enumerate(range(3, scene.n_frames, 2)):
        t_ms = frame * 1000 / FPS
        w = next(w for w in windows if w.start_ms <= t_ms < w.end_ms)
        if cycle == 5:
            advice.append(make_advice(cycle, frame, None, 120.0, 40.0))
            continue
        wrong = w.primary == MetaAction.STOP
        action = MetaAction.KEEP_SPEED if wrong else w.primary
        total = 250.0 if cycle % 7 == 0 else 150.0
        advice.append(make_advice(cycle, frame, action, total, 70.0 if cycle % 3 == 0 else 40.0))
        expected_judged += 1
        expected_right += 0 if wrong else 1
    status = [json.loads(Status(seq=i, state=RuntimeState.RUNNING, heartbeat_interval_ms=1000, uptime_ms=i * 1000,
                                frame_drop_ratio=0.1 * i).model_dump_json()) for i in range(3)]
    return advice, status, expected_right, expected_judged


def test_report_numbers_follow_from_the_messages(scene, recorded, tmp_path):
    advice, status, right, judged = recorded
    files = write_report(tmp_path, advice=advice, status=status, labels=scene.labels, budgets_ms=BUDGETS,
                         video=scene.video, video_start_mono_ns=START_NS, extra={"mode": "lockstep"})
    report = json.loads(files.report_json.read_text())
    assert report["bench"] == "sim" and report["mode"] == "lockstep"
    assert report["advice_count"] == len(advice)
    assert report["advice_with_action"] == len(advice) - 1
    assert report["verdicts"]["no_advice"] == 1 and report["verdicts"]["ok"] == len(advice) - 1
    assert report["frame_drop_ratio"] == pytest.approx(0.2)
    totals = [a["stages"]["total_ms"] for a in advice]
    st = report["stages"]["total"]
    assert st["n"] == len(advice) and st["max_ms"] == max(totals)
    assert set(st) >= {"n", "p50_ms", "p90_ms", "p99_ms", "max_ms"}
    assert report["over_budget"]["total"] == sum(1 for t in totals if t > 200.0)
    assert report["over_budget"]["encode"] == sum(1 for a in advice if a["stages"]["encode_ms"] > 60.0)
    assert report["judged"] == judged
    assert report["accuracy"] == pytest.approx(right / judged)
    assert 0 < report["accuracy"] < 1
    confusion = report["confusion"]
    assert confusion["stop"].get("keep_speed", 0) > 0 and "stop" not in confusion["stop"]
    assert sum(sum(row.values()) for row in confusion.values()) == len(advice)
    for w in report["windows"]:
        if w["expected"] == "stop" and w["n"] > w["no_advice"]:
            assert w["agreement"] == 0.0
        if w["expected"] == "keep_speed" and w["n"] > w["no_advice"]:
            assert w["agreement"] == 1.0
    md = files.report_md.read_text()
    assert "Stage latency" in md and "Confusion" in md and "annotated.mp4" in md


def test_pictures_are_real_images(scene, recorded, tmp_path):
    advice, status, _, _ = recorded
    files = write_report(tmp_path, advice=advice, status=status, labels=scene.labels, budgets_ms=BUDGETS,
                         video=scene.video, video_start_mono_ns=START_NS)
    for png in (files.stages_png, files.timeline_png):
        img = cv2.imread(str(png))
        assert img is not None, png
        assert img.shape[0] >= 200 and img.shape[1] >= 400
        assert img.std() > 10  # not a blank canvas


def test_annotated_video_has_every_frame_and_shows_the_advice(scene, recorded, tmp_path):
    advice = recorded[0]
    files = write_report(tmp_path, advice=advice, labels=scene.labels, video=scene.video,
                         video_start_mono_ns=START_NS)
    assert files.report["annotated_frames"] == scene.n_frames
    src = cv2.VideoCapture(str(scene.video))
    out = cv2.VideoCapture(str(files.annotated_mp4))
    count, changed_top = 0, 0
    while True:
        ok_a, a = src.read()
        ok_b, b = out.read()
        if not ok_b:
            assert not ok_a
            break
        assert ok_a and a.shape == b.shape
        if cv2.absdiff(a[:30], b[:30]).mean() > 5:
            changed_top += 1
        count += 1
    assert count == scene.n_frames
    assert changed_top == count  # the overlay is on every frame


def test_annotated_video_places_lockstep_advice_by_its_stage_timings(scene, recorded, tmp_path):
    """Lock-step frames are stamped on a simulated clock from 0, the publisher's mono_ns on the real
    one: the advice is in force from its newest frame plus capture age and cycle time."""
    advice = []
    for row in recorded[0]:
        row = json.loads(json.dumps(row))
        for frame in row["frames"]:
            frame["capture_mono_ns"] -= START_NS
        row["mono_ns"] += 10**15  # a real monotonic clock, days after boot
        advice.append(row)
    files = write_report(tmp_path, advice=advice, video=scene.video, video_start_mono_ns=0)
    runs = files.report["annotated_cycles"]
    first = advice[0]
    newest_ms = first["frames"][-1]["capture_mono_ns"] / 1e6
    in_force_ms = newest_ms + first["stages"]["capture_age_ms"] + first["stages"]["total_ms"]
    assert runs[0] == {"first_frame": 0, "last_frame": runs[0]["last_frame"], "cycle": None}
    assert runs[1]["cycle"] == 0 and runs[1]["first_frame"] == math.ceil(in_force_ms * FPS / 1000)
    # The last advice is made from the last frame: it arrives after the video has ended.
    assert runs[-1]["last_frame"] == scene.n_frames - 1 and runs[-1]["cycle"] == advice[-2]["cycle"]
    assert all(run["cycle"] is not None for run in runs[1:])


def test_explicit_video_times_override_capture_times(scene, recorded, tmp_path):
    advice = recorded[0]
    windows = load_labels(scene.labels)
    first_window_end = windows[0].end_ms
    # Claim every advice was made in the first window (cruise): only keep_speed-like actions agree.
    times = [first_window_end / 2] * len(advice)
    files = write_report(tmp_path, advice=advice, labels=scene.labels, video_times_ms=times)
    report = files.report
    assert sum(w["n"] for w in report["windows"]) == len(advice)
    assert report["windows"][0]["n"] == len(advice)
    with pytest.raises(ValueError, match="video_times_ms has 1 entries"):
        write_report(tmp_path, advice=advice, video_times_ms=[0.0])


def test_reads_jsonl_files_and_recorder_keys(scene, recorded, tmp_path):
    advice, status, _, judged = recorded
    path = tmp_path / "advice.jsonl"
    with path.open("w") as f:
        for i, a in enumerate(advice):
            f.write(json.dumps({**a, "recv_mono_ns": 1, "video_time_ms": (3 + 2 * i) * 1000 / FPS}) + "\n")
    spath = tmp_path / "status.jsonl"
    spath.write_text("".join(json.dumps(s) + "\n" for s in status))
    files = write_report(tmp_path / "out", advice=path, status=spath, labels=scene.labels)
    assert files.report["judged"] == judged
    assert files.annotated_mp4 is None


def test_bad_messages_are_refused(tmp_path):
    with pytest.raises(ValueError, match="advice record 0: not an ActionAdvice"):
        write_report(tmp_path, advice=[{"cycle": 1}])
    good = make_advice(0, 3, MetaAction.STOP, 100.0, 30.0)
    with pytest.raises(ValueError, match="not an ActionAdvice"):
        write_report(tmp_path, advice=[{**good, "smuggled": 1}])


def test_report_without_labels_or_advice_still_writes(tmp_path):
    files = write_report(tmp_path, advice=[])
    report = json.loads(files.report_json.read_text())
    assert report["advice_count"] == 0 and report["stages"] == {}
    assert "accuracy" not in report
    assert cv2.imread(str(files.stages_png)) is not None
