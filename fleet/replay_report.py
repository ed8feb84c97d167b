"""`edge fleet replay`'s report: one row per log given (done, failed with its reason, or not run),
totals that add up to the logs given, and agreement and latency pooled over the cycles replayed.

Per cycle (kept in the row with --cycles): the recorded and the replayed advice object, both
verdicts, the replayed cycle's total latency. Agreement means what `edge replay` means by it
(edge/drivelog/replay.py): the same advice object; also over the cycles recorded in time, and of
the action alone where both sides carry advice."""

from __future__ import annotations

from collections import Counter

import numpy as np

from edge.drivelog.reader import DriveLog
from edge.drivelog.replay import ReplayComparison
from fleet.logs import LogItem
from fleet.outcome import LogOutcome
from fleet.report import DONE, FAILED, NOT_RUN

IN_TIME = ("ok", "degraded")


def latency(values: list[float]) -> dict | None:
    if not values:
        return None
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 2), "p99": round(float(p99), 2), "max": round(max(values), 2)}


def _ratio(hits: int, total: int) -> float | None:
    return hits / total if total else None


def log_cycles(result: ReplayComparison) -> list[dict]:
    cycles = []
    for compared in result.cycles:
        row = compared.as_dict()
        row["same_advice"] = compared.same_advice if compared.replayed is not None else None
        row["total_ms"] = compared.replayed.stages.total_ms if compared.replayed is not None else None
        cycles.append(row)
    return cycles


def video_cycles(advice: list) -> list[dict]:
    return [{"cycle": a.cycle, "seq": a.seq, "frame_ids": [f.frame_id for f in a.frames],
             "recorded": None, "replayed": None if a.advice is None else a.advice.model_dump(mode="json"),
             "recorded_verdict": None, "replayed_verdict": a.verdict.value, "same_advice": None,
             "total_ms": a.stages.total_ms, "reason": ""} for a in advice]


def figures(cycles: list[dict], log: DriveLog | None = None) -> dict:
    """A log's (or video's) counts: everything the totals add up, from its per-cycle rows."""
    replayed = [c for c in cycles if c["replayed_verdict"] is not None]
    compared = [c for c in replayed if c["recorded_verdict"] is not None]
    in_time = [c for c in compared if c["recorded_verdict"] in IN_TIME]
    both = [c for c in compared if c["recorded"] is not None and c["replayed"] is not None]
    return {
        "cycles": len(cycles), "replayed": len(replayed), "skipped": len(cycles) - len(replayed),
        "compared": len(compared), "same": sum(c["same_advice"] for c in compared),
        "in_time": len(in_time), "same_in_time": sum(c["same_advice"] for c in in_time),
        "both_advised": len(both),
        "same_action": sum(c["recorded"]["action"] == c["replayed"]["action"] for c in both),
        "replayed_verdicts": dict(Counter(c["replayed_verdict"] for c in replayed)),
        "recorded_verdicts": dict(Counter(c["recorded_verdict"] for c in compared)),
        "total_ms": [c["total_ms"] for c in replayed if c["total_ms"] is not None],
        "damage": list(log.damage) if log is not None else [],
        "recorded_bundle_sha256": log.metadata.get("bundle_sha256") if log is not None else None,
    }


def _agreements(f: dict) -> dict:
    return {"agreement": _ratio(f["same"], f["compared"]), "agreement_in_time": _ratio(f["same_in_time"], f["in_time"]),
            "action_agreement": _ratio(f["same_action"], f["both_advised"])}


def log_row(item: LogItem, outcome: LogOutcome | None, attempts: int, with_cycles: bool) -> dict:
    if outcome is None:
        return {"log": item.rel, "kind": item.kind, "status": NOT_RUN, "attempts": attempts}
    row: dict = {"log": item.rel, "kind": item.kind, "status": DONE if outcome.ok else FAILED, "attempts": attempts,
                 "worker": outcome.worker, "wall_s": round(outcome.wall_s, 2), "cpu_s": round(outcome.cpu_s, 2)}
    if not outcome.ok:
        row["error"] = outcome.error
        return row
    f = outcome.figures
    row.update({key: f[key] for key in ("cycles", "replayed", "skipped", "replayed_verdicts", "recorded_verdicts",
                                        "damage", "recorded_bundle_sha256")})
    row.update(_agreements(f))
    row["changed"] = f["compared"] - f["same"]
    row["latency_ms"] = latency(f["total_ms"])
    if with_cycles:
        row["per_cycle"] = outcome.cycles
    return row


def replay_report(bundle_sha256: str, items: list[LogItem], finished: dict[str, LogOutcome],
                  attempts: dict[str, int], *, workers: int, timing: dict[str, float], interrupted: bool,
                  with_cycles: bool) -> dict:
    rows = [log_row(item, finished.get(item.rel), attempts.get(item.rel, 0), with_cycles) for item in items]
    counts = {status: sum(r["status"] == status for r in rows) for status in (DONE, FAILED, NOT_RUN)}
    done = [finished[item.rel].figures for item in items if item.rel in finished and finished[item.rel].ok]
    pooled = {key: sum(f[key] for f in done) for key in ("cycles", "replayed", "skipped", "compared", "same",
                                                         "in_time", "same_in_time", "both_advised", "same_action")}
    replay_s = timing["wall_s"] - timing["startup_s"]
    cpu_s = sum(r.get("cpu_s", 0.0) for r in rows)
    totals = {
        "logs_given": len(items), **counts,
        "by_kind": dict(Counter(item.kind for item in items)),
        **{key: pooled[key] for key in ("cycles", "replayed", "skipped")},
        "changed": pooled["compared"] - pooled["same"],
        **_agreements(pooled),
        "latency_ms": latency([ms for f in done for ms in f["total_ms"]]),
        "replayed_verdicts": dict(sum((Counter(f["replayed_verdicts"]) for f in done), Counter())),
        "damaged_logs": sum(bool(f["damage"]) for f in done),
        "failures": dict(Counter(_reason_kind(r["error"]) for r in rows if r["status"] == FAILED)),
    }
    fleet = {"workers": workers, "interrupted": interrupted, "wall_s": round(timing["wall_s"], 2),
             "startup_s": round(timing["startup_s"], 2), "replay_s": round(replay_s, 2),
             "worker_cpu_s": round(cpu_s, 2),
             "logs_per_minute": round(counts[DONE] * 60 / replay_s, 2) if replay_s > 0 else None,
             "cycles_per_second": round(pooled["replayed"] / replay_s, 3) if replay_s > 0 else None}
    return {"bundle_sha256": bundle_sha256, "totals": totals, "fleet": fleet, "logs": rows}


def _reason_kind(error: str) -> str:
    """The first words of a failure, so totals group "not an MCAP file" apart from "worker died"."""
    for marker in ("not an MCAP file", "nothing to replay", "carries schema", "cannot decode", "does not decode",
                   "worker died", "differs from the driver's", "no worker left"):
        if marker in error:
            return marker
    return error.split(":", 1)[0][:60]
