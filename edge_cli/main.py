"""The `edge` command: composes every package's subcommands (each module exposes
``register(subparsers)``). This is the one place that may import all packages; heavy imports
(torch, onnx, llama_cpp) happen inside the command functions, so `edge --help` is fast."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from edge import builtin_bundle
from edge.bench import cli as bench_cli
from edge.commandline import add_log_level, quiet_native_video_logs, run_command
from edge.manifest import BundleError

# Order is the order `edge --help` lists them; None marks where `edge bench` goes.
COMMAND_MODULES = (
    "edge.commands.run",
    "edge.commands.replay",
    "edge.commands.capture",
    "edge.commands.listen",
    "edge.commands.config",
    "edge.commands.schema",
    "edge.commands.keys",
    "edge.commands.doctor",
    "edge.commands.health",
    "calib.cli",
    None,
    "export.cli",
    "sim.cli",
    "sim.replay_cli",
    "train.cli",
    "fleet.cli",
)
# Benches whose baseline needs the workstation packages (transformers, onnx).
WORKSTATION_BENCHES = ("export.bench_preprocess", "export.bench_llama_cpp_vision")


def build_default_bundle() -> Path:
    """The built-in trained model's bundle (built on first use from models/default, then cached)."""
    try:
        from train.default import ensure_default_bundle
    except ImportError as exc:
        raise BundleError(
            f"no bundle given (--bundle or `bundle` in the config), and the built-in one cannot be built "
            f"here: {exc.name} is not installed (install the [export] extra, or copy a bundle over)"
        ) from None
    return ensure_default_bundle()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description="Edge runtime for in-vehicle scene understanding (Qwen3-VL-MoE on ONNX Runtime/TensorRT + llama.cpp).",
    )
    add_log_level(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        if module_name is None:
            bench_cli.register(commands, more=WORKSTATION_BENCHES)
        else:
            importlib.import_module(module_name).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_native_video_logs()
    builtin_bundle.set_builder(build_default_bundle)
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
