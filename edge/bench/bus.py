"""`edge bench bus`: publish -> receive latency of realistic advice messages.

Ours (``edge.bus`` Publisher/Subscriber: stamping, pydantic serialisation, validation) against a
bare pyzmq send/recv of the same serialised bytes, over tcp and ipc loopback, in one run.

The sender is a separate process so that its work does not hold the receiver's GIL. Latency is
receipt time minus send time on CLOCK_MONOTONIC, which is system-wide on Linux: ours reads the
send time from the message's own ``mono_ns`` stamp (taken as the bytes go to the socket) and the
receipt time after validation, so validation counts; the baseline carries the send time in a third
8-byte frame and parses nothing.

The variants run interleaved in rounds (baseline and ours alternate which goes first), and each
variant's samples are pooled over the rounds: on a shared 2-core box the background drifts over
a minute, and a sequential A-then-B run would charge that drift to whichever came second.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import Protocol

import zmq

from edge.benchreport import Report, Stats, make_report, print_ratios, ratio, write_report
from edge.bus import Publisher, Subscriber
from edge.messages import (
    TOPIC_ADVICE,
    ActionAdvice,
    Advice,
    FrameRef,
    Hazard,
    MetaAction,
    StageTimings,
    Urgency,
    Verdict,
)


class EventLike(Protocol):
    """A multiprocessing event, as the sender processes see it."""

    def wait(self, timeout: float | None = None) -> bool: ...

# 1 kHz: well above an advice stream's rate, and slow enough that no backlog builds on a loaded
# 2-core box (a backlog would measure queueing, not the bus).
SEND_INTERVAL_S = 0.001
SLOW_JOINER_S = 0.3  # PUB/SUB needs the subscription to propagate before the first send


def sample_advice() -> ActionAdvice:
    """A realistic advice message: four frames, full stage timings, rationale near its bound."""
    now_mono, now_wall = time.monotonic_ns(), time.time_ns()
    return ActionAdvice(
        cycle=1234,
        verdict=Verdict.OK,
        advice=Advice(
            action=MetaAction.DECELERATE,
            urgency=Urgency.HIGH,
            lateral=MetaAction.KEEP_LANE,
            hazards=[Hazard.CYCLIST, Hazard.VEHICLE],
            rationale="cyclist entering the right lane ahead; keep right for the exit in 300 m",
        ),
        frames=[
            FrameRef(frame_id=4000 + i * 15, capture_mono_ns=now_mono + i, capture_wall_ns=now_wall + i)
            for i in range(4)
        ],
        valid_until_mono_ns=now_mono + 1_500_000_000,
        valid_until_wall_ns=now_wall + 1_500_000_000,
        nav_id="route-17:step-4",
        stages=StageTimings(
            capture_age_ms=12.5, preprocess_ms=3.1, encode_ms=88.0, prefill_ms=140.2,
            decode_ms=410.7, publish_ms=0.1, total_ms=655.0,
        ),
        generated_tokens=42,
        bundle_sha256="ab" * 32,
    )


def _pace(next_send: float) -> float:
    """Sleep (never spin: a spinning sender steals the receiver's core) until next_send."""
    delay = next_send - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    return max(next_send + SEND_INTERVAL_S, time.perf_counter())


def _send_ours(endpoint: str, count: int, ready: EventLike) -> None:
    advice = sample_advice()
    with Publisher(endpoint, bind=False, context=zmq.Context(), send_hwm=count + 10) as pub:
        ready.wait()
        time.sleep(SLOW_JOINER_S)
        next_send = time.perf_counter()
        for _ in range(count):
            next_send = _pace(next_send)
            pub.publish(advice)
        time.sleep(0.2)


def _send_raw(endpoint: str, count: int, ready: EventLike) -> None:
    advice = sample_advice()
    payload = advice.__pydantic_serializer__.to_json(advice)
    topic = TOPIC_ADVICE.encode()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, count + 10)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(endpoint)
    ready.wait()
    time.sleep(SLOW_JOINER_S)
    next_send = time.perf_counter()
    for _ in range(count):
        next_send = _pace(next_send)
        sock.send_multipart([topic, payload, struct.pack("<q", time.monotonic_ns())])
    time.sleep(0.2)
    sock.close()
    ctx.term()


