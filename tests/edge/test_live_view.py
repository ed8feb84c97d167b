"""The live view speaks the Foxglove WebSocket protocol: a real client (websockets) connects,
sees the channels advertised with their schemas, subscribes, and receives camera frames and advice
while the loop runs."""

from __future__ import annotations

import json
import struct
import threading
import time

import pytest
from websockets.sync.client import connect

from edge.capture import VideoFileStepper
from edge.drivelog.live import LiveView, LiveViewError
from edge.feeds import SimClock, SteppedFeed
from edge.messages import ActionAdvice
from edge.runtime import running_loop
from sim.replay import replay_config

pytestmark = pytest.mark.slow

SUBPROTOCOL = "foxglove.sdk.v1"
MESSAGE_DATA = 0x01  # binary opcode: subscription id (u32), log time (u64), payload


def advertised(ws) -> dict[str, dict]:
    channels: dict[str, dict] = {}
    while not {"/camera", "/advice"} <= set(channels):
        message = ws.recv(timeout=10)
        if isinstance(message, str) and json.loads(message)["op"] == "advertise":
            channels.update({c["topic"]: c for c in json.loads(message)["channels"]})
    return channels


def test_a_foxglove_client_receives_frames_and_advice(tiny_bundle, drive_videos):
    config = replay_config(tiny_bundle, overrides=["decoder.max_tokens=16", "decoder.threads=1", "live.enabled=true",
                                                   "live.port=0"])
    clock = SimClock()
    feed = SteppedFeed(VideoFileStepper(drive_videos[0], loop=True), clock, 500, 4)
    with running_loop(config, feed=feed, clock=clock, enforce_deadlines=False) as loop:
        live = loop.parts.tap.live_view()
        assert live.url.startswith("ws://127.0.0.1:")
        with connect(live.url, subprotocols=[SUBPROTOCOL]) as ws:
            channels = advertised(ws)
            assert channels["/camera"]["schemaName"] == "foxglove.CompressedImage"
            assert channels["/camera"]["encoding"] == "protobuf"
            assert channels["/advice"]["schemaName"] == "edge.ActionAdvice"
            assert channels["/advice"]["schemaEncoding"] == "jsonschema"
            subscriptions = {1: "/camera", 2: "/advice"}
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                {"id": sid, "channelId": channels[topic]["id"]} for sid, topic in subscriptions.items()]}))
            runner = threading.Thread(target=lambda: [loop.run_cycle(loop.next_clip()) for _ in range(4)])
            runner.start()
            got: dict[str, list[tuple[int, bytes]]] = {"/camera": [], "/advice": []}
            while not (got["/camera"] and got["/advice"]):
                message = ws.recv(timeout=60)
                if isinstance(message, bytes) and message[0] == MESSAGE_DATA:
                    sid, log_time = struct.unpack_from("<IQ", message, 1)
                    got[subscriptions[sid]].append((log_time, message[13:]))
            runner.join()
    log_time, image = got["/camera"][0]
    assert b"jpeg" in image and b"\xff\xd8\xff" in image  # a CompressedImage holding a JPEG
    advice = ActionAdvice.model_validate_json(got["/advice"][0][1])
    assert advice.bundle_sha256 == loop.bundle_sha256
    # One time line for all channels: the replay's monotonic clock plus one offset fixed at the start,
    # and that time line is today's (the simulated wall clock follows the real one).
    assert log_time == advice.frames[0].capture_mono_ns + loop.parts.tap.wall_offset_ns
    assert abs(log_time - time.time_ns()) < 3600 * 10**9


def test_a_port_in_use_is_refused_with_the_reason():
    first = LiveView("127.0.0.1", 0)
    try:
        with pytest.raises(LiveViewError, match=f"127.0.0.1:{first.port}.*in use"):
            LiveView("127.0.0.1", first.port)
    finally:
        first.close()


def test_the_shipped_foxglove_layout_is_current_and_names_the_live_channels():
    from pathlib import Path

    from edge.drivelog.channels import CHANNELS
    from edge.drivelog.layout import layout_json

    shipped = Path(__file__).resolve().parents[2] / "docs" / "foxglove-layout.json"
    assert shipped.read_text() == layout_json(), "regenerate: python -m edge.drivelog.layout docs/foxglove-layout.json"
    text = shipped.read_text()
    for topic in ("/camera", "/advice", "/nav", "/status"):
        assert topic in CHANNELS and f'"{topic}' in text
