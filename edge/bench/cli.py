"""`edge bench NAME --out FILE.json`: benchmarks that measure a baseline and ours in the same run."""

from __future__ import annotations

import argparse
import importlib

BENCH_MODULES = (
    "edge.bench.bus",
    "edge.bench.preprocess",
    "edge.bench.encoder",
    "edge.bench.decode",
    "edge.bench.loop",
    "edge.bench.contention",
    "edge.bench.fuzz",
    "edge.bench.soak",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks (JSON with medians and ratios vs a baseline)")
    benches = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for module_name in BENCH_MODULES:
        importlib.import_module(module_name).register(benches)
