"""The audit log (edge/audit.py): size rotation without loss, the oldest files dropped past `keep`,
and a torn write cut back to the last whole line."""

from __future__ import annotations

import json

from edge.audit import AuditLog
from edge.bench.soak import check_audit


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


def test_rotation_keeps_only_the_newest_files(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=512, keep=3)
    for cycle in range(200):
        log.write({"cycle": cycle, "pad": "x" * 40})
    log.close()
    assert log.rotations > 3
    # The current file and `keep` rotated ones: audit.jsonl.1 the newest of them.
    names = ["audit.jsonl.3", "audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    kept = [json.loads(line)["cycle"] for name in names
            for line in (tmp_path / name).read_text().splitlines()]
    assert kept == list(range(kept[0], 200))  # the newest records, in order, none missing
