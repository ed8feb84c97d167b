"""Running a parsed command the same way everywhere: logging, quiet native video logs, and one
line on stderr (exit status 2) for any `EdgeError` instead of a traceback; and the options that
several commands declare alike."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from edge.config import ConfigError
from edge.errors import EdgeError


def quiet_native_video_logs() -> None:
    """OpenCV and FFmpeg print their own lines for every corrupt packet or missing device; the
    command already says what went wrong in one line. Set before cv2 loads; the user's values win."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def add_command(subparsers, name: str, func: Callable[[argparse.Namespace], int | None],
                **kwargs) -> argparse.ArgumentParser:
    """Add subcommand `name` that runs `func(args)`. An `EdgeError` it raises is printed under the
    subcommand's full name (`edge export trt: ...`), so the handler needs no try block of its own."""
    parser = subparsers.add_parser(name, **kwargs)
    parser.set_defaults(func=func, command_name=parser.prog)
    return parser


def add_command_group(subparsers, name: str, *, dest: str, metavar: str = "COMMAND", **kwargs):
    """Add `name` as a command of subcommands (`edge export tiny`); returns its subparsers. One of
    them is required, and `dest` names the one chosen."""
    parser = subparsers.add_parser(name, **kwargs)
    return parser.add_subparsers(dest=dest, metavar=metavar, required=True)


def add_bundle_option(parser: argparse.ArgumentParser, *, required: bool = False, help: str | None = None) -> None:
    """`--bundle`: a bundle folder, required or else the built-in default bundle."""
    if help is None:
        help = "bundle folder (manifest.json)" if required else "bundle folder (default: the built-in default bundle)"
    parser.add_argument("--bundle", type=Path, required=required, default=None, help=help)


def add_precision_filter(parser: argparse.ArgumentParser, help: str) -> None:
    """`--precision ENCODER+DECODER`, repeatable: run only these combinations of the bundle."""
    parser.add_argument("--precision", action="append", metavar="ENCODER+DECODER", help=help)


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen subcommand's `func`; the parser names it in `args.command`.
    Call `quiet_native_video_logs()` before building the parser (its modules may load cv2)."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    name = getattr(args, "command_name", None) or f"edge {args.command}"  # add_command's full name
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"{name}: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except EdgeError as exc:  # bad input: one line naming what and why, never a traceback
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
