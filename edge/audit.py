"""Append-only JSONL audit log of every cycle, rotated by size.

Each record is written as one complete line in a single unbuffered ``write``, so a crash (even
SIGKILL) leaves whole lines behind, never half a line from us; at most the record of the cycle
being written is missing. ``sync`` fsyncs; the runtime calls it on SIGINT/SIGTERM and at exit.
Rotation renames ``audit.jsonl`` to ``audit.jsonl.1`` (and shifts older ones up to ``keep``)
before the line that would overflow.

A write that fails (disk full, file-size limit, I/O error) is undone: the file is cut back to its
last complete line, so the lines written after the disk has room again still all parse. The
failure raises ``AuditWriteError`` and is counted in ``failed_writes``; the loop reports it on
``status`` and keeps running (the advice has already gone out).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class AuditWriteError(OSError):
    pass


class AuditLog:
    def __init__(self, path: str | Path, max_bytes: int = 64 * 1024 * 1024, keep: int = 5):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.keep = keep
        self.failed_writes = 0
        self.rotations = 0
        self._lock = threading.Lock()
        self._file = self._open()
        self._size = self._file.seek(0, os.SEEK_END)

    def _open(self):
        return open(self.path, "ab", buffering=0)  # held open for the run

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            try:
                if self._size and self._size + len(line) > self.max_bytes:
                    self._rotate()
                self._write_all(line)
            except OSError as exc:
                self.failed_writes += 1
                self._undo_partial()
                raise AuditWriteError(exc.errno, f"audit record not written to {self.path}: {exc.strerror}") from exc
            self._size += len(line)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]

    def _undo_partial(self) -> None:
        try:
            self._file.truncate(self._size)
        except (OSError, ValueError):  # the file is closed (a failed rotation) or the disk refuses
            pass

    def _rotate(self) -> None:
        self._sync_locked()
        self._file.close()
        try:
            for index in range(self.keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            self.rotations += 1
        finally:  # a failed rename keeps appending to the old file rather than to a closed one
            self._file = self._open()
            self._size = self._file.seek(0, os.SEEK_END)

    def _sync_locked(self) -> None:
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
