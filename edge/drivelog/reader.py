"""Reading a drive log back (for `edge replay` and `edge eval` of captures), damage included.

Files are read as a stream of records, not through the summary at their end, so a file cut off
mid-chunk (power loss, a full disk) still gives everything before the cut. What cannot be read is
reported as damage with its reason; a file that is not MCAP at all, or whose known channels carry
another schema than this runtime writes, is refused (``DriveLogError``) rather than guessed at.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydantic
from mcap.exceptions import McapError
from mcap.records import Channel, Message, Metadata, Schema
from mcap.stream_reader import CRCValidationError, StreamReader
from mcap_protobuf.decoder import DecoderFactory

from edge.drivelog.channels import MESSAGE_TOPICS, TOPIC_CAMERA, channel_specs
from edge.drivelog.mcapfile import METADATA_NAME
from edge.messages import MESSAGE_TYPES, ActionAdvice, Feedback, NavInstruction, WireMessage

RECORD_SIZE_LIMIT = 256 * 1024 * 1024  # a corrupt length field must not allocate gigabytes


class DriveLogError(ValueError):
    """The log cannot be used at all; the message says why."""


@dataclass
class DriveLog:
    paths: list[Path]
    metadata: dict[str, str] = field(default_factory=dict)
    frames: dict[int, bytes] = field(default_factory=dict)  # camera frame id -> JPEG/PNG bytes
    frame_format: dict[int, str] = field(default_factory=dict)
    nav: list[tuple[int, NavInstruction]] = field(default_factory=list)  # (runtime mono ns, message)
    feedback: list[tuple[int, Feedback]] = field(default_factory=list)
    advice: list[ActionAdvice] = field(default_factory=list)
    messages: int = 0
    damage: list[str] = field(default_factory=list)
    ignored_topics: set[str] = field(default_factory=set)

    def image(self, frame_id: int) -> np.ndarray:
        """The frame as the loop saw it (PNG) or as close as JPEG keeps it: BGR uint8."""
        image = cv2.imdecode(np.frombuffer(self.frames[frame_id], dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise DriveLogError(f"frame {frame_id} does not decode as {self.frame_format.get(frame_id)}")
        return image


class _FileReader:
    """Accumulates one file's records into a DriveLog, checking channels against the known ones."""

    def __init__(self, log: DriveLog, path: Path):
        self.log, self.path = log, path
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self.known = {spec.topic: spec for spec in channel_specs()}
        self.decoders = DecoderFactory()
        self._image_decoder: Callable[[bytes], Any] | None = None
        self._seen_nav: set[tuple[int, int]] = {(m, n.seq) for m, n in log.nav}

    def add(self, record: object) -> None:
        if isinstance(record, Schema):
            self.schemas[record.id] = record
        elif isinstance(record, Channel):
            self._check_channel(record)
            self.channels[record.id] = record
        elif isinstance(record, Metadata) and record.name == METADATA_NAME:
            self.log.metadata.update(record.metadata)
        elif isinstance(record, Message):
            self._message(record)

    def _check_channel(self, channel: Channel) -> None:
        spec = self.known.get(channel.topic)
        if spec is None:
            self.log.ignored_topics.add(channel.topic)
            return
        schema = self.schemas.get(channel.schema_id)
        name = schema.name if schema else "<none>"
        if name != spec.schema_name or channel.message_encoding != spec.message_encoding:
            raise DriveLogError(f"{self.path}: channel {channel.topic} carries schema {name!r} "
                                f"({channel.message_encoding}); this runtime reads {spec.schema_name!r} "
                                f"({spec.message_encoding})")

    def _message(self, message: Message) -> None:
        channel = self.channels.get(message.channel_id)
        if channel is None:
            self.log.damage.append(f"{self.path.name}: a message on unknown channel id {message.channel_id}")
            return
        if channel.topic == TOPIC_CAMERA:
            self._frame(channel, message)
        elif channel.topic in MESSAGE_TOPICS:
            self._wire(channel.topic, message)
        self.log.messages += 1

    def _frame(self, channel: Channel, message: Message) -> None:
        if self._image_decoder is None:
            self._image_decoder = self.decoders.decoder_for("protobuf", self.schemas[channel.schema_id])
        if self._image_decoder is None:
            raise DriveLogError(f"no decoder for the camera channel's schema {self.schemas[channel.schema_id].name}")
        image = self._image_decoder(message.data)
        self.log.frames[message.sequence] = bytes(image.data)
        self.log.frame_format[message.sequence] = image.format

    def _wire(self, topic: str, message: Message) -> None:
        model = MESSAGE_TYPES[MESSAGE_TOPICS[topic]]
        try:
            parsed: WireMessage = model.model_validate_json(message.data)
        except pydantic.ValidationError as exc:
            self.log.damage.append(f"{self.path.name}: a {topic} message fails its schema: "
                                   f"{exc.errors()[0]['msg']}")
            return
        if isinstance(parsed, ActionAdvice):
            self.log.advice.append(parsed)
        elif isinstance(parsed, NavInstruction) and (message.publish_time, parsed.seq) not in self._seen_nav:
            self._seen_nav.add((message.publish_time, parsed.seq))
            self.log.nav.append((message.publish_time, parsed))
        elif isinstance(parsed, Feedback):
            self.log.feedback.append((message.publish_time, parsed))


def _read_file(log: DriveLog, path: Path) -> None:
    reader = _FileReader(log, path)
    with path.open("rb") as stream:
        head = stream.read(8)
        if len(head) < 8 or not head.startswith(b"\x89MCAP"):
            raise DriveLogError(f"{path}: not an MCAP file (starts with {head!r})")
        stream.seek(0)
        records = StreamReader(stream, validate_crcs=True, record_size_limit=RECORD_SIZE_LIMIT).records
        try:
            for record in records:
                reader.add(record)
        except DriveLogError:
            raise
        except (McapError, CRCValidationError, zlib.error, ValueError, EOFError, OSError, KeyError) as exc:
            # Everything before this point was read; what follows the damage is lost.
            log.damage.append(f"{path.name}: read up to byte {stream.tell()} of {path.stat().st_size}, "
                              f"then {type(exc).__name__}: {exc}"[:300])
        except Exception as exc:  # zstandard's and struct's errors have no common base
            log.damage.append(f"{path.name}: read up to byte {stream.tell()}, then {type(exc).__name__}: {exc}"[:300])


def log_files(paths: Iterable[Path]) -> list[Path]:
    """The MCAP files named, folders expanded to their *.mcap files; in name (time) order."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(path.glob("*.mcap"))
        elif path.is_file():
            files.append(path)
        else:
            raise DriveLogError(f"{path} does not exist")
    if not files:
        raise DriveLogError("no MCAP files given")
    return files


def read_drive_log(paths: Iterable[Path]) -> DriveLog:
    files = log_files(paths)
    log = DriveLog(paths=files)
    for path in files:
        _read_file(log, path)
    unique: dict[int, ActionAdvice] = {}  # the first of each seq, in seq order
    for advice in sorted(log.advice, key=lambda a: a.seq):
        unique.setdefault(advice.seq, advice)
    log.advice = list(unique.values())
    log.nav.sort(key=lambda item: item[0])
    if not log.advice:
        reason = "; ".join(log.damage) or "it holds no advice messages"
        raise DriveLogError(f"nothing to replay in {', '.join(map(str, files))}: {reason}")
    return log
