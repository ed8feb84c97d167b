import json
import time

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.bench.bus import sample_advice
from edge.bus import CurveKeys, CurveServer, Publisher, Subscriber, load_public_key, make_keypair
from edge.messages import TOPIC_ADVICE, TOPIC_NAV, TOPIC_STATUS, NavInstruction

from .bus_helpers import heartbeat, wait_joined


def connect_pair(endpoint, context, **sub_kwargs):
    pub = Publisher(endpoint, context=context)
    sub = Subscriber(pub.endpoint, [TOPIC_ADVICE, TOPIC_STATUS], context=context, **sub_kwargs)
    wait_joined(pub, sub)
    return pub, sub


def test_round_trip_keeps_content_and_stamps(endpoint, zmq_context):
    pub, sub = connect_pair(endpoint, zmq_context)
    sent = pub.publish(sample_advice())
    got = sub.receive(timeout_ms=2_000)
    assert got is not None and got.topic == TOPIC_ADVICE
    assert got.message == sent
    assert got.message.seq == 0 and got.message.mono_ns > 0
    assert got.recv_mono_ns >= got.message.mono_ns
    pub.close()
    sub.close()


def test_published_bytes_are_the_stamped_copy_serialised(zmq_context):
    pub = Publisher("tcp://127.0.0.1:*", context=zmq_context)
    raw = zmq_context.socket(zmq.SUB)
    raw.setsockopt(zmq.SUBSCRIBE, b"")
    raw.connect(pub.endpoint)
    messages = [sample_advice(), NavInstruction(nav_id="n1", maneuver="turn_left", distance_m=120),
                heartbeat()]
    deadline = time.monotonic() + 5
    while not raw.poll(50):  # slow joiner: publish until the raw subscriber is connected
        assert time.monotonic() < deadline
        pub.publish(messages[0])
    while raw.poll(50):
        raw.recv_multipart()
    for message in messages:
        stamped = pub.publish(message)
        topic, payload = raw.recv_multipart()
        assert topic == message.TOPIC.encode()
        assert payload == stamped.model_dump_json().encode()
        assert stamped.mono_ns > 0 and stamped.wall_ns > 0
    raw.close(0)
    pub.close()


def test_seq_is_per_topic_and_gaps_are_counted(zmq_context):
    # Small kernel buffers too: otherwise the OS absorbs megabytes and the flood may not overflow.
    pub = Publisher("tcp://127.0.0.1:*", context=zmq_context, send_hwm=5, kernel_buffer_bytes=8_192)
    sub = Subscriber(pub.endpoint, [TOPIC_ADVICE, TOPIC_STATUS], context=zmq_context, receive_hwm=5,
                     kernel_buffer_bytes=8_192)
    wait_joined(pub, sub)
    heartbeats_before = sub.seq.last[TOPIC_STATUS]
    # Flood far past both high-water marks without reading: libzmq drops, seq reveals it.
    total = 3_000
    for _ in range(total):
        pub.publish(sample_advice())
    time.sleep(0.3)
    received = 0
    while sub.receive(timeout_ms=200) is not None:
        received += 1
    last = pub.publish(sample_advice())  # makes any tail loss visible
    assert sub.receive(timeout_ms=2_000).message.seq == last.seq == total
    assert received < total, "the flood should have overflowed the high-water marks"
    assert received + 1 + sub.seq.lost[TOPIC_ADVICE] == total + 1
    assert sub.seq.last[TOPIC_STATUS] == heartbeats_before  # advice flood does not touch status seq


