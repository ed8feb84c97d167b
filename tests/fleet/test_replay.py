"""`edge fleet replay`: MCAP drive logs through a bundle on Ray give, cycle by cycle, the advice the
sequential `edge replay` gives on the same logs; a worker killed mid-log has the log retried; damaged,
corrupt and foreign files are reported per log with the reason; plain videos are replayed too; the
counts add up to the logs given."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fleet.conftest import SCENARIOS, interrupt_after_first, os_kill

EDGE = [sys.executable, "-m", "edge_cli"]
# Both sides replay with the same keys: the worker's one thread per model library, a short answer.
SETS = ["decoder.max_tokens=40"]
WORKER_SETS = ["vision.threads=1", "decoder.threads=1", "decoder.threads_batch=1"]


@pytest.fixture(scope="module")
def logs_root(tiny_bundle, drives_root, tmp_path_factory) -> Path:
    """Two drive logs recorded by the tiny bundle (one file each, lossless frames), and one cut at 70% of its bytes."""
    from sim.replay import ReplayOptions, replay_config, replay_scene

    root = tmp_path_factory.mktemp("logs")
    for name in SCENARIOS[:2]:
        config = replay_config(tiny_bundle, overrides=[*SETS, "decoder.threads=1", f"record.dir={str(root / name)!r}",
                                                       "record.chunk_bytes=65536",
                                                       "record.image_format='png'"])
        replay_scene(tiny_bundle, drives_root / name / "video.mp4", drives_root / name / "nav.jsonl", None,
                     ReplayOptions(annotate=False), config=config)
    source = next((root / SCENARIOS[0]).glob("*.mcap"))
    data = source.read_bytes()
    (root / "cut").mkdir()
    (root / "cut" / "cut.mcap").write_bytes(data[: int(len(data) * 0.7)])
    return root


def sequential_replay(bundle: Path, log: Path, out: Path) -> dict:
    sets = [arg for key in (*SETS, *WORKER_SETS) for arg in ("--set", key)]
    run = subprocess.run([*EDGE, "replay", str(log), "--bundle", str(bundle), "--out", str(out), "--quiet", *sets],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    return json.loads((out / "report.json").read_text())


def _counts(report: dict) -> tuple[int, int, int]:
    totals = report["totals"]
    assert totals["done"] + totals["failed"] + totals["not_run"] == totals["logs_given"] == len(report["logs"])
    return totals["done"], totals["failed"], totals["not_run"]


def test_fleet_replay_gives_edge_replays_advice_cycle_by_cycle_and_retries_a_killed_worker(default_bundle, logs_root,
                                                                                           tmp_path):
    from fleet.driver import FleetOptions, run_fleet_replay

    killed: list[int] = []
    first = f"{SCENARIOS[0]}/"

    def on_event(event: str, details) -> None:
        if event == "dispatched" and details[0].startswith(first) and not killed:
            killed.append(details[1])
            os_kill(details[1])  # the worker dies holding the log

    report = run_fleet_replay(default_bundle, [logs_root], tmp_path / "fleet.json",
                              FleetOptions(workers=2, progress=False, on_event=on_event), overrides=SETS,
                              with_cycles=True)
    assert json.loads((tmp_path / "fleet.json").read_text()) == report
    assert _counts(report) == (3, 0, 0)
    rows = {row["log"]: row for row in report["logs"]}
    assert len(rows) == 3 and all(row["kind"] == "mcap" for row in rows.values())
    retried = next(row for name, row in rows.items() if name.startswith(first))
    assert retried["attempts"] == 2 and int(retried["worker"].rsplit(":", 1)[1]) not in killed
    for name, row in rows.items():
        sequential = sequential_replay(default_bundle, logs_root / name, tmp_path / name.replace("/", "_"))
        fleet_cycles = [(c["cycle"], c["recorded"], c["replayed"], c["replayed_verdict"]) for c in row["per_cycle"]]
        assert fleet_cycles == [(c["cycle"], c["recorded"], c["replayed"], c["replayed_verdict"])
                                for c in sequential["cycles"]], name
        assert row["agreement"] == sequential["agreement"] and row["cycles"] == sequential["recorded_cycles"]
        assert row["changed"] == len(sequential["changed"]) and bool(row["damage"]) == bool(sequential["damage"])
        assert row["latency_ms"]["p50"] > 0 and row["recorded_bundle_sha256"] != report["bundle_sha256"]
    assert rows["cut/cut.mcap"]["damage"] and 0 < rows["cut/cut.mcap"]["cycles"] < rows[retried["log"]]["cycles"]
    totals = report["totals"]
    assert totals["cycles"] == sum(row["cycles"] for row in rows.values()) == totals["replayed"] + totals["skipped"]
    assert totals["damaged_logs"] == 1 and totals["by_kind"] == {"mcap": 3}


def test_corrupt_logs_fail_per_log_with_the_reason_and_plain_videos_are_replayed(default_bundle, tiny_bundle,
                                                                               drives_root, logs_root, tmp_path):
    root = tmp_path / "logs"
    good = next((logs_root / SCENARIOS[1]).glob("*.mcap"))
    (root / "good").mkdir(parents=True)
    shutil.copy(good, root / "good" / good.name)
    data = good.read_bytes()
    (root / "foreign.mcap").write_bytes(b"NOTMCAP!" + data[8:])  # wrong magic
    (root / "stub.mcap").write_bytes(data[:64])  # cut before the first advice
    (root / "video").mkdir()
    shutil.copy(drives_root / SCENARIOS[2] / "video.mp4", root / "video" / "video.mp4")  # a drive with no log
    (root / "broken").mkdir()
    (root / "broken" / "video.mp4").write_bytes(b"\0" * 4096)
    out = tmp_path / "replay.json"
    run = subprocess.run([*EDGE, "fleet", "replay", "--logs", str(root), "--bundle", str(tiny_bundle), "--out", str(out),
                          "--quiet", "--set", "decoder.max_tokens=40"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert _counts(report) == (2, 3, 0)
    rows = {row["log"]: row for row in report["logs"]}
    assert "not an MCAP file" in rows["foreign.mcap"]["error"] and rows["foreign.mcap"]["attempts"] == 1
    assert "nothing to replay" in rows["stub.mcap"]["error"]
    assert "broken/video.mp4" in rows["broken/video.mp4"]["error"]
    assert f"failed foreign.mcap: {rows['foreign.mcap']['error']}" in run.stdout
    video = rows["video/video.mp4"]
    assert video["kind"] == "video" and video["status"] == "done" and video["cycles"] >= 4
    assert video["agreement"] is None and video["replayed_verdicts"] and video["latency_ms"]["p50"] > 0
    logged = rows[f"good/{good.name}"]
    assert logged["status"] == "done" and logged["agreement"] == 1.0  # the bundle that recorded it
    assert report["totals"]["failures"] == {"not an MCAP file": 1, "nothing to replay": 1, "cannot decode": 1}


def test_ctrl_c_stops_a_fleet_replay_and_writes_what_finished(tiny_bundle, drives_root, tmp_path):
    """Four plain videos (drive folders without a log), one worker; Ctrl-C after the first is done."""
    out = tmp_path / "replay.json"
    command = [*EDGE, "fleet", "replay", "--logs", str(drives_root), "--bundle", str(tiny_bundle), "--out", str(out),
               "--workers", "1", "--set", "decoder.max_tokens=40"]
    report = interrupt_after_first(command, out)
    done, failed, not_run = _counts(report)
    assert done >= 1 and failed == 0 and not_run >= 1 and report["totals"]["by_kind"] == {"video": 4}
    assert report["totals"]["replayed"] == sum(row.get("replayed", 0) for row in report["logs"]) > 0
