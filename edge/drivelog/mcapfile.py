"""MCAP files of a drive log: one writer per file, files rolled over by size or time, a quota.

Each file stands on its own: it registers every channel with its schema, carries the runtime
metadata (bundle hash, configuration) and starts with the frames and the navigation instruction
still in use, so ``edge replay`` of any single file can run its first cycles.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from mcap.writer import CompressionType, Writer

from edge.drivelog.channels import TOPIC_CAMERA, LogRecord, channel_specs

LIBRARY = "edge-scene-runtime"
METADATA_NAME = "edge.runtime"


class McapSegment:
    """One open MCAP file with every channel registered."""

    def __init__(self, path: Path, metadata: dict[str, str], chunk_bytes: int):
        self.path = path
        self._file = path.open("wb")
        self._writer = Writer(self._file, chunk_size=chunk_bytes, compression=CompressionType.ZSTD)
        self._writer.start(library=LIBRARY)
        self._channels: dict[str, int] = {}
        for spec in channel_specs():
            schema_id = self._writer.register_schema(spec.schema_name, spec.schema_encoding, spec.schema_data)
            self._channels[spec.topic] = self._writer.register_channel(spec.topic, spec.message_encoding, schema_id)
        self._writer.add_metadata(METADATA_NAME, metadata)
        self.first_log_time: int | None = None
        self.last_log_time: int | None = None

    def write(self, record: LogRecord) -> None:
        self._writer.add_message(self._channels[record.topic], record.log_time_ns, record.data,
                                 publish_time=record.mono_ns, sequence=record.sequence & 0xFFFFFFFF)
        if self.first_log_time is None:
            self.first_log_time = record.log_time_ns
        self.last_log_time = record.log_time_ns

    def bytes_written(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        try:
            self._writer.finish()
        finally:
            self._file.close()


def runtime_metadata(bundle_sha256: str, config_json: str, **extra: str) -> dict[str, str]:
    return {"bundle_sha256": bundle_sha256, "config": config_json, **extra}


def enforce_quota(files: Iterable[Path], quota_bytes: int, keep: Path | None = None) -> list[Path]:
    """Remove the oldest files (by name: names sort by time) until the rest fit in quota_bytes."""
    ordered = sorted(files)
    sizes = {p: p.stat().st_size for p in ordered if p.exists()}
    total = sum(sizes.values())
    removed = []
    for path in ordered:
        if total <= quota_bytes:
            break
        if path == keep or path not in sizes:
            continue
        path.unlink(missing_ok=True)
        total -= sizes[path]
        removed.append(path)
    return removed


class McapLog:
    """The `--record DIR` sink: drive-<start>-<n>.mcap files, rolled and kept under a quota."""

    name = "recording"

    def __init__(self, folder: Path, metadata: dict[str, str], *, max_file_bytes: int, max_file_s: float,
                 quota_bytes: int, frames_per_clip: int, chunk_bytes: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.metadata = metadata
        self.max_file_bytes = max_file_bytes
        self.max_file_s = max_file_s
        self.quota_bytes = quota_bytes
        self.chunk_bytes = chunk_bytes
        self.carry_frames = frames_per_clip - 1  # what the next clip shares with the last one
        self._stem = time.strftime("drive-%Y%m%d-%H%M%S", time.gmtime())
        self._index = 0
        self._recent_frames: OrderedDict[int, LogRecord] = OrderedDict()
        self._last_nav: LogRecord | None = None
        self.removed: list[Path] = []
        self.files: list[Path] = []
        self._segment = self._open()

    def _open(self) -> McapSegment:
        path = self.folder / f"{self._stem}-{self._index:04d}.mcap"
        self._index += 1
        self.files.append(path)
        segment = McapSegment(path, self.metadata, self.chunk_bytes)
        for record in (*self._recent_frames.values(), *([self._last_nav] if self._last_nav else [])):
            segment.write(record)
        segment.first_log_time = None  # the carried records do not start the file's time span
        return segment

    def write(self, record: LogRecord) -> None:
        if self._due_for_rollover(record):
            self._roll()
        self._segment.write(record)
        if record.topic == TOPIC_CAMERA:
            self._recent_frames[record.sequence] = record
            while len(self._recent_frames) > self.carry_frames:
                self._recent_frames.popitem(last=False)
        elif record.topic == "/nav":
            self._last_nav = record

    def trigger(self, reason: str, log_time_ns: int) -> None:
        pass  # a recording keeps everything anyway

    def _due_for_rollover(self, record: LogRecord) -> bool:
        """By size, or by the drive time the file covers (log time: simulated drives roll alike)."""
        segment = self._segment
        if segment.bytes_written() >= self.max_file_bytes:
            return True
        return (segment.first_log_time is not None
                and record.log_time_ns - segment.first_log_time >= self.max_file_s * 1e9)

    def _roll(self) -> None:
        self._segment.close()
        self._segment = self._open()
        self.removed += enforce_quota(self.folder.glob("drive-*.mcap"), self.quota_bytes, keep=self._segment.path)

    def close(self) -> None:
        self._segment.close()
        self.removed += enforce_quota(self.folder.glob("drive-*.mcap"), self.quota_bytes, keep=self._segment.path)


def config_json(config) -> str:
    return json.dumps(config.model_dump(mode="json"), sort_keys=True)