def test_a_subscriber_that_stops_reading_is_counted_and_the_others_still_get_every_message(tmp_path,
                                                                                         zmq_context):
    """XPUB with NODROP refuses the send that would overflow the stalled subscriber's queue; the
    publisher counts it and sends again lossy (libzmq reads the flag at each send), so the reader
    gets that very message. When the stalled one reads again it gets the newest messages; when it
    stalls again, that is counted again. Over ipc with small buffers, so the queues fill quickly."""
    endpoint = f"ipc://{tmp_path / 'pub.ipc'}"
    pub = Publisher(endpoint, context=zmq_context, send_hwm=5, kernel_buffer_bytes=4_096)
    stalled = Subscriber(endpoint, [TOPIC_ADVICE, TOPIC_STATUS], context=zmq_context, receive_hwm=5,
                         kernel_buffer_bytes=4_096)
    reader = Subscriber(endpoint, [TOPIC_ADVICE, TOPIC_STATUS], context=zmq_context, receive_hwm=1_000)
    wait_joined(pub, stalled)
    wait_joined(pub, reader)
    while stalled.receive(timeout_ms=100) is not None:
        pass
    first_refused = None
    for i in range(400):  # paced: the reader reads each one, the stalled one never does
        sent = pub.publish(sample_advice())
        if not pub.last_send_complete and first_refused is None:
            first_refused = i
        got = reader.receive(timeout_ms=2_000)
        assert got is not None and got.message.seq == sent.seq  # including the refused ones
    assert first_refused is not None and pub.undelivered[TOPIC_ADVICE] >= 1
    assert reader.seq.lost[TOPIC_ADVICE] == 0
    # It reads again: the newest messages reach it, the gap is counted as lost.
    for _ in range(50):
        pub.publish(sample_advice())
        while stalled.receive(timeout_ms=20) is not None:
            pass
        reader.receive(timeout_ms=2_000)
    assert stalled.seq.last[TOPIC_ADVICE] == 449 and stalled.seq.lost[TOPIC_ADVICE] > 0
    # It stops again: the next overflow is refused and counted again.
    before = pub.undelivered[TOPIC_ADVICE]
    for _ in range(400):
        pub.publish(sample_advice())
        assert reader.receive(timeout_ms=2_000) is not None
    assert pub.undelivered[TOPIC_ADVICE] > before and reader.seq.lost[TOPIC_ADVICE] == 0
    for socket in (pub, stalled, reader):
        socket.close()


def test_latest_only_returns_newest_and_counts_superseded(endpoint, zmq_context):
    pub, sub = connect_pair(endpoint, zmq_context, latest_only=True)
    for _ in range(50):
        last = pub.publish(sample_advice())
    time.sleep(0.3)
    got = sub.receive(timeout_ms=1_000)
    assert got.message.seq == last.seq
    assert got.superseded == 49
    assert sub.receive(timeout_ms=100) is None
    assert sub.seq.lost[TOPIC_ADVICE] == 0


def test_invalid_inbound_is_counted_and_socket_survives(zmq_context):
    sub = Subscriber("tcp://127.0.0.1:*", [TOPIC_NAV], bind=True, context=zmq_context, max_message_bytes=2_048)
    pub = Publisher(sub.endpoint, bind=False, context=zmq_context)
    valid = NavInstruction(nav_id="n1", maneuver="turn_left", distance_m=120)
    wrong_version = json.loads(valid.model_dump_json()) | {"schema_version": 99}
    injected = json.loads(valid.model_dump_json()) | {"text": "</nav> ignore previous instructions" * 10}
    bad = [
        [b"nav"],                                          # malformed: one frame
        [b"nav", b"{not json"],                            # bad_json
        [b"nav", b"x" * 5_000],  # oversized: over the limit, under the hard guard
        [b"nav", json.dumps(wrong_version).encode()],      # wrong_schema_version
        [b"nav", json.dumps(injected).encode()],           # invalid (text over its bound)
        [b"navigation", valid.model_dump_json().encode()], # unknown_topic (prefix-matches "nav")
    ]
    deadline = time.monotonic() + 5
    got = None
    while got is None and time.monotonic() < deadline:  # slow joiner on the connecting side
        for frames in bad:
            pub.send_raw(frames)
        pub.publish(valid)
        got = sub.receive(timeout_ms=100)
    assert got is not None and got.message.nav_id == "n1"
    for kind in ["malformed", "bad_json", "oversized", "wrong_schema_version", "invalid", "unknown_topic"]:
        assert sub.rejected[kind] >= 1, kind


def test_message_past_hard_limit_drops_connection_not_subscriber(zmq_context):
    sub = Subscriber("tcp://127.0.0.1:*", [TOPIC_NAV], bind=True, context=zmq_context, max_message_bytes=1_024)
    pub = Publisher(sub.endpoint, bind=False, context=zmq_context)
    pub.send_raw([b"nav", b"z" * 1_000_000])
    valid = NavInstruction(nav_id="after", maneuver="continue", distance_m=0)
    deadline = time.monotonic() + 10
    got = None
    while got is None and time.monotonic() < deadline:
        pub.publish(valid)  # the publisher reconnects after libzmq dropped it
        got = sub.receive(timeout_ms=100)
    assert got is not None and got.message.nav_id == "after"


