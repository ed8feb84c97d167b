"""Append-only JSONL audit log of every cycle, rotated by size.

Each record is written as one complete line in a single ``write`` and flushed, so a crash
leaves at most the OS buffer unsynced and never half a line from us. ``sync`` fsyncs; the
runtime calls it on SIGINT/SIGTERM and at exit. Rotation renames ``audit.jsonl`` to
``audit.jsonl.1`` (and shifts older ones up to ``keep``) before the line that would overflow.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class AuditLog:
    def __init__(self, path: str | Path, max_bytes: int = 64 * 1024 * 1024, keep: int = 5):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the run

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self._file.tell() and self._file.tell() + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
            self._file.flush()

    def _rotate(self) -> None:
        self._sync_locked()
        self._file.close()
        for index in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _sync_locked(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def sync(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._sync_locked()

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._sync_locked()
                self._file.close()