def _bind_endpoint(transport: str, workdir: Path) -> str:
    if transport == "tcp":
        return "tcp://127.0.0.1:*"
    return f"ipc://{workdir / 'bench-bus.ipc'}"


def _receive_ours(transport: str, count: int, workdir: Path) -> list[float]:
    ctx = zmq.Context()
    with Subscriber(_bind_endpoint(transport, workdir), [TOPIC_ADVICE], bind=True, context=ctx,
                    receive_hwm=count + 10) as sub:
        ready = mp.Event()
        sender = mp.Process(target=_send_ours, args=(sub.endpoint, count, ready))
        sender.start()
        ready.set()
        latencies: list[float] = []
        while len(latencies) < count:
            got = sub.receive(timeout_ms=3_000)
            if got is None:
                break
            latencies.append((got.recv_mono_ns - got.message.mono_ns) / 1e6)
        sender.join()
    ctx.term()
    return latencies


def _receive_raw(transport: str, count: int, workdir: Path) -> list[float]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, count + 10)
    sock.setsockopt(zmq.SUBSCRIBE, TOPIC_ADVICE.encode())
    sock.setsockopt(zmq.RCVTIMEO, 3_000)
    sock.bind(_bind_endpoint(transport, workdir))
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    ready = mp.Event()
    sender = mp.Process(target=_send_raw, args=(endpoint, count, ready))
    sender.start()
    ready.set()
    latencies: list[float] = []
    try:
        while len(latencies) < count:
            frames = sock.recv_multipart()
            received = time.monotonic_ns()
            (sent,) = struct.unpack("<q", frames[2])
            latencies.append((received - sent) / 1e6)
    except zmq.Again:
        pass
    sender.join()
    sock.close(0)
    ctx.term()
    return latencies


def run_bus_bench(count: int = 10_000, rounds: int = 5) -> Report:
    rounds = max(1, min(rounds, count))
    per_round = [count // rounds + (i < count % rounds) for i in range(rounds)]
    samples: dict[str, list[float]] = {f"{kind}_{t}": [] for t in ("tcp", "ipc") for kind in ("pyzmq", "ours")}
    with tempfile.TemporaryDirectory(prefix="edge-bench-bus-") as tmp:
        workdir = Path(tmp)
        for index, n in enumerate(per_round):
            for transport in ("tcp", "ipc"):
                variants = [("pyzmq", _receive_raw), ("ours", _receive_ours)]
                for kind, receive in variants if index % 2 == 0 else variants[::-1]:
                    samples[f"{kind}_{transport}"] += receive(transport, n, workdir)
    stats = {name: Stats.from_samples(values) for name, values in samples.items()}
    ratios: dict[str, float | None] = {}
    for transport in ("tcp", "ipc"):
        raw, ours = stats[f"pyzmq_{transport}"], stats[f"ours_{transport}"]
        ratios[f"ours_over_pyzmq_{transport}_p99"] = ratio(ours.p99_ms, raw.p99_ms)
        ratios[f"ours_over_pyzmq_{transport}_p50"] = ratio(ours.p50_ms, raw.p50_ms)
    payload_bytes = len(sample_advice().model_dump_json())
    return make_report(
        "bus", {name: s.as_dict() for name, s in stats.items()}, ratios,
        config={"messages": count, "rounds": rounds, "send_interval_ms": SEND_INTERVAL_S * 1e3,
                "payload_bytes": payload_bytes, "sender": "separate process", "cpu_count": os.cpu_count()},
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bus", help="ZeroMQ advice latency: ours vs bare pyzmq (tcp, ipc)")
    parser.add_argument("--out", required=True, type=Path, help="JSON report path")
    parser.add_argument("--count", type=int, default=10_000, help="messages per variant (>= 10000 for the claim)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the count is split over")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    report = run_bus_bench(args.count, args.rounds)
    path = write_report(args.out, report)
    for name, stats in report["results"].items():
        print(f"{name:<12} p50 {stats['p50_ms']:.3f} ms  p99 {stats['p99_ms']:.3f} ms  max {stats['max_ms']:.3f} ms  n={stats['n']}")
    print_ratios(report["ratios"])
    print(f"wrote {path}")
    return 0
