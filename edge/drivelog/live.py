"""The live view: the drive log's channels served over the Foxglove WebSocket protocol.

Foxglove (the app, or app.foxglove.dev in a browser) connects to ws://HOST:PORT and shows the
camera with the advice, the navigation messages, the stage latencies and verdicts as they happen;
docs/foxglove-layout.json arranges them. The server is the foxglove SDK's own (Rust, its own
threads); messages for channels nobody subscribes to are dropped there, and a slow viewer loses
its oldest messages, never the loop's time. Records reach it from the drive log's writer thread,
already encoded: the same bytes the MCAP files hold.
"""

from __future__ import annotations

import foxglove

from edge.drivelog.channels import LogRecord, channel_specs
from edge.errors import EdgeError

SERVER_NAME = "edge-scene-runtime"


class LiveViewError(EdgeError, OSError):
    pass


class LiveView:
    name = "live_view"

    def __init__(self, host: str, port: int):
        self.context = foxglove.Context()
        try:
            self.server = foxglove.start_server(name=SERVER_NAME, host=host, port=port, context=self.context)
        except Exception as exc:  # the SDK raises its own error type for a port in use
            raise LiveViewError(f"cannot serve the live view on {host}:{port}: {exc}") from None
        self.host = host
        self.channels = {
            spec.topic: foxglove.Channel(
                spec.topic,
                schema=foxglove.Schema(name=spec.schema_name, encoding=spec.schema_encoding, data=spec.schema_data),
                message_encoding=spec.message_encoding,
                context=self.context,
            )
            for spec in channel_specs()
        }

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def write(self, record: LogRecord) -> None:
        self.channels[record.topic].log(record.data, log_time=record.log_time_ns)

    def trigger(self, reason: str, log_time_ns: int) -> None:
        pass

    def close(self) -> None:
        self.server.stop()
