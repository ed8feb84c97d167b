"""`edge health [--endpoint E] [--timeout-s S]`: is the runtime working, by its own heartbeat?

A container HEALTHCHECK that only asks "is the process alive" misses a runtime that is stuck, has
lost its camera or is still loading. This asks the runtime itself: it subscribes to the ``status``
topic and exits 0 only if a heartbeat arrives within the timeout and says ``running`` or
``degraded`` (the states in which advice flows). Anything else exits 1 with the reason.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edge.commands.config import add_config_arguments

EXIT_UNHEALTHY = 1
# A runtime bound to all interfaces is reached locally through the loopback address.
_WILDCARD_HOSTS = ("*", "0.0.0.0")


def local_endpoint(publish_endpoint: str) -> str:
    """The address a local client connects to for a runtime that binds ``publish_endpoint``."""
    for host in _WILDCARD_HOSTS:
        prefix = f"tcp://{host}:"
        if publish_endpoint.startswith(prefix):
            return "tcp://127.0.0.1:" + publish_endpoint[len(prefix) :]
    return publish_endpoint


def wait_for_status(endpoint: str, timeout_s: float, curve_keys=None, server_public=None):
    """(the first valid status heartbeat within ``timeout_s`` or None, rejected message counts).

    Rejected counts matter when nothing valid came: a runtime of another schema version still
    publishes, and saying so beats a bare "no heartbeat"."""
    from edge.bus import Subscriber
    from edge.messages import TOPIC_STATUS

    deadline = time.monotonic() + timeout_s
    with Subscriber(
        endpoint, [TOPIC_STATUS], curve_keys=curve_keys, curve_server_public=server_public
    ) as subscriber:
        remaining_ms = timeout_s * 1000.0
        while remaining_ms > 0:
            got = subscriber.receive(remaining_ms)
            if got is not None:
                return got.message, dict(subscriber.rejected)
            remaining_ms = (deadline - time.monotonic()) * 1000.0
        return None, dict(subscriber.rejected)


def _main(args: argparse.Namespace) -> int:
    from edge.bus import CurveKeys, load_public_key
    from edge.client import HEALTHY_STATES

    if args.endpoint:
        endpoint = args.endpoint
    else:
        from edge.config import load_config

        endpoint = local_endpoint(load_config(args.config, args.overrides).bus.publish_endpoint)
    if args.timeout_s <= 0:
        print(f"edge health: --timeout-s must be > 0 (got {args.timeout_s:g})", file=sys.stderr)
        return 2
    curve_keys = CurveKeys.load(args.client_key) if args.client_key else None
    server_public = load_public_key(args.server_key) if args.server_key else None
    if (curve_keys is None) != (server_public is None):
        print("edge health: CURVE needs both --client-key and --server-key", file=sys.stderr)
        return 2

    status, rejected = wait_for_status(endpoint, args.timeout_s, curve_keys, server_public)
    if status is None:
        dropped = (
            f" ({sum(rejected.values())} invalid status messages dropped: {rejected})" if rejected else ""
        )
        print(f"unhealthy: no status heartbeat from {endpoint} within {args.timeout_s:g} s{dropped}")
        return EXIT_UNHEALTHY
    summary = (
        f"state={status.state.value} uptime={status.uptime_ms / 1000:.0f}s cycles={status.cycles} "
        f"vision={status.vision_backend or '-'} drop_ratio={status.frame_drop_ratio:.2f}"
    )
    if status.state not in HEALTHY_STATES:
        print(f"unhealthy: {summary}")
        return EXIT_UNHEALTHY
    print(f"healthy: {summary}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "health",
        help="exit 0 only if the runtime's status heartbeat says running/degraded (container HEALTHCHECK)",
    )
    parser.add_argument(
        "--endpoint",
        help="the runtime's publish endpoint (default: bus.publish_endpoint of the configuration, reached locally)",
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=5.0,
        help="how long to wait for a heartbeat (default 5; keep it above the heartbeat interval)",
    )
    parser.add_argument("--client-key", type=Path, help="this client's CURVE *.key_secret")
    parser.add_argument("--server-key", type=Path, help="the runtime's CURVE public *.key")
    add_config_arguments(parser)
    parser.set_defaults(func=_main)
