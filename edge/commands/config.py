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


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="validate a configuration and print it as JSON")
    add_config_arguments(parser)
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    print(dump_config(load_config(args.config, args.overrides)))
    return 0
