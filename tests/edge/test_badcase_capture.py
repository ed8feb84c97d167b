"""Bad-case capture: each trigger keeps its window as an MCAP segment with an index line; the
segments replay; feedback arrives over the real nav socket (malformed ones counted and dropped);
`edge capture now` reaches a running `edge run`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.bus import Publisher
from edge.capture import VideoFileStepper
from edge.commands.replay import replay_config_for
from edge.drivelog.reader import read_drive_log
from edge.drivelog.replay import replay_log
from edge.feeds import SimClock, SteppedFeed
from edge.messages import Feedback, MetaAction
from edge.runtime import running_loop
from sim.replay import ReplayOptions, replay_config, replay_scene
from sim.scene import render_scene

pytestmark = pytest.mark.slow

FAST = ["decoder.max_tokens=40", "decoder.threads=1", "record.image_format='png'"]
EDGE = [sys.executable, "-m", "edge_cli"]


@pytest.fixture(scope="module")
def turn_scene(tmp_path_factory):
    return render_scene("turn_right", seed=1001, out_dir=tmp_path_factory.mktemp("scene") / "turn", duration_s=8.0)


def capture_scene(bundle, scene, folder: Path, *sets: str):
    config = replay_config(bundle, overrides=[*FAST, f"capture.dir={str(folder)!r}", "capture.before_s=1",
                                              "capture.after_s=1", *sets])
    return replay_scene(bundle, scene.video, scene.nav, None,
                        ReplayOptions(mode="lockstep", annotate=False), config=config)


def index(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "captures.jsonl").read_text().splitlines()]


def test_no_advice_cycles_are_captured_with_their_window(tiny_bundle, turn_scene, tmp_path):
    # Eight tokens cannot hold an advice object: every cycle ends in no_advice.
    result = capture_scene(tiny_bundle, turn_scene, tmp_path, "decoder.max_tokens=8")
    assert {a.verdict.value for a in result.advice} == {"no_advice"}
    rows = index(tmp_path)
    assert rows and all(r["trigger"] == "verdict" and r["reason"].startswith("no_advice") for r in rows)
    seqs = {s for r in rows for s in r["advice_seqs"]}
    assert seqs == {a.seq for a in result.advice}, "every advice lies in some capture"
    first = rows[0]
    assert (tmp_path / first["file"]).stat().st_size == first["bytes"]
    # Triggers inside an open window extend it (one segment) rather than open one each.
    assert len(first["triggers"]) > 1 and first["time"].endswith("Z")


def test_a_flip_between_conflicting_actions_is_captured_and_the_segment_replays(tiny_bundle, turn_scene, tmp_path):
    # Capture sees the advice as published; alarm confirmation (edge.confirm) would turn the tiny
    # model's one-cycle turns into decelerate, so this test publishes every decision as made.
    result = capture_scene(tiny_bundle, turn_scene, tmp_path, "capture.verdicts=[]", "advice.confirm_cycles=1")
    actions = [a.advice.action for a in result.advice]
    assert MetaAction.TURN_RIGHT in actions and MetaAction.CHANGE_LANE_LEFT in actions  # the tiny model flips
    rows = index(tmp_path)
    assert [r["trigger"] for r in rows] == ["flip"]
    assert rows[0]["reason"] == "change_lane_left -> turn_right"
    log = read_drive_log([tmp_path / rows[0]["file"]])
    assert [a.seq for a in log.advice] == rows[0]["advice_seqs"]
    replayed = replay_log(log, replay_config_for(log.metadata, tiny_bundle, FAST, None))
    assert replayed.skipped == [] and replayed.agreement == 1.0


def test_an_alarm_held_back_by_confirmation_is_captured(tiny_bundle, turn_scene, tmp_path):
    # The tiny model's one-cycle turns (the flip test above) go out as decelerate and are captured.
    result = capture_scene(tiny_bundle, turn_scene, tmp_path, "capture.verdicts=[]", "capture.flip_cycles=0")
    held = [a for a in result.advice if "unconfirmed: turn_right" in a.verdict_reason]
    assert held and all(a.advice.action == MetaAction.DECELERATE for a in held)
    rows = index(tmp_path)
    assert rows and {r["trigger"] for r in rows} == {"unconfirmed"}
    captured = {s for r in rows for s in r["advice_seqs"]}
    assert {a.seq for a in held} <= captured
    assert rows[0]["reason"] == "turn_right"


def test_feedback_over_the_socket_triggers_a_capture_and_bad_feedback_is_counted(tiny_bundle, drive_videos, tmp_path):
    config = replay_config(tiny_bundle, overrides=[*FAST, f"capture.dir={str(tmp_path)!r}", "capture.verdicts=[]",
                                                   "capture.flip_cycles=0", "capture.before_s=1", "capture.after_s=0.5"])
    clock = SimClock()
    feed = SteppedFeed(VideoFileStepper(drive_videos[0], loop=True), clock, 500, 4)
    with running_loop(config, feed=feed, clock=clock, enforce_deadlines=False) as loop:
        planner = Publisher(loop.parts.nav_in.endpoint, bind=False)
        try:
            advice = [loop.run_cycle(loop.next_clip()).advice for _ in range(3)]
            good = Feedback(advice_seq=advice[1].seq, reason="no lane change there", expected_action="keep_lane")
            deadline = time.monotonic() + 5
            while not loop.parts.nav_in.received.get("feedback") and time.monotonic() < deadline:
                planner.publish(good)
                planner.send_raw([b"feedback", b'{"schema_version": 1, "advice_seq": -4, "reason": ""}'])
                time.sleep(0.05)
                loop.poll_nav()
            for _ in range(3):
                loop.run_cycle(loop.next_clip())
            status = loop.status_message()
        finally:
            planner.close()
    assert status.inbound_rejected.get("feedback_invalid", 0) >= 1
    assert any(e.kind == "feedback" for e in status.events)
    rows = index(tmp_path)
    assert rows[0]["trigger"] == "feedback"
    assert rows[0]["reason"] == "no lane change there (expected keep_lane)"
    assert rows[0]["triggers"][0]["advice_seqs"] == [advice[1].seq]
    log = read_drive_log([tmp_path / rows[0]["file"]])
    assert next(f.advice_seq for _, f in log.feedback) == advice[1].seq


def test_edge_capture_now_reaches_a_running_runtime(tiny_bundle, drive_videos, tmp_path):
    folder = tmp_path / "captures"
    runtime = subprocess.Popen(
        [*EDGE, "run", "--bundle", str(tiny_bundle), "--camera", str(drive_videos[0]), "--max-cycles", "20",
         "--capture", str(folder), "--audit", str(tmp_path / "audit.jsonl"), "--publish", "tcp://127.0.0.1:*", "--nav", "tcp://127.0.0.1:*",
         "--set", "decoder.max_tokens=16", "--set", "camera.interval_ms=200", "--set", "camera.loop_video=true",
         "--set", "capture.before_s=120", "--set", "capture.after_s=0.5", "--set", "capture.verdicts=[]",
         "--set", "capture.flip_cycles=0", "--set", "budgets.total_ms=60000", "--set", "budgets.max_frame_age_ms=60000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        audit, deadline = tmp_path / "audit.jsonl", time.monotonic() + 600
        while time.monotonic() < deadline and not (audit.is_file() and len(audit.read_text().splitlines()) >= 3):
            time.sleep(0.1)  # a few cycles into the drive
        now = subprocess.run([*EDGE, "capture", "now", "--dir", str(folder)], capture_output=True, text=True)
        assert now.returncode == 0, now.stderr
        _, stderr = runtime.communicate(timeout=900)  # minutes on a loaded 2-core host
    finally:
        runtime.kill()
    assert runtime.returncode == 0, stderr
    rows = index(folder)
    assert [r["trigger"] for r in rows] == ["manual"] and "SIGUSR1" in rows[0]["reason"]
    assert rows[0]["advice_seqs"], "the window holds advice"
    assert not (folder / "runtime.pid").exists()
    listing = subprocess.run([*EDGE, "capture", "list", str(folder)], capture_output=True, text=True)
    assert rows[0]["file"] in listing.stdout


def test_a_quota_keeps_the_newest_captures_and_their_index_lines(tiny_bundle, turn_scene, tmp_path):
    result = capture_scene(tiny_bundle, turn_scene, tmp_path, "decoder.max_tokens=8", "capture.after_s=0",
                           "capture.before_s=0.5", "capture.quota_bytes=600000", "record.image_format='jpeg'")
    rows = index(tmp_path)
    files = sorted(p.name for p in tmp_path.glob("capture-*.mcap"))
    assert [r["file"] for r in rows] == files
    assert sum((tmp_path / f).stat().st_size for f in files) <= 600_000
    assert rows[0]["advice_seqs"][0] > result.advice[0].seq, "the oldest captures went first"
    assert rows[-1]["advice_seqs"][-1] == result.advice[-1].seq, "the newest capture is kept"


def test_a_labelled_capture_is_a_scene_edge_eval_takes(turn_scene, tmp_path):
    """Capture -> `edge capture scene` -> labels.jsonl (here: the template, i.e. what the runtime said)
    -> `edge eval`: the replay of the scene at the recording's interval gives the same actions."""
    from edge.manifest import load_bundle
    from train.default import ensure_default_bundle
    from train.eval import bundle_combos, evaluate

    bundle = ensure_default_bundle(progress=False)
    folder = tmp_path / "captures"
    config = replay_config(bundle, overrides=["decoder.threads=1", f"capture.dir={str(folder)!r}",
                                              "capture.verdicts=['ok', 'degraded']", "capture.after_s=3"])
    result = replay_scene(bundle, turn_scene.video, turn_scene.nav, None,
                          ReplayOptions(mode="lockstep", annotate=False), config=config)
    segment = folder / index(folder)[0]["file"]
    scene = tmp_path / "scenes" / "capture1"
    run = subprocess.run([*EDGE, "capture", "scene", str(segment), "--out", str(scene)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert not (scene / "labels.jsonl").exists(), "labels are a person's job"
    template = [json.loads(line) for line in (scene / "labels.template.jsonl").read_text().splitlines()]
    assert [row["actions"][0] for row in template] == [a.advice.action.value for a in result.advice]
    assert (scene / "nav.jsonl").read_text().count("turn_right") >= 1
    (scene / "labels.jsonl").write_text((scene / "labels.template.jsonl").read_text())
    manifest, _ = load_bundle(bundle, verify_hashes=False)
    reference = bundle_combos(manifest)[0].name
    report = evaluate(bundle, tmp_path / "scenes", tmp_path / "eval.json", combos=[reference], progress=None)
    figures = report["precisions"][reference]
    assert report["scenes"] == ["capture1"] and figures["cycles"] >= 8
    assert figures["accuracy"] >= 0.9 and "turn_right" in figures["confusion"]
