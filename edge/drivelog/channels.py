"""The channels of a drive log, shared by the MCAP files and the live view.

- ``/camera``: each sampled frame the loop used, once, as Foxglove's ``foxglove.CompressedImage``
  (protobuf; JPEG by default, PNG for bit-exact replay). The MCAP message's ``sequence`` is the
  camera frame id; the advice messages name the frames of their clip by that id.
- ``/advice``, ``/status``, ``/nav``, ``/feedback``: the wire messages as JSON, exactly as on the
  bus, each with the project's JSON Schema registered as the MCAP schema (``jsonschema``).

Every record carries two clocks: ``log_time`` (ns since the UTC epoch, what Foxglove shows) and
``publish_time``, which holds the runtime's monotonic clock at the event. Replay needs the latter:
navigation expiry and clip timing run on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from edge.messages import MESSAGE_TYPES, TOPIC_ADVICE, TOPIC_FEEDBACK, TOPIC_NAV, TOPIC_STATUS, WireMessage

TOPIC_CAMERA = "/camera"
CAMERA_FRAME = "camera"  # Foxglove's coordinate frame name for the image
IMAGE_SCHEMA_NAME = "foxglove.CompressedImage"
MESSAGE_TOPICS = {f"/{topic}": topic for topic in (TOPIC_ADVICE, TOPIC_STATUS, TOPIC_NAV, TOPIC_FEEDBACK)}


@dataclass(frozen=True)
class ChannelSpec:
    topic: str
    message_encoding: str
    schema_name: str
    schema_encoding: str
    schema_data: bytes


@dataclass(frozen=True)
class LogRecord:
    """One message of the log, encoded, with the wire message it came from (None for frames)."""

    topic: str
    log_time_ns: int
    mono_ns: int
    sequence: int
    data: bytes
    message: WireMessage | None = field(default=None, compare=False)


@lru_cache(maxsize=1)
def image_schema() -> tuple[str, bytes]:
    """(encoding, data) of Foxglove's CompressedImage schema, as the foxglove SDK ships it."""
    from foxglove.messages import CompressedImage

    schema = CompressedImage.get_schema()
    return schema.encoding, bytes(schema.data)


@lru_cache(maxsize=1)
def channel_specs() -> tuple[ChannelSpec, ...]:
    encoding, data = image_schema()
    specs = [ChannelSpec(TOPIC_CAMERA, "protobuf", IMAGE_SCHEMA_NAME, encoding, data)]
    for topic, wire_topic in MESSAGE_TOPICS.items():
        model = MESSAGE_TYPES[wire_topic]
        schema = json.dumps(model.model_json_schema(), sort_keys=True).encode()
        specs.append(ChannelSpec(topic, "json", f"edge.{model.__name__}", "jsonschema", schema))
    return tuple(specs)


CHANNELS = tuple(spec.topic for spec in channel_specs())


def encode_image(image: np.ndarray, fmt: str, jpeg_quality: int, log_time_ns: int) -> bytes:
    """A BGR frame as an encoded foxglove.CompressedImage message."""
    from foxglove.messages import CompressedImage, Timestamp

    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    else:
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} frame as {fmt}")
    stamp = Timestamp(sec=log_time_ns // 1_000_000_000, nsec=log_time_ns % 1_000_000_000)
    return CompressedImage(timestamp=stamp, frame_id=CAMERA_FRAME, data=buf.tobytes(), format=fmt).encode()


def message_record(message: WireMessage, log_time_ns: int, mono_ns: int) -> LogRecord:
    return LogRecord(f"/{message.TOPIC}", log_time_ns, mono_ns, message.seq,
                     message.model_dump_json().encode(), message)
