"""The process-replay report: report.json (every cycle), report.md (the summary and the changed
cycles) and, per changed cycle, its newest frame as logged (changed/cycle-NNNNNN.jpg|png)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from edge.drivelog.reader import DriveLog
from edge.drivelog.replay import ReplayComparison

MAX_CHANGED_FRAMES = 200  # a bundle that changes everything must not fill the disk with frames


def write_replay_report(out: Path, log: DriveLog, result: ReplayComparison, bundle_sha256: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    changed_dir = out / "changed"
    changed: list[dict[str, object]] = []
    for compared in result.changed:
        row = compared.as_dict()
        newest = compared.recorded.frames[-1].frame_id
        if len(changed) < MAX_CHANGED_FRAMES:
            suffix = "png" if log.frame_format.get(newest) == "png" else "jpg"
            changed_dir.mkdir(exist_ok=True)
            path = changed_dir / f"cycle-{compared.recorded.cycle:06d}.{suffix}"
            path.write_bytes(log.frames[newest])
            row["frame_file"] = str(path.relative_to(out))
        changed.append(row)
    report = {
        "log_files": [str(p) for p in log.paths],
        "recorded_bundle_sha256": log.metadata.get("bundle_sha256"),
        "replay_bundle_sha256": bundle_sha256,
        "same_bundle": log.metadata.get("bundle_sha256") == bundle_sha256,
        "recorded_cycles": len(result.cycles),
        "replayed_cycles": len(result.replayed),
        "agreement": result.agreement,
        "agreement_in_time": result.agreement_in_time,
        "action_agreement": result.action_agreement,
        "recorded_verdicts": dict(Counter(c.recorded.verdict.value for c in result.cycles)),
        "changed": changed,
        "skipped": [c.as_dict() for c in result.skipped],
        "damage": log.damage,
        "ignored_topics": sorted(log.ignored_topics),
        "wall_s": result.wall_s,
        "cycles": [c.as_dict() for c in result.cycles],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    md = out / "report.md"
    md.write_text(_markdown(report))
    return md


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _markdown(report: dict) -> str:
    agreement = report["agreement"]
    lines = [
        "# Process replay",
        "",
        f"- log: {', '.join(report['log_files'])}",
        f"- recorded with bundle `{report['recorded_bundle_sha256']}`, replayed with `{report['replay_bundle_sha256']}`",
        f"- cycles: {report['recorded_cycles']} recorded, {report['replayed_cycles']} replayed, "
        f"{len(report['skipped'])} skipped, {len(report['changed'])} changed",
        f"- advice agreement: {_pct(agreement)} of all cycles; {_pct(report['agreement_in_time'])} of the cycles "
        f"recorded in time (ok/degraded); same action: {_pct(report['action_agreement'])} where both carry advice",
        f"- recorded verdicts: {report['recorded_verdicts']}",
        f"- replay time: {report['wall_s']:.1f} s",
    ]
    if report["damage"]:
        lines += ["", "## Damage (replayed up to it)", ""] + [f"- {d}" for d in report["damage"]]
    if report["changed"]:
        lines += ["", "## Changed cycles", "", "| cycle | frames | recorded | replayed | frame |", "|---|---|---|---|---|"]
        for row in report["changed"]:
            rec, rep = row["recorded"], row["replayed"]
            lines.append(f"| {row['cycle']} | {row['frame_ids']} | {rec['action'] if rec else row['recorded_verdict']} "
                         f"| {rep['action'] if rep else row['replayed_verdict']} | {row.get('frame_file', '')} |")
    if report["skipped"]:
        lines += ["", "## Skipped cycles", ""] + [f"- cycle {r['cycle']}: {r['reason']}" for r in report["skipped"]]
    return "\n".join(lines) + "\n"
