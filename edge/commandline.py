"""Running a parsed command the same way everywhere: logging, quiet native video logs, and one
line on stderr (exit status 2) for any `EdgeError` instead of a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from edge.config import ConfigError
from edge.errors import EdgeError


def quiet_native_video_logs() -> None:
    """OpenCV and FFmpeg print their own lines for every corrupt packet or missing device; the
    command already says what went wrong in one line. Set before cv2 loads; the user's values win."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen subcommand's `func`; the parser names it in `args.command`.
    Call `quiet_native_video_logs()` before building the parser (its modules may load cv2)."""
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
