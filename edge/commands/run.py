"""`edge run [--bundle B] --camera SRC [--config FILE] [--set k=v] [--max-cycles N]`: the runtime.

Without a bundle (flag or config) it runs the built-in trained model, as `edge sim` does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.builtin_bundle import builtin_bundle
from edge.commands.config import add_config_arguments, add_drivelog_arguments, drivelog_overrides
from edge.config import load_config
from edge.preflight import check_runtime_inputs
from edge.runtime import capture_on_signal, running_loop, stop_on_signals


def _main(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.bundle:
        overrides.append(f"bundle={str(args.bundle)!r}")
    if args.camera:
        overrides.append(f"camera.source={args.camera!r}")
    if args.publish:
        overrides.append(f"bus.publish_endpoint={args.publish!r}")
    if args.nav:
        overrides.append(f"bus.nav_endpoint={args.nav!r}")
    if args.audit:
        overrides.append(f"audit.path={str(args.audit)!r}")
    config = load_config(args.config, overrides + drivelog_overrides(args))
    check_runtime_inputs(config)  # a wrong camera, endpoint or bundle folder: refused before any model loads
    if config.bundle is None:
        config.bundle = builtin_bundle()
        print(f"edge run: no bundle given, using the built-in one: {config.bundle}", file=sys.stderr, flush=True)
    with running_loop(config) as loop, stop_on_signals(loop), capture_on_signal(loop):
        print(
            f"edge run: {loop.parts.vision.name} ({loop.parts.vision_reason}); decoder "
            f"{loop.parts.decoder.artifact.quant}; publishing on {loop.parts.publisher.endpoint}, "
            f"nav on {loop.parts.nav_in.endpoint if loop.parts.nav_in else '-'}",
            file=sys.stderr, flush=True,
        )
        live = loop.parts.tap.live_view() if loop.parts.tap is not None else None
        if live is not None:
            print(f"edge run: live view on {live.url} (Foxglove: open connection, Foxglove WebSocket; "
                  "layout docs/foxglove-layout.json)", file=sys.stderr, flush=True)
        cycles = loop.run(max_cycles=args.max_cycles)
    print(f"edge run: {cycles} cycles", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the runtime: camera -> model -> advice over ZeroMQ")
    parser.add_argument("--bundle", type=Path, help="model bundle folder (config: bundle; default: the built-in trained model)")
    parser.add_argument("--camera", help="V4L2 index/device, gst:PIPELINE, rtsp://..., or a video file")
    parser.add_argument("--publish", help="endpoint to bind for advice/status (config: bus.publish_endpoint)")
    parser.add_argument("--nav", help="endpoint to bind for nav input (config: bus.nav_endpoint)")
    parser.add_argument("--audit", type=Path, help="JSONL audit log path (config: audit.path)")
    parser.add_argument("--max-cycles", type=int, help="stop after this many advice messages")
    add_drivelog_arguments(parser)
    add_config_arguments(parser)
    parser.set_defaults(func=_main)
