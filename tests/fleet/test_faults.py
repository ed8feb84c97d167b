"""Faults: a worker killed mid-run (SIGKILL to its process) has its drive retried on another worker; a
drive whose worker dies twice is reported failed with the reason; a worker whose bundle differs from
the driver's takes no drives; Ctrl-C writes what finished. Counts always add up to the drives given."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.fleet.conftest import SCENARIOS, interrupt_after_first, os_kill

COMBOS = ["fp32+q4_k_m"]


def _counts(report: dict) -> tuple[int, int, int]:
    fleet = report["fleet"]
    assert fleet["done"] + fleet["failed"] + fleet["not_run"] == fleet["drives_given"] == len(report["drives"])
    return fleet["done"], fleet["failed"], fleet["not_run"]


def test_killed_workers_drives_are_retried_elsewhere_and_a_drive_killed_twice_fails(default_bundle, drives_root,
                                                                                   tmp_path):
    from fleet.driver import FleetOptions, run_fleet

    retried, doomed = SCENARIOS[0], SCENARIOS[1]
    killed: dict[str, list[int]] = {retried: [], doomed: []}

    def on_event(event: str, details) -> None:
        if event != "dispatched":
            return
        drive, pid = details
        if drive == doomed or (drive == retried and not killed[retried]):
            killed[drive].append(pid)
            os_kill(pid)  # the worker dies holding the drive

    report = run_fleet(default_bundle, [drives_root], tmp_path / "fleet.json",
                       FleetOptions(workers=2, combos=COMBOS, progress=False, on_event=on_event))
    rows = {row["drive"]: row for row in report["drives"]}
    assert _counts(report) == (3, 1, 0)
    assert rows[retried]["status"] == "done" and rows[retried]["attempts"] == 2
    assert int(rows[retried]["worker"].rsplit(":", 1)[1]) not in killed[retried]
    assert rows[doomed]["status"] == "failed" and rows[doomed]["attempts"] == 2 and len(killed[doomed]) == 2
    assert "worker died while replaying it" in rows[doomed]["error"]
    assert all(rows[d]["attempts"] == 1 and rows[d]["status"] == "done" for d in SCENARIOS[2:])
    assert sorted(report["scenes"]) == sorted(d for d in SCENARIOS if d != doomed)
    assert report["precisions"]["fp32+q4_k_m"]["cycles"] == 3 * 5


def test_workers_whose_bundle_differs_replay_nothing_and_every_drive_says_why(default_bundle, drives_root, tmp_path):
    from fleet.driver import FleetOptions, run_fleet

    report = run_fleet(default_bundle, [drives_root], None,
                       FleetOptions(workers=2, combos=COMBOS, progress=False, expected_sha256="0" * 64))
    assert _counts(report) == (0, 4, 0)
    for row in report["drives"]:
        assert "differs from the driver's" in row["error"], row
    assert report["precisions"]["fp32+q4_k_m"]["cycles"] == 0


def test_a_worker_with_a_tampered_bundle_reports_it_per_drive(default_bundle, drives_root, tmp_path):
    """The worker checks every file against the manifest it loads (edge.manifest), not only the table's hash."""
    import shutil

    from edge.manifest import load_bundle
    from fleet.worker import ReplayWorker
    from train.dataset import find_scenes

    copy = tmp_path / "bundle"
    shutil.copytree(default_bundle, copy)
    manifest, _ = load_bundle(copy)
    gguf = next(copy.rglob("*.gguf"))
    with gguf.open("r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    worker = ReplayWorker(str(copy), manifest.bundle_sha256(), ["fp32+q4_k_m"], threads=1)
    outcome = worker.replay(find_scenes(drives_root)[0])
    assert not outcome.ok and outcome.error_kind == "worker_fault"
    assert outcome.error.startswith("bundle on worker") and gguf.name in outcome.error


def test_ctrl_c_stops_the_run_and_writes_what_finished(default_bundle, drives_root, tmp_path):
    out = tmp_path / "fleet.json"
    command = [sys.executable, "-m", "edge_cli", "fleet", "eval", "--scenes", str(drives_root), "--bundle",
               str(default_bundle), "--out", str(out), "--workers", "1", "--precision", COMBOS[0]]
    report = interrupt_after_first(command, out)
    done, failed, not_run = _counts(report)
    assert done >= 1 and failed == 0 and not_run >= 1
    assert len(report["precisions"]["fp32+q4_k_m"]["per_scene"]) == done


@pytest.mark.parametrize("damage", ["no_video", "undecodable_video", "labels_past_the_video", "labels_unreadable"])
def test_bad_input_is_reported_per_drive_and_the_run_goes_on(damage, drives_root, tmp_path):
    """Each damaged drive fails in the worker's check with its reason, before any model runs."""
    import shutil

    from fleet.drives import DriveError, check_drive, find_drives
    from train.dataset import find_scenes

    drive_dir = tmp_path / "drives" / "broken"
    shutil.copytree(drives_root / SCENARIOS[0], drive_dir)
    if damage == "no_video":
        (drive_dir / "video.mp4").unlink()
    elif damage == "undecodable_video":
        (drive_dir / "video.mp4").write_bytes(os.urandom(4096))
    elif damage == "labels_past_the_video":
        rows = [json.loads(line) for line in (drive_dir / "labels.jsonl").read_text().splitlines()]
        rows[-1]["end_ms"] += 60_000
        (drive_dir / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        (drive_dir / "labels.jsonl").write_text("{not json\n")
    (drive,) = find_drives([tmp_path / "drives"])
    with pytest.raises(DriveError) as caught:
        check_drive(drive)
    reason = str(caught.value)
    assert "\n" not in reason
    expected = {"no_video": "no video", "undecodable_video": "video does not decode",
                "labels_past_the_video": "labels do not match the video", "labels_unreadable": "not JSON"}[damage]
    assert expected in reason
    check_drive(find_scenes(drives_root)[0])  # the undamaged original passes


def test_a_fleet_run_with_bad_drives_reports_each_and_replays_the_rest(default_bundle, drives_root, tmp_path):
    import shutil

    from fleet.driver import FleetOptions, run_fleet

    root = tmp_path / "drives"
    shutil.copytree(drives_root / SCENARIOS[0], root / "good")
    shutil.copytree(drives_root / SCENARIOS[1], root / "no_video")
    (root / "no_video" / "video.mp4").unlink()
    shutil.copytree(drives_root / SCENARIOS[2], root / "corrupt")
    (root / "corrupt" / "video.mp4").write_bytes(b"\0" * 2048)
    report = run_fleet(default_bundle, [root], tmp_path / "fleet.json",
                       FleetOptions(workers=1, combos=COMBOS, progress=False))
    rows = {row["drive"]: row for row in report["drives"]}
    assert _counts(report) == (1, 2, 0)
    assert rows["good"]["status"] == "done" and rows["good"]["cycles"] == 5
    assert rows["no_video"]["error"].startswith("no video") and rows["no_video"]["attempts"] == 1
    assert rows["corrupt"]["error"].startswith("video does not decode") and rows["corrupt"]["attempts"] == 1
    assert report["scenes"] == ["good"]
