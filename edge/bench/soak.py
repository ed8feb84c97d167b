"""`edge bench soak --cycles N`: the loop for a long time, and whether anything grows.

The real loop in fast mode (lock-step on a simulated clock over a looping real drive video, as
fast as it goes, budgets out of reach), nav instructions arriving on its socket from a publisher
thread, and the audit log rotating every `--audit-max-bytes`. Reported:

- resident memory (RSS) after the warm-up and at the end, and its growth (must stay under 5%);
- open file descriptors and threads, sampled through the run (must stay flat);
- the audit log: every file, rotated or not, parses line by line, and the cycles they hold are
  exactly 0..N-1 in order, nothing lost or doubled across rotations;
- every cycle's verdict (counts), the nav instructions used, and the cycle time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from edge.benchreport import Stats, make_report, write_report
from edge.environment import process_memory

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "data" / "drive" / "udacity_solidWhiteRight.mp4"
RSS_GROWTH_LIMIT = 0.05
SAMPLES = 50  # process samples (RSS, fds, threads) over the run
NAV_INTERVAL_S = 0.05
NAV_ROADS = ("Main St", "Elm St", "A-9/B 12", "St. Mary's Rd", "")


def process_sample() -> dict[str, int]:
    """RSS in KiB, open file descriptors and threads of this process, from /proc."""
    rss_kib = process_memory().get("VmRSS", 0) // 1024
    return {"rss_kib": rss_kib, "fds": len(os.listdir("/proc/self/fd")),
            "threads": len(os.listdir("/proc/self/task"))}


def _publish_nav(endpoint: str, stop: threading.Event, sent: list[int]) -> None:
    from edge.bus import Publisher
    from edge.messages import Maneuver, NavInstruction

    maneuvers = list(Maneuver)
    publisher = Publisher(endpoint, bind=False)
    count = 0
    try:
        while not stop.wait(NAV_INTERVAL_S):
            publisher.publish(NavInstruction(
                nav_id=f"soak-{count}", maneuver=maneuvers[count % len(maneuvers)],
                distance_m=float(20 + (count * 37) % 900), text=NAV_ROADS[count % len(NAV_ROADS)], ttl_ms=10_000))
            count += 1
    finally:
        sent.append(count)
        publisher.close()


def check_audit(path: Path) -> dict[str, object]:
    """Every audit file parses; the cycles across them, oldest file first, are 0..n-1 in order."""
    files = [*sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:])), path]
    cycles: list[int] = []
    bad_lines = 0
    for file in files:
        for line in file.read_text().splitlines():
            try:
                cycles.append(json.loads(line)["cycle"])
            except (ValueError, KeyError):
                bad_lines += 1
    in_order = cycles == list(range(len(cycles)))
    return {"files": len(files), "records": len(cycles), "bad_lines": bad_lines, "cycles_in_order": in_order}


def run_soak(bundle: Path, video: Path, cycles: int, warmup: int, audit_max_bytes: int, progress=print):
    from edge.bench.loop import LoopBenchSettings, bench_config, looping_cycle, nav_endpoint
    from edge.capture import VideoFileStepper
    from edge.feeds import SimClock, SteppedFeed
    from edge.runtime import load_model_parts, running_loop

    # Enough rotated files are kept that none is deleted: then "nothing lost" is checkable.
    keep = cycles * 4096 // audit_max_bytes + 10
    settings = LoopBenchSettings(threads=0, overrides=(f"audit.max_bytes={audit_max_bytes}", f"audit.keep={keep}"))
    verdicts: Counter[str] = Counter()
    walls: list[float] = []
    samples: list[dict[str, int]] = []
    every = max(1, cycles // SAMPLES)
    with tempfile.TemporaryDirectory(prefix="edge-bench-soak-") as tmp:
        audit_path = Path(tmp) / "audit.jsonl"
        config = bench_config(bundle, settings, audit_path)
        models = load_model_parts(config)
        clock = SimClock()
        feed = SteppedFeed(VideoFileStepper(video, loop=True), clock, config.camera.interval_ms,
                           models.manifest.profile.frames_per_clip)
        stop, sent = threading.Event(), list[int]()
        started = time.monotonic()
        try:
            with running_loop(config, models=models, feed=feed, clock=clock, enforce_deadlines=False) as loop:
                nav = threading.Thread(target=_publish_nav, args=(nav_endpoint(loop), stop, sent))
                nav.start()
                try:
                    for index in range(warmup + cycles):
                        outcome = looping_cycle(loop)
                        if index < warmup:
                            continue
                        verdicts[outcome.advice.verdict.value] += 1
                        walls.append(outcome.cycle_wall_ms)
                        done = index - warmup
                        if done % every == 0 or done == cycles - 1:
                            samples.append({"cycle": done, **process_sample()})
                        if progress and done and done % max(1, cycles // 10) == 0:
                            progress(f"{done}/{cycles} cycles, rss {samples[-1]['rss_kib'] / 1024:.1f} MiB, "
                                     f"{time.monotonic() - started:.0f} s")
                finally:
                    stop.set()
                    nav.join(timeout=10)
                nav_used = loop.nav.accepted
                audit_log = loop.parts.audit
                if audit_log is None:
                    raise RuntimeError("the soak runs with an audit log")
                rotations, failed_writes = audit_log.rotations, audit_log.failed_writes
            wall_s = time.monotonic() - started
            audit = check_audit(audit_path) | {"rotations": rotations, "failed_writes": failed_writes,
                                               "expected_records": warmup + cycles}
        finally:
            models.close()
    return _report(bundle, video, cycles, warmup, audit_max_bytes, verdicts, walls, samples, audit,
                   nav_used, sent[0] if sent else 0, wall_s)


def _report(bundle, video, cycles, warmup, audit_max_bytes, verdicts, walls, samples, audit, nav_used,
            nav_sent, wall_s):
    first, last = samples[0], samples[-1]
    growth = (last["rss_kib"] - first["rss_kib"]) / first["rss_kib"]
    audit_ok = (audit["bad_lines"] == 0 and audit["cycles_in_order"]
                and audit["records"] == audit["expected_records"] and audit["rotations"] > 0)
    held = {
        "rss_growth_under_5_percent": growth < RSS_GROWTH_LIMIT,
        "fds_flat": len({s["fds"] for s in samples}) == 1,
        "threads_flat": len({s["threads"] for s in samples}) == 1,
        "audit_complete_across_rotations": bool(audit_ok),
        "every_cycle_advised": sum(verdicts.values()) == cycles,
    }
    return make_report(
        "soak", {"cycle_wall": Stats.from_samples(walls).as_dict()}, {"rss_end_over_warm": 1 + growth},
        held=held,
        memory={"rss_after_warmup_mib": round(first["rss_kib"] / 1024, 1), "rss_end_mib": round(last["rss_kib"] / 1024, 1),
                "rss_growth": round(growth, 4), "rss_max_mib": round(max(s["rss_kib"] for s in samples) / 1024, 1)},
        process_samples=samples,
        audit=audit,
        work={"cycles": cycles, "verdicts": dict(verdicts), "nav_sent": nav_sent, "nav_used": nav_used,
              "wall_s": round(wall_s, 1)},
        config={"bundle": str(bundle), "video": str(video), "warmup": warmup, "audit_max_bytes": audit_max_bytes,
                "mode": "stepped (lock-step, as fast as it goes)", "cpu_count": os.cpu_count()},
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("soak", help="a long run: memory, fds, threads, audit rotation, verdicts")
    parser.add_argument("--out", required=True, type=Path, help="JSON report path")
    parser.add_argument("--cycles", type=int, default=10_000, help="measured cycles (after --warmup)")
    parser.add_argument("--warmup", type=int, default=200, help="cycles before the first memory sample")
    parser.add_argument("--audit-max-bytes", type=int, default=256 * 1024, help="audit rotation size")
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the built-in one)")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="drive video, looped")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from edge.builtin_bundle import builtin_bundle

    bundle = args.bundle or builtin_bundle()
    report = run_soak(bundle, args.video, args.cycles, args.warmup, args.audit_max_bytes)
    path = write_report(args.out, report)
    print("memory:", report["memory"])
    print("audit:", report["audit"])
    print("work:", report["work"])
    print("held:", report["held"])
    print(f"wrote {path}")
    return 0 if all(report["held"].values()) else 1
