"""`edge fleet eval` / `edge fleet replay`: `edge eval` over many drives, `edge replay` over many drive
logs, on Ray (local on demand, or a cluster).

    edge fleet eval --scenes scenes/heldout --out fleet.json                 # local Ray, 2 workers
    edge fleet eval --scenes /mnt/drives/a /mnt/drives/b --bundle B --out fleet.json \\
        --address ray://head:10001 --workers 32
    edge fleet replay --logs logs/ --bundle B --out replay.json                # MCAP logs (and plain videos)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.commandline import add_bundle_option, add_command, add_command_group, add_precision_filter


def _cmd_eval(args: argparse.Namespace) -> int:
    from fleet.driver import FleetOptions, run_fleet
    from train.cli import print_eval_figures

    options = FleetOptions(workers=args.workers, threads=args.threads, address=args.address, combos=args.precision,
                           progress=not args.quiet)
    try:
        report = run_fleet(args.bundle, args.scenes, args.out, options)
    except ValueError as exc:  # a precision the bundle lacks; EdgeErrors are printed by the edge command
        print(f"edge fleet eval: {exc}", file=sys.stderr)
        return 2
    fleet = report["fleet"]
    print_eval_figures(report)
    print(f"drives: {fleet['done']} done, {fleet['failed']} failed, {fleet['not_run']} not run of "
          f"{fleet['drives_given']} ({fleet['scenes_per_minute']} per minute on {fleet['workers']} workers)")
    for row in report["drives"]:
        if row["status"] == "failed":
            print(f"  failed {row['drive']}: {row['error']}")
    print(f"report written to {args.out}")
    return 130 if fleet["interrupted"] else 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from fleet.driver import FleetOptions, run_fleet_replay

    options = FleetOptions(workers=args.workers, threads=args.threads, address=args.address, progress=not args.quiet)
    report = run_fleet_replay(args.bundle, args.logs, args.out, options, overrides=args.overrides,
                              with_cycles=args.cycles)  # EdgeErrors (no such path, no logs) are printed by edge.cli
    totals, fleet = report["totals"], report["fleet"]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    print(f"{totals['replayed']} of {totals['cycles']} cycles replayed, {totals['changed']} changed; advice agreement "
          f"{pct(totals['agreement'])} (recorded in time: {pct(totals['agreement_in_time'])}; same action: "
          f"{pct(totals['action_agreement'])}); total latency {totals['latency_ms']}")
    print(f"logs: {totals['done']} done, {totals['failed']} failed, {totals['not_run']} not run of "
          f"{totals['logs_given']} ({fleet['logs_per_minute']} per minute on {fleet['workers']} workers)")
    for row in report["logs"]:
        if row["status"] == "failed":
            print(f"  failed {row['log']}: {row['error']}")
        elif row["status"] == "done" and row["damage"]:
            print(f"  damaged {row['log']} (replayed up to the damage): {row['damage'][0]}")
    print(f"report written to {args.out}")
    return 130 if fleet["interrupted"] else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from edge.benchreport import print_ratios, write_report
    from fleet.bench import fleet_bench

    report = fleet_bench(args.bundle, args.scenes, workers=args.workers, rounds=args.rounds, combos=args.precision,
                         progress=lambda line: print(line, file=sys.stderr))
    write_report(args.out, report)
    print_ratios(report["ratios"])
    print(f"load average before/after: {report['load_average']['before']} / {report['load_average']['after']}")
    print(f"report written to {args.out}")
    return 0


def _add_ray_options(parser: argparse.ArgumentParser, threads: str) -> None:
    """The bundle, report and Ray options fleet eval and fleet replay share; `threads`: --threads' help."""
    add_bundle_option(parser, help="bundle folder, at the same path on every node (default: the built-in default bundle)")
    parser.add_argument("--out", type=Path, required=True, help="report JSON to write")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help=threads)
    parser.add_argument("--address", default=None,
                        help="Ray cluster (ray://HOST:10001 or HOST:6379); default RAY_ADDRESS, else a local Ray")


def register(subparsers) -> None:
    commands = add_command_group(
        subparsers, "fleet", dest="fleet_command",
        help="replay many recorded drives through a bundle on Ray (needs the [fleet] extra)",
        description="Fleet replay on Ray: a local Ray started on demand, or a cluster (--address / RAY_ADDRESS).",
    )
    ev = add_command(
        commands, "eval", _cmd_eval,
        help="edge eval over many drives, spread over Ray workers",
        description="Replays every drive folder (video.mp4 + labels.jsonl [+ nav.jsonl] + scene.json) under --scenes "
                    "in lock-step, once per precision combination, on Ray actors that load the bundle once each. The "
                    "report is edge eval's plus a row per drive (done, failed with the reason, or not run).",
    )
    ev.add_argument("--scenes", type=Path, nargs="+", required=True, metavar="DIR",
                    help="folders of drives (searched recursively); on a cluster, paths every node can read")
    _add_ray_options(ev, threads="threads per worker for the vision encoder and the decoder (default %(default)s)")
    add_precision_filter(ev, "only these combinations, e.g. int8+q4_k_m (repeatable; the reference is always run)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")

    rp = add_command(
        commands, "replay", _cmd_replay,
        help="edge replay over many MCAP drive logs (and plain videos), spread over Ray workers",
        description="Replays every MCAP drive log (each file on its own) named or under the folders given through the "
                    "bundle, as edge replay does, on Ray actors that check and load the bundle once each. A video with "
                    "no log beside it is replayed in lock-step (no recorded advice to compare). The report has a row "
                    "per log (cycles, agreement with the recorded advice, latency, or the reason it failed) and totals.",
    )
    rp.add_argument("--logs", type=Path, nargs="+", required=True, metavar="PATH",
                    help="MCAP files, videos, or folders of them (searched recursively); on a cluster, shared paths")
    _add_ray_options(rp, threads="threads per worker for the vision encoder and the decoder; 0: the recorded "
                                  "settings (default %(default)s)")
    rp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of each log's recorded configuration, as edge replay --set (repeatable)")
    rp.add_argument("--cycles", action="store_true", help="keep every cycle's recorded and replayed advice in the report")
    rp.add_argument("--quiet", action="store_true", help="no progress bar")

    bench = add_command(
        commands, "bench", _cmd_bench,
        help="throughput of 1 single-threaded worker against N, interleaved (scenes/min, cycles/s, ratio)",
        description="Replays the same drives alternately with 1 and with --workers single-threaded workers in one "
                    "local Ray session and writes medians, the ratio and the machine's load average.",
    )
    bench.add_argument("--scenes", type=Path, nargs="+", required=True, metavar="DIR", help="folders of drives")
    add_bundle_option(bench)
    bench.add_argument("--out", type=Path, required=True, help="benchmark JSON to write")
    bench.add_argument("--workers", type=int, default=2, help="the configuration compared with 1 worker")
    bench.add_argument("--rounds", type=int, default=2, help="runs of each configuration (default %(default)s)")
    add_precision_filter(bench, "only these combinations (the reference is always run)")
