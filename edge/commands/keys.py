"""`edge keys --out DIR --name NAME`: a CURVE key pair for the runtime, a planner or a nav unit."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.bus import make_keypair


def _main(args: argparse.Namespace) -> int:
    for name in args.name:
        public, secret = make_keypair(args.out, name)
        print(f"{name}: public {public} (share it), secret {secret} (keep it, mode 600)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="make CURVE key pairs (public *.key, secret *.key_secret)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--name", nargs="+", default=["runtime"], help="one key pair per name")
    parser.set_defaults(func=_main)
