"""`edge bench NAME --out FILE.json`: benchmarks that measure a baseline and ours in the same run."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable

BENCH_MODULES = (
    "edge.bench.bus",
    "edge.bench.encoder",
    "edge.bench.decode",
    "edge.bench.loop",
    "edge.bench.contention",
    "edge.bench.fuzz",
    "edge.bench.soak",
)


def register_benches(benches: argparse._SubParsersAction, more: Iterable[str] = ()) -> None:
    """The runtime's benches, then `more` (modules outside the runtime, e.g. baselines that need
    the workstation packages), each exposing ``register(benches)``."""
    for module_name in (*BENCH_MODULES, *more):
        importlib.import_module(module_name).register(benches)


def register(subparsers: argparse._SubParsersAction, more: Iterable[str] = ()) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks (JSON with medians and ratios vs a baseline)")
    register_benches(parser.add_subparsers(dest="bench", metavar="NAME", required=True), more)
