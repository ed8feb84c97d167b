"""`edge doctor [--bundle B] [--json]`: what this machine offers, and whether a bundle can run on it.

Exit status: 0 when there is no bundle to judge or the bundle can run here; 1 when it cannot (the
reasons are printed, and listed under ``bundle.reasons`` in the JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.commands.config import add_config_arguments

EXIT_CANNOT_RUN = 1


def _main(args: argparse.Namespace) -> int:
    from edge import doctor
    from edge.config import load_config

    # The decoder settings decide where the GGUF goes (n_gpu_layers) and the KV cache size (n_ctx).
    config = load_config(args.config, args.overrides)
    bundle = args.bundle or config.bundle
    machine = doctor.probe_machine()
    report = None
    if bundle is not None:
        report = doctor.check_bundle(
            bundle,
            machine,
            verify_hashes=not args.skip_hashes,
            n_ctx=config.decoder.n_ctx,
            n_gpu_layers=config.decoder.n_gpu_layers,
            quant=config.decoder.quant,
            vision_backend=config.vision.backend,
            vision_precision=config.vision.precision,
        )
        if args.load and report.runnable:
            # The hashes were just checked (or the user chose to skip them): do not hash 20 GB twice.
            doctor.load_and_measure(report, config, verify_hashes=False)
    if args.json:
        print(
            json.dumps(
                {"machine": machine.to_dict(), "bundle": report.to_dict() if report else None}, indent=2
            )
        )
    else:
        print("\n".join(doctor.format_machine(machine)))
        if report is not None:
            print("\n".join(doctor.format_bundle(report)))
    return EXIT_CANNOT_RUN if report is not None and not report.runnable else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="report GPU/TensorRT/ONNX Runtime/llama.cpp/camera availability; check a bundle fits here",
    )
    parser.add_argument("--bundle", type=Path, help="bundle folder to check (default: the config's bundle)")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.add_argument(
        "--skip-hashes",
        action="store_true",
        help="do not verify the sha256 of every file (minutes for a 20 GB GGUF)",
    )
    parser.add_argument(
        "--load",
        action="store_true",
        help="also load the bundle with the runtime's loaders (vision backend + one clip, GGUF + context) "
        "and report the time and memory each step takes",
    )
    add_config_arguments(parser)
    parser.set_defaults(func=_main)
