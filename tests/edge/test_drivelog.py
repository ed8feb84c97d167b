"""Drive logs in MCAP: what a recording holds (read back with the mcap library's own reader),
process replay through the recording bundle and another one, roll-over and quota, damaged files."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap.writer import Writer

from edge.bus import Subscriber
from edge.commands.replay import replay_config_for
from edge.drivelog.reader import DriveLogError, read_drive_log
from edge.drivelog.replay import replay_log
from edge.messages import TOPIC_STATUS
from sim.replay import ReplayOptions, replay_config, replay_scene
from sim.scene import render_scene

pytestmark = pytest.mark.slow

FAST = ["decoder.max_tokens=40", "decoder.threads=1"]
EDGE = [sys.executable, "-m", "edge_cli"]


@pytest.fixture(scope="module")
def default_bundle() -> Path:
    from train.default import ensure_default_bundle

    return ensure_default_bundle(progress=False)


@pytest.fixture(scope="module")
def turn_scene(tmp_path_factory):
    """A drive whose advice changes with the navigation (keep_speed, then turn_right)."""
    return render_scene("turn_right", seed=1001, out_dir=tmp_path_factory.mktemp("scene") / "turn", duration_s=8.0)


def record_scene(bundle: Path, scene, folder: Path, *sets: str, max_cycles: int | None = None):
    config = replay_config(bundle, overrides=[*FAST, f"record.dir={str(folder)!r}", *sets])
    return replay_scene(bundle, scene.video, scene.nav, None,
                        ReplayOptions(mode="lockstep", max_cycles=max_cycles, annotate=False), config=config)


@pytest.fixture(scope="module")
def png_log(default_bundle, turn_scene, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rec-png")
    result = record_scene(default_bundle, turn_scene, folder, "record.image_format='png'")
    return folder, result


def test_a_recording_holds_frames_nav_advice_status_schemas_and_metadata(tiny_bundle, turn_scene, tmp_path):
    result = record_scene(tiny_bundle, turn_scene, tmp_path / "rec", max_cycles=6)
    files = sorted((tmp_path / "rec").glob("*.mcap"))
    assert len(files) == 1
    with files[0].open("rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        topics = {c.topic: summary.schemas[c.schema_id] for c in summary.channels.values()}
        assert {t: (s.name, s.encoding) for t, s in topics.items()} == {
            "/camera": ("foxglove.CompressedImage", "protobuf"),
            "/advice": ("edge.ActionAdvice", "jsonschema"),
            "/status": ("edge.Status", "jsonschema"),
            "/nav": ("edge.NavInstruction", "jsonschema"),
            "/feedback": ("edge.Feedback", "jsonschema"),
        }
        shipped = json.loads((Path("edge/schemas/advice.schema.json")).read_text())
        assert json.loads(topics["/advice"].data) == shipped
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}["edge.runtime"]
        by_topic: dict[str, list] = {}
        for _schema, channel, message in reader.iter_messages():
            by_topic.setdefault(channel.topic, []).append(message)
    assert metadata["bundle_sha256"] == result.advice[0].bundle_sha256
    assert json.loads(metadata["config"])["record"]["image_format"] == "jpeg"
    advice = [json.loads(m.data) for m in by_topic["/advice"]]
    assert [a["seq"] for a in advice] == [a.seq for a in result.advice]
    # Each sampled frame once (clips overlap), not every camera frame: 6 clips of 4 -> 9 frames.
    frame_ids = [m.sequence for m in by_topic["/camera"]]
    assert frame_ids == sorted(set(frame_ids)) and len(frame_ids) == 4 + 6 - 1
    assert set(frame_ids) == {f["frame_id"] for a in advice for f in a["frames"]}
    assert by_topic["/nav"] and by_topic["/status"]
    log = read_drive_log([files[0]])
    assert log.frame_format[frame_ids[0]] == "jpeg" and log.image(frame_ids[0]).shape[2] == 3


def test_replay_through_the_recording_bundle_gives_identical_advice(default_bundle, png_log, tmp_path):
    folder, recorded = png_log
    log = read_drive_log([folder])
    assert [a.seq for a in log.advice] == [a.seq for a in recorded.advice]
    config = replay_config_for(log.metadata, default_bundle, [], None)
    result = replay_log(log, config)
    assert len(result.replayed) == len(recorded.advice) >= 10
    assert result.agreement == 1.0 and result.changed == []
    assert result.agreement_in_time == 1.0 and result.action_agreement == 1.0
    for compared in result.cycles:
        assert compared.replayed.advice == compared.recorded.advice
        assert compared.replayed.nav_id == compared.recorded.nav_id
    # The drive needs its navigation: the advice turns once the instruction says so.
    actions = [c.recorded.advice.action.value for c in result.cycles if c.recorded.advice]
    assert "turn_right" in actions and "keep_speed" in actions


def test_replay_with_another_bundle_reports_the_changed_cycles(tiny_bundle, png_log, tmp_path):
    folder, _ = png_log
    out = tmp_path / "report"
    run = subprocess.run([*EDGE, "replay", str(folder), "--bundle", str(tiny_bundle), "--out", str(out),
                          "--set", "decoder.max_tokens=40", "--quiet"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["same_bundle"] is False and report["agreement"] < 1.0
    assert report["action_agreement"] < 1.0 and set(report["recorded_verdicts"]) <= {"ok", "degraded"}
    changed = report["changed"][0]
    assert changed["recorded"] != changed["replayed"]
    assert (out / changed["frame_file"]).stat().st_size > 1000
    assert "Changed cycles" in (out / "report.md").read_text()


def test_files_roll_over_each_replayable_and_a_quota_removes_the_oldest(tiny_bundle, turn_scene, tmp_path):
    folder = tmp_path / "rec"
    record_scene(tiny_bundle, turn_scene, folder, "record.max_file_s=1.0", "record.quota_bytes=1500000",
                 "record.image_format='png'")
    files = sorted(folder.glob("*.mcap"))
    numbers = [int(f.stem.rsplit("-", 1)[1]) for f in files]
    assert len(files) >= 2 and numbers == list(range(numbers[0], numbers[0] + len(files)))
    assert numbers[0] > 0, "the quota removed the oldest files"
    assert sum(f.stat().st_size for f in files[:-1]) <= 1_500_000
    for path in files[:-1]:  # each file starts with the frames and nav still in use
        log = read_drive_log([path])
        config = replay_config_for(log.metadata, tiny_bundle, FAST, None)
        result = replay_log(log, config)
        assert result.skipped == [] and result.agreement == 1.0


def truncated_copy(source: Path, target: Path, keep_fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep_fraction)])
    return target


def test_damaged_logs_are_replayed_up_to_the_damage_or_refused(tiny_bundle, turn_scene, tmp_path):
    folder = tmp_path / "rec"
    record_scene(tiny_bundle, turn_scene, folder, "record.chunk_bytes=65536")
    whole = read_drive_log([folder])
    source = sorted(folder.glob("*.mcap"))[0]
    # Cut mid-chunk: what came before the cut is replayed, the damage is named.
    cut = truncated_copy(source, tmp_path / "cut.mcap", 0.7)
    out = tmp_path / "report"
    run = subprocess.run([*EDGE, "replay", str(cut), "--bundle", str(tiny_bundle), "--out", str(out), "--quiet",
                          "--set", "decoder.max_tokens=40"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "damaged log, replaying up to the damage" in run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["damage"] and report["replayed_cycles"] > 0
    assert report["recorded_cycles"] < len(whole.advice)
    # Wrong magic: refused with the reason.
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"NOTMCAP!" + source.read_bytes()[8:])
    run = subprocess.run([*EDGE, "replay", str(bad), "--bundle", str(tiny_bundle), "--out", str(tmp_path / "r2")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 2 and "not an MCAP file" in run.stderr
    # Cut before the first advice: nothing to replay, refused.
    with pytest.raises(DriveLogError, match="nothing to replay"):
        read_drive_log([truncated_copy(source, tmp_path / "stub.mcap", 0.001)])


def test_a_known_topic_with_an_unknown_schema_is_refused(tmp_path):
    path = tmp_path / "other.mcap"
    with path.open("wb") as f:
        writer = Writer(f)
        writer.start()
        schema = writer.register_schema("other.Advice", "jsonschema", b"{}")
        channel = writer.register_channel("/advice", "json", schema)
        writer.add_message(channel, 1, b"{}", 1)
        writer.finish()
    with pytest.raises(DriveLogError, match="channel /advice carries schema 'other.Advice'"):
        read_drive_log([path])


def free_tcp_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def test_edge_run_records_and_a_full_disk_stops_the_recording_not_the_loop(tiny_bundle, drive_videos, tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past 200 kB, as a full disk would. A planner
    listening on the runtime's socket sees the status event; the loop runs all its cycles."""
    folder, publish = tmp_path / "rec", free_tcp_endpoint()
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000)); "
        "from edge_cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    planner = Subscriber(publish, [TOPIC_STATUS])  # connects before the runtime binds; ZeroMQ retries
    try:
        runtime = subprocess.Popen(
            [sys.executable, "-c", code, "run", "--bundle", str(tiny_bundle), "--camera", str(drive_videos[0]),
             "--max-cycles", "8", "--record", str(folder), "--publish", publish, "--nav", "tcp://127.0.0.1:*",
             "--set", "decoder.max_tokens=16", "--set", "camera.interval_ms=200", "--set", "camera.loop_video=true",
             "--set", "record.image_format='png'", "--set", "budgets.total_ms=60000",
             "--set", "budgets.max_frame_age_ms=60000", "--set", "bus.status_interval_ms=100"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        events = {}
        while runtime.poll() is None:
            got = planner.receive(timeout_ms=100)
            if got is not None:
                events.update({e.kind: e for e in got.message.events})
        stderr = runtime.stderr.read()
    finally:
        planner.close()
    assert runtime.returncode == 0, stderr
    assert "edge run: 8 cycles" in stderr
    assert "File too large" in events["recording_stopped"].message
    files = list(folder.glob("*.mcap"))
    assert files and all(f.stat().st_size <= 200_000 for f in files)


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
