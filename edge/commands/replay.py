"""`edge replay LOG.mcap [LOG2.mcap | DIR ...] --bundle B --out DIR`: process replay of a drive log.

The recorded frames and navigation go through the loop again with any bundle, in lock-step; the
report compares the new advice with the recorded advice cycle by cycle (edge/drivelog/replay.py).
A log that is not MCAP or has channels of another schema is refused with the reason (exit 2); a
damaged one is replayed up to the damage, which the report and stderr name."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.commands.config import add_config_arguments
from edge.config import build_config
from edge.drivelog.reader import DriveLogError, read_drive_log
from edge.manifest import BundleError

# The replay runs where the log is read: no camera, no recording of its own, loopback sockets.
REPLAY_SETS = (
    "camera.source=''",
    "bus.publish_endpoint='tcp://127.0.0.1:*'",
    "bus.nav_endpoint='tcp://127.0.0.1:*'",
    "bus.curve.enabled=false",
    "live.enabled=false",
)


def replay_config_for(log_metadata: dict[str, str], bundle: Path, overrides: list[str], config_file: Path | None):
    """The recorded configuration (decoder, budgets, camera profile as the drive ran), with the
    replay's bundle and sockets; a --config file replaces the recorded one."""
    from edge.config import load_config

    sets = [*REPLAY_SETS, f"bundle={str(bundle)!r}", *overrides]
    if config_file is not None:
        config = load_config(config_file, sets)
    else:
        data = json.loads(log_metadata.get("config", "{}"))
        data.get("bus", {}).pop("curve", None)  # keys of the recording machine
        config = build_config(data, sets)
    # No recording, capture or audit of its own (paths of the recording machine are not used).
    config.record.dir = None
    config.capture.dir = None
    config.audit.path = None
    return config


def _main(args: argparse.Namespace) -> int:
    from edge.drivelog.replay import replay_log
    from edge.drivelog.replay_report import write_replay_report

    try:
        log = read_drive_log(args.logs)
    except DriveLogError as exc:
        print(f"edge replay: refused: {exc}", file=sys.stderr)
        return 2
    for damage in log.damage:
        print(f"edge replay: damaged log, replaying up to the damage: {damage}", file=sys.stderr)
    bundle = args.bundle
    if bundle is None:
        from edge.builtin_bundle import builtin_bundle

        bundle = builtin_bundle()
    config = replay_config_for(log.metadata, bundle, args.overrides, args.config)

    def show(compared) -> None:
        if not args.quiet and (compared.replayed is None or not compared.same_advice):
            row = compared.as_dict()
            print(f"cycle {row['cycle']}: recorded {row['recorded']} replayed {row['replayed']} {row['reason']}")

    try:
        result = replay_log(log, config, on_cycle=show)
    except BundleError as exc:
        print(f"edge replay: {exc}", file=sys.stderr)
        return 2
    report = write_replay_report(args.out, log, result, result.bundle_sha256)
    agreement = result.agreement
    in_time = result.agreement_in_time
    print(f"{len(result.replayed)} of {len(result.cycles)} cycles replayed in {result.wall_s:.1f} s; advice agreement "
          f"{'n/a' if agreement is None else f'{agreement:.1%}'} (cycles recorded in time: "
          f"{'n/a' if in_time is None else f'{in_time:.1%}'}); {len(result.changed)} changed, "
          f"{len(result.skipped)} skipped", file=sys.stderr)
    print(f"report: {report}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("replay", help="process replay: a recorded drive log through a bundle, compared")
    parser.add_argument("logs", nargs="+", type=Path, help="MCAP files or folders of them (replayed in name order)")
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the built-in trained model)")
    parser.add_argument("--out", required=True, type=Path, help="report folder")
    parser.add_argument("--quiet", action="store_true", help="do not print changed cycles")
    add_config_arguments(parser)
    parser.set_defaults(func=_main)
