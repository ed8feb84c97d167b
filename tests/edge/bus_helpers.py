"""Helpers for tests that use real bus sockets."""

from __future__ import annotations

import time

from edge.messages import RuntimeState, Status


def heartbeat(**changes) -> Status:
    fields = {"state": RuntimeState.RUNNING, "heartbeat_interval_ms": 100, "uptime_ms": 1}
    fields.update(changes)
    return Status(**fields)


def wait_joined(publisher, subscriber, timeout_s: float = 5.0) -> None:
    """PUB/SUB's slow joiner: publish heartbeats until one arrives, then drain."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        publisher.publish(heartbeat())
        if subscriber.receive(timeout_ms=50) is not None:
            while subscriber.receive(timeout_ms=20) is not None:
                pass
            return
    raise AssertionError("subscriber never joined")
