"""`python -m edge.bench NAME ...`: the runtime's own benchmarks without the rest of the `edge`
command (`edge bench contention` starts its measured runtimes this way)."""

from __future__ import annotations

import argparse
import sys

from edge.bench.cli import register_benches
from edge.commandline import add_log_level, quiet_native_video_logs, run_command


def main(argv: list[str] | None = None) -> int:
    quiet_native_video_logs()
    parser = argparse.ArgumentParser(prog="edge bench")
    add_log_level(parser)
    parser.set_defaults(command="bench")
    register_benches(parser.add_subparsers(dest="bench", metavar="NAME", required=True))
    return run_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
