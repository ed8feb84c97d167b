"""`edge health`: the container HEALTHCHECK asks the runtime for its heartbeat over real ZeroMQ."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge.bus import Publisher
from edge.commands.health import local_endpoint
from edge.messages import RuntimeState, Status

EDGE = Path(sys.executable).with_name("edge")
HEARTBEAT_MS = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_health(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EDGE), "health", *args], capture_output=True, text=True, timeout=60)


class Heartbeat:
    """A real Publisher sending a status heartbeat every HEARTBEAT_MS until stopped."""

    def __init__(self, endpoint: str, state: RuntimeState):
        self.publisher = Publisher(endpoint)
        self.endpoint = self.publisher.endpoint
        self._state = state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        uptime = 0
        while not self._stop.wait(HEARTBEAT_MS / 1000):
            uptime += HEARTBEAT_MS
            self.publisher.publish(
                Status(state=self._state, heartbeat_interval_ms=HEARTBEAT_MS, uptime_ms=uptime, cycles=3)
            )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.publisher.close()


def test_nothing_publishing_is_unhealthy():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    result = run_health("--endpoint", endpoint, "--timeout-s", "1")
    assert result.returncode == 1
    assert f"no status heartbeat from {endpoint} within 1 s" in result.stdout


@pytest.mark.parametrize("state", [RuntimeState.RUNNING, RuntimeState.DEGRADED])
def test_running_heartbeat_is_healthy(state):
    with Heartbeat("tcp://127.0.0.1:*", state) as beat:
        result = run_health("--endpoint", beat.endpoint, "--timeout-s", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"healthy: state={state.value}")


@pytest.mark.parametrize("state", [RuntimeState.CAMERA_LOST, RuntimeState.STARTING])
def test_heartbeat_of_a_broken_runtime_is_unhealthy(state):
    with Heartbeat("tcp://127.0.0.1:*", state) as beat:
        result = run_health("--endpoint", beat.endpoint, "--timeout-s", "10")
    assert result.returncode == 1
    assert result.stdout.startswith(f"unhealthy: state={state.value}")


def test_endpoint_comes_from_the_runtime_config(tmp_path):
    """The images run `edge health --config /etc/edge/runtime.toml`: the runtime binds tcp://*:PORT
    and the health check reaches it through the loopback address."""
    port = free_port()
    config = tmp_path / "runtime.toml"
    config.write_text(f'[bus]\npublish_endpoint = "tcp://*:{port}"\n')
    with Heartbeat(f"tcp://*:{port}", RuntimeState.RUNNING):
        result = run_health("--config", str(config), "--timeout-s", "10")
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_timeout_is_refused():
    result = run_health("--endpoint", "tcp://127.0.0.1:1", "--timeout-s", "0")
    assert result.returncode == 2 and "--timeout-s must be > 0" in result.stderr


@pytest.mark.parametrize(
    ("bound", "local"),
    [
        ("tcp://*:5555", "tcp://127.0.0.1:5555"),
        ("tcp://0.0.0.0:6000", "tcp://127.0.0.1:6000"),
        ("tcp://10.1.2.3:5555", "tcp://10.1.2.3:5555"),
        ("ipc:///run/edge/pub", "ipc:///run/edge/pub"),
    ],
)
def test_local_endpoint(bound, local):
    assert local_endpoint(bound) == local


def test_heartbeats_of_another_schema_version_are_named():
    """A runtime that speaks another schema version is not healthy, and the reason says why."""
    publisher = Publisher("tcp://127.0.0.1:*")
    stop = threading.Event()

    def send_wrong_version() -> None:
        payload = Status(
            state=RuntimeState.RUNNING, heartbeat_interval_ms=HEARTBEAT_MS, uptime_ms=1
        ).model_dump(mode="json")
        payload["schema_version"] = 99
        while not stop.wait(HEARTBEAT_MS / 1000):
            publisher.send_raw([b"status", json.dumps(payload).encode()])

    thread = threading.Thread(target=send_wrong_version, daemon=True)
    thread.start()
    try:
        result = run_health("--endpoint", publisher.endpoint, "--timeout-s", "2")
    finally:
        stop.set()
        thread.join()
        publisher.close()
    assert result.returncode == 1
    assert "invalid status messages dropped" in result.stdout and "wrong_schema_version" in result.stdout
