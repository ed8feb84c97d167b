"""The `edge` command. Each subcommand lives in its own module exposing ``register(subparsers)``;
heavy imports (torch, onnx, llama_cpp) happen inside the command functions, so `edge --help`
is fast and the device never needs the workstation's packages."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from edge.config import ConfigError
from edge.errors import EdgeError

# Order is the order `edge --help` lists them.
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
    "edge.bench.cli",
    "export.cli",
    "sim.cli",
    "sim.replay_cli",
    "export.train.cli",
    "fleet.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description="Edge runtime for in-vehicle scene understanding (Qwen3-VL-MoE on ONNX Runtime/TensorRT + llama.cpp).",
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(commands)
    return parser


def quiet_native_video_logs() -> None:
    """OpenCV and FFmpeg print their own lines for every corrupt packet or missing device; the
    command already says what went wrong in one line. Set before cv2 loads; the user's values win."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def main(argv: list[str] | None = None) -> int:
    quiet_native_video_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"edge {args.command}: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except EdgeError as exc:  # bad input: one line naming what and why, never a traceback
        print(f"edge {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
