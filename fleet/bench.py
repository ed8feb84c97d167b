"""`edge fleet bench`: throughput of 1 single-threaded fleet worker against N, interleaved.

Both configurations replay the same drives in the same Ray session, alternating (1, N, N, 1, 1, N ...)
so that load from other processes on the machine falls on both alike; the report has per-run figures,
their medians and the ratio N / 1 (edge/benchreport.py's shape), the machine's load average before
and after, and the per-drive cost that projects a run of any size.

Rates are over the replay itself (from the moment the workers have loaded the bundle to the last
drive); the start-up (Ray, model loads) is reported beside them.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from edge.benchreport import make_report, ratio
from fleet.driver import FleetOptions, run_fleet
from fleet.session import ray_session

BENCH_NAME = "fleet_throughput"
PROJECT_DRIVES = 1000


def _run(bundle: Path, roots: list[Path], workers: int, combos: list[str] | None) -> dict:
    report = run_fleet(bundle, roots, None, FleetOptions(workers=workers, threads=1, combos=combos, progress=False))
    fleet = report["fleet"]
    if fleet["failed"] or fleet["not_run"]:
        failed = [r for r in report["drives"] if r["status"] != "done"]
        raise RuntimeError(f"benchmark drives must all replay; not done: {failed}")
    return {k: fleet[k] for k in ("workers", "done", "cycles", "replay_s", "startup_s", "scenes_per_minute",
                                  "cycles_per_second", "worker_cores_used", "worker_cpu_s")}


def _summary(runs: list[dict]) -> dict:
    return {"runs": runs,
            "median_scenes_per_minute": statistics.median(r["scenes_per_minute"] for r in runs),
            "median_cycles_per_second": statistics.median(r["cycles_per_second"] for r in runs),
            "median_startup_s": statistics.median(r["startup_s"] for r in runs),
            "median_worker_cores_used": statistics.median(r["worker_cores_used"] for r in runs),
            # CPU seconds a drive costs: flat from 1 to N workers when the workers do not fight over cores.
            "median_cpu_s_per_drive": statistics.median(r["worker_cpu_s"] / r["done"] for r in runs)}


def fleet_bench(bundle: Path | str | None, roots: list[Path], *, workers: int = 2, rounds: int = 2,
                combos: list[str] | None = None, progress=print) -> dict:
    if bundle is None:
        from train.default import ensure_default_bundle

        bundle = ensure_default_bundle()
    results: dict[int, list[dict]] = {1: [], workers: []}
    load_before = os.getloadavg()
    with ray_session(None, num_cpus=workers):
        for i in range(rounds):
            for n in ((1, workers) if i % 2 == 0 else (workers, 1)):
                results[n].append(_run(Path(bundle), roots, n, combos))
                if progress is not None:
                    run = results[n][-1]
                    progress(f"round {i + 1}/{rounds}, {n} worker(s): {run['scenes_per_minute']} drives/min, "
                             f"{run['cycles_per_second']} cycles/s, {run['worker_cores_used']} cores used")
    one, many = _summary(results[1]), _summary(results[workers])
    # A drive's cost on one worker (seconds), from the single-worker runs: what a fleet of N divides.
    drive_s = statistics.median(r["replay_s"] / r["done"] for r in results[1])
    return make_report(
        BENCH_NAME,
        {"1_worker": one, f"{workers}_workers": many},
        {f"{workers}_over_1_scenes_per_minute": ratio(many["median_scenes_per_minute"], one["median_scenes_per_minute"]),
         f"{workers}_over_1_cycles_per_second": ratio(many["median_cycles_per_second"], one["median_cycles_per_second"]),
         f"{workers}_over_1_cpu_s_per_drive": ratio(many["median_cpu_s_per_drive"], one["median_cpu_s_per_drive"])},
        drives=results[1][0]["done"], rounds=rounds, combos=combos, threads_per_worker=1,
        load_average={"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]},
        per_drive_worker_s=round(drive_s, 2),
        projection={"drives": PROJECT_DRIVES, "worker_hours": round(PROJECT_DRIVES * drive_s / 3600, 2),
                    "note": "drives x per-drive cost on one single-threaded worker; N workers with a core each "
                            "divide the wall time by up to N (the ratio above is the measured share of that)"},
    )
