import json
import subprocess
import sys
import time

from edge.bench.bus import sample_advice
from edge.bus import Publisher
from edge.client import PlannerClient, format_advice_line
from edge.messages import RuntimeState

from .bus_helpers import heartbeat


def joined_client(pub, context):
    client = PlannerClient(pub.endpoint, context=context)
    deadline = time.monotonic() + 5
    while client.last_status is None and time.monotonic() < deadline:
        pub.publish(heartbeat())
        client.next_advice(timeout_ms=50)
    assert client.last_status is not None
    return client


def test_client_receives_advice_and_reports_gaps(zmq_context):
    pub = Publisher("tcp://127.0.0.1:*", context=zmq_context)
    client = joined_client(pub, zmq_context)
    first = pub.publish(sample_advice())
    event = client.next_advice(timeout_ms=2_000)
    assert event.advice.seq == first.seq and event.missed_before == 0
    assert event.latency_ms >= 0
    pub._seq["advice"] += 3  # three advice messages "lost" on the way
    pub.publish(sample_advice())
    event = client.next_advice(timeout_ms=2_000)
    assert event.missed_before == 3 and client.counters.lost == 3
    assert "decelerate(high)" in format_advice_line(event)


def test_client_refuses_expired_advice(zmq_context):
    pub = Publisher("tcp://127.0.0.1:*", context=zmq_context)
    client = joined_client(pub, zmq_context)
    stale = sample_advice().model_copy(update={"valid_until_wall_ns": time.time_ns() - 1})
    pub.publish(stale)
    fresh = pub.publish(sample_advice())
    event = client.next_advice(timeout_ms=2_000)
    assert event.advice.seq == fresh.seq
    assert client.counters.expired == 1


def test_liveness_follows_the_heartbeat(zmq_context):
    pub = Publisher("tcp://127.0.0.1:*", context=zmq_context)
    client = joined_client(pub, zmq_context)
    for _ in range(6):  # heartbeats at the announced 100 ms
        time.sleep(0.1)
        pub.publish(heartbeat())
        client.next_advice(timeout_ms=10)
    live = client.liveness()
    assert live.alive and live.rate_ok and live.valid and live.healthy
    pub.publish(heartbeat(state=RuntimeState.CAMERA_LOST))
    client.next_advice(timeout_ms=200)
    assert not client.liveness().valid
    time.sleep(0.4)  # > 3 missed heartbeats
    assert not client.liveness().alive


def test_edge_listen_prints_json_lines(zmq_context):
    pub = Publisher("tcp://127.0.0.1:*", context=zmq_context)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_cli", "listen", pub.endpoint, "--json", "--count", "3", "--timeout-s", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        pub.publish(sample_advice())
        time.sleep(0.05)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)
    assert "received 3 advice" in err


def test_low_confidence_advice_is_advisory_only(zmq_context):
    """PlannerClient(min_confidence=...) marks advice under it, and advice without a confidence
    (a version 1 runtime), as advisory; without the option nothing is."""
    import pytest

    pub = Publisher("tcp://127.0.0.1:*", context=zmq_context)
    client = PlannerClient(pub.endpoint, context=zmq_context, min_confidence=0.6)
    deadline = time.monotonic() + 5
    while client.last_status is None and time.monotonic() < deadline:
        pub.publish(heartbeat())
        client.next_advice(timeout_ms=50)
    for confidence in (0.9, 0.3, None):
        pub.publish(sample_advice().model_copy(update={"confidence": confidence}))
    events = [client.next_advice(timeout_ms=2_000) for _ in range(3)]
    assert [e.advice.confidence for e in events] == [0.9, 0.3, None]
    assert [e.advisory for e in events] == [False, True, True]
    assert client.counters.advisory == 2
    assert "conf=0.30" in format_advice_line(events[1]) and "[advisory]" in format_advice_line(events[1])
    plain = PlannerClient(pub.endpoint, context=zmq_context)
    assert not plain.is_advisory(events[1].advice)
    no_decision = sample_advice().model_copy(update={"advice": None, "confidence": None})
    assert not client.is_advisory(no_decision)
    with pytest.raises(ValueError, match="min_confidence"):
        PlannerClient(pub.endpoint, context=zmq_context, min_confidence=1.5)
    client.close()
    plain.close()
