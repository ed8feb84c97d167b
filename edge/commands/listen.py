"""`edge listen ENDPOINT [--json] [--min-confidence P]`: a planner's view of the advice stream, one line per
advice; advice under the minimum confidence is marked advisory."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edge.bus import CurveKeys, load_public_key
from edge.client import PlannerClient, format_advice_line


def _main(args: argparse.Namespace) -> int:
    curve_keys = CurveKeys.load(args.client_key) if args.client_key else None
    server_public = load_public_key(args.server_key) if args.server_key else None
    if (curve_keys is None) != (server_public is None):
        print("edge listen: CURVE needs both --client-key and --server-key", file=sys.stderr)
        return 2
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        print(f"edge listen: --min-confidence must be within 0 and 1, got {args.min_confidence}", file=sys.stderr)
        return 2
    received = 0
    deadline = time.monotonic() + args.timeout_s if args.timeout_s else None
    with PlannerClient(args.endpoint, curve_keys=curve_keys, curve_server_public=server_public,
                       min_confidence=args.min_confidence) as client:
        # Subscribed from here on (ZeroMQ connects, and reconnects, in the background).
        print(f"# listening on {args.endpoint}", file=sys.stderr, flush=True)
        while args.count is None or received < args.count:
            remaining_ms = 1_000.0 if deadline is None else (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                break
            event = client.next_advice(timeout_ms=min(remaining_ms, 1_000.0))
            if event is None:
                continue
            received += 1
            if args.json:
                print(event.advice.model_dump_json(), flush=True)
            else:
                print(format_advice_line(event), flush=True)
        liveness = client.liveness()
        print(
            f"# received {received} advice, lost {client.counters.lost}, expired {client.counters.expired}, "
            f"advisory {client.counters.advisory}, rejected {client.rejected or 0}; runtime alive={liveness.alive} rate_ok={liveness.rate_ok} "
            f"valid={liveness.valid}",
            file=sys.stderr,
        )
    return 0 if args.count is None or received >= args.count else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("listen", help="subscribe to the runtime's advice like a planner would")
    parser.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5555")
    parser.add_argument("--json", action="store_true", help="print each advice as JSON")
    parser.add_argument("--count", type=int, help="exit after this many advice messages (exit 1 if fewer came)")
    parser.add_argument("--timeout-s", type=float, help="give up after this many seconds")
    parser.add_argument("--min-confidence", type=float, default=None, metavar="P",
                        help="mark advice whose confidence is under P (0-1) as advisory only: shown, not to be "
                             "acted on (advice from a runtime that sends no confidence counts as under it)")
    parser.add_argument("--client-key", type=Path, help="this planner's CURVE *.key_secret")
    parser.add_argument("--server-key", type=Path, help="the runtime's CURVE public *.key")
    parser.set_defaults(func=_main)