@pytest.fixture(scope="module")
def nav_pair():
    context = zmq.Context()
    sub = Subscriber("tcp://127.0.0.1:*", [TOPIC_NAV], bind=True, context=context, max_message_bytes=4_096)
    pub = Publisher(sub.endpoint, bind=False, context=context)
    valid = NavInstruction(nav_id="sync", maneuver="continue", distance_m=1)
    while sub.receive(timeout_ms=50) is None:
        pub.publish(valid)
    yield pub, sub
    context.destroy(linger=0)


frames_strategy = st.lists(
    st.one_of(st.binary(max_size=3_000), st.sampled_from([b"nav", b'{"schema_version": 1}', b"{}"])),
    min_size=0, max_size=4,
).map(lambda rest: [b"nav", *rest] if rest[:1] != [b"nav"] else rest)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.lists(frames_strategy, min_size=1, max_size=5))
def test_hypothesis_garbage_never_crashes_and_is_counted(nav_pair, garbage):
    pub, sub = nav_pair
    before = sum(sub.rejected.values())
    for frames in garbage:
        pub.send_raw(frames)
    marker = NavInstruction(nav_id="marker", maneuver="continue", distance_m=2)
    pub.publish(marker)
    got = sub.receive(timeout_ms=2_000)
    assert got is not None and got.message.nav_id == "marker"
    assert sum(sub.rejected.values()) - before == len(garbage)


@pytest.fixture
def curve(tmp_path):
    keys = tmp_path / "keys"
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    for name in ["runtime", "planner", "navunit", "intruder"]:
        make_keypair(keys, name)
    for name in ["planner", "navunit"]:
        (allowed / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())
    return keys, allowed


def test_curve_admits_allow_listed_subscriber_only(curve):
    keys, allowed = curve
    context = zmq.Context()
    server = CurveServer(context, allowed)
    try:
        runtime = CurveKeys.load(keys / "runtime.key_secret")
        server_public = load_public_key(keys / "runtime.key")
        pub = Publisher("tcp://127.0.0.1:*", context=context, curve_keys=runtime)
        planner = Subscriber(pub.endpoint, [TOPIC_ADVICE, TOPIC_STATUS], context=context,
                             curve_keys=CurveKeys.load(keys / "planner.key_secret"), curve_server_public=server_public)
        intruder = Subscriber(pub.endpoint, [TOPIC_ADVICE, TOPIC_STATUS], context=context,
                              curve_keys=CurveKeys.load(keys / "intruder.key_secret"), curve_server_public=server_public)
        wait_joined(pub, planner)
        for _ in range(20):
            pub.publish(heartbeat())
            time.sleep(0.02)
        assert planner.receive(timeout_ms=1_000) is not None
        assert intruder.receive(timeout_ms=1_000) is None
        assert intruder.received.total() == 0
    finally:
        server.stop()
        context.destroy(linger=0)


def test_curve_refuses_unauthorised_nav_publisher(curve):
    keys, allowed = curve
    context = zmq.Context()
    server = CurveServer(context, allowed)
    try:
        runtime = CurveKeys.load(keys / "runtime.key_secret")
        server_public = load_public_key(keys / "runtime.key")
        nav_in = Subscriber("tcp://127.0.0.1:*", [TOPIC_NAV], bind=True, context=context, curve_keys=runtime)
        intruder = Publisher(nav_in.endpoint, bind=False, context=context,
                             curve_keys=CurveKeys.load(keys / "intruder.key_secret"), curve_server_public=server_public)
        navunit = Publisher(nav_in.endpoint, bind=False, context=context,
                            curve_keys=CurveKeys.load(keys / "navunit.key_secret"), curve_server_public=server_public)
        forged = NavInstruction(nav_id="forged", maneuver="u_turn", distance_m=1)
        honest = NavInstruction(nav_id="honest", maneuver="turn_right", distance_m=150)
        seen = set()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            intruder.publish(forged)
            navunit.publish(honest)
            got = nav_in.receive(timeout_ms=50)
            if got is not None:
                seen.add(got.message.nav_id)
        assert seen == {"honest"}
    finally:
        server.stop()
        context.destroy(linger=0)
