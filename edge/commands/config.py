"""`edge config [--config FILE] [--set key=value ...]`: validate and print the effective configuration."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.config import dump_config, load_config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The --config/--set pair every command that reads the runtime configuration takes."""
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set budgets.total_ms=800 (repeatable)",
    )


def add_drivelog_arguments(parser: argparse.ArgumentParser) -> None:
    """--record/--live/--capture: shorthands for the record, live and capture config sections."""
    parser.add_argument("--record", type=Path, metavar="DIR", help="write MCAP drive logs here (config: record.dir)")
    parser.add_argument("--live", action="store_true", help="serve a Foxglove live view (config: live.enabled)")
    parser.add_argument("--live-port", type=int, help="live view port on live.host (config: live.port)")
    parser.add_argument("--capture", type=Path, metavar="DIR",
                        help="keep bad-case windows here as MCAP segments (config: capture.dir)")


def drivelog_overrides(args: argparse.Namespace) -> list[str]:
    sets = []
    if args.record:
        sets.append(f"record.dir={str(args.record)!r}")
    if args.live:
        sets.append("live.enabled=true")
    if args.live_port is not None:
        sets.append(f"live.port={args.live_port}")
    if args.capture:
        sets.append(f"capture.dir={str(args.capture)!r}")
    return sets


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="validate a configuration and print it as JSON")
    add_config_arguments(parser)
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    print(dump_config(load_config(args.config, args.overrides)))
    return 0
