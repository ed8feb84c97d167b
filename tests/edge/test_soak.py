"""A 500-cycle soak of the loop with real parts: nothing grows, the audit log rotates without loss."""

from __future__ import annotations

import json

import pytest

from edge.audit import AuditLog
from edge.bench.soak import check_audit, run_soak

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
def test_soak_500_cycles_holds(tiny_bundle, drive_videos):
    report = run_soak(tiny_bundle, drive_videos[0], cycles=500, warmup=100, audit_max_bytes=32 * 1024,
                      progress=None)
    held = report["held"]
    assert all(held.values()), (held, report["memory"], report["audit"])
    assert report["audit"]["rotations"] >= 3
    assert report["work"]["nav_used"] > 0
    assert sum(report["work"]["verdicts"].values()) == 500


def test_rotation_keeps_every_record_in_order(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=4096, keep=100)
    for cycle in range(400):
        log.write({"cycle": cycle, "pad": "x" * (cycle % 97)})
    log.close()
    checked = check_audit(path)
    assert checked == {"files": log.rotations + 1, "records": 400, "bad_lines": 0, "cycles_in_order": True}
    assert log.rotations >= 5
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())


def test_a_failed_write_is_cut_back_to_the_last_whole_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.write({"cycle": 0})
    log._file.write(b'{"cycle": 1, "torn')  # what a write cut short by a full disk leaves behind
    log._undo_partial()
    log.write({"cycle": 2})
    log.close()
    assert [json.loads(line)["cycle"] for line in path.read_text().splitlines()] == [0, 2]
