"""The fleet run's report: `edge eval`'s report over the drives that finished, plus one row per drive
given (done, failed with its reason, or not run because the run was stopped) and counts that add up."""

from __future__ import annotations

import json
from pathlib import Path

from edge.manifest import BundleManifest
from fleet.outcome import DriveOutcome
from train.dataset import Scene
from train.eval import Combo, SceneRun, eval_report

DONE, FAILED, NOT_RUN = "done", "failed", "not_run"


def drive_row(drive: Scene, outcome: DriveOutcome | None, attempts: int) -> dict:
    if outcome is None:
        return {"drive": drive.rel, "status": NOT_RUN, "attempts": attempts}
    row: dict = {"drive": drive.rel, "status": DONE if outcome.ok else FAILED, "attempts": attempts,
                 "worker": outcome.worker, "wall_s": round(outcome.wall_s, 2), "cpu_s": round(outcome.cpu_s, 2)}
    if outcome.ok:
        row["scenario"], row["variant"] = drive.scenario, drive.variant
        row["cycles"] = len(next(iter(outcome.runs.values())).actions) if outcome.runs else 0
        row["accuracy"] = {name: _accuracy(run) for name, run in outcome.runs.items()}
    else:
        row["error"] = outcome.error
    return row


def _accuracy(run: SceneRun) -> float | None:
    judged = [c for c in run.correct if c is not None]
    return sum(judged) / len(judged) if judged else None


def fleet_report(manifest: BundleManifest, bundle_dir: Path, drives: list[Scene], combos: list[Combo],
                 reference: Combo, finished: dict[str, DriveOutcome], attempts: dict[str, int], *,
                 workers: int, timing: dict[str, float], interrupted: bool) -> dict:
    """Drives are reported in the order given; precisions and agreement cover the drives done. Rates
    are over the replay itself (after the workers loaded the bundle); start-up is reported beside."""
    done = [d for d in drives if d.rel in finished and finished[d.rel].ok]
    runs = {c.name: [finished[d.rel].runs[c.name] for d in done] for c in combos}
    report = eval_report(manifest, bundle_dir, done, reference, runs)
    rows = [drive_row(d, finished.get(d.rel), attempts.get(d.rel, 0)) for d in drives]
    counts = {status: sum(r["status"] == status for r in rows) for status in (DONE, FAILED, NOT_RUN)}
    cycles = sum(r.get("cycles", 0) for r in rows) * len(combos)
    cpu_s = sum(r.get("cpu_s", 0.0) for r in rows)
    replay_s = timing["wall_s"] - timing["startup_s"]
    report.update({
        "fleet": {"workers": workers, "interrupted": interrupted, "drives_given": len(drives), **counts,
                  "wall_s": round(timing["wall_s"], 2), "startup_s": round(timing["startup_s"], 2),
                  "replay_s": round(replay_s, 2), "cycles": cycles, "worker_cpu_s": round(cpu_s, 2),
                  # Cores the workers got, on average: below the worker count, other processes took the rest.
                  "worker_cores_used": round(cpu_s / replay_s, 2) if replay_s > 0 else None,
                  "scenes_per_minute": round(counts[DONE] * 60 / replay_s, 2) if replay_s > 0 else None,
                  "cycles_per_second": round(cycles / replay_s, 3) if replay_s > 0 else None},
        "drives": rows,
    })
    return report


def write_json(path: Path | str, report: dict) -> Path:
    """Written beside and renamed into place, so a stopped run never leaves half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text(json.dumps(report, indent=2) + "\n")
    staging.replace(path)
    return path
