"""A captured segment as a scene folder, so captures become evaluation and training data.

`edge capture scene SEGMENT.mcap --out DIR` writes what `edge scene` writes for a rendered drive:
``video.mp4`` (the logged samples, one video frame per sampling interval, so a lock-step replay
at that interval rebuilds the clips the runtime saw), ``nav.jsonl`` (the navigation messages the
runtime received, at their times on the video's time line) and ``scene.json``. It does not write
``labels.jsonl``: a person does, in the scenes' format, starting from ``labels.template.jsonl``
(one window per logged advice, holding what the runtime advised). With labels.jsonl in place,
`edge eval --scenes` and `edge train --scenes` take the folder like any rendered scene.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from edge.drivelog.reader import DriveLog, DriveLogError

TEMPLATE_NAME = "labels.template.jsonl"


def _interval_ms(log: DriveLog) -> int:
    config = json.loads(log.metadata.get("config", "{}"))
    return int(config.get("camera", {}).get("interval_ms", 500))


def write_scene(log: DriveLog, out: Path, name: str) -> Path:
    if not log.frames:
        raise DriveLogError("the segment holds no camera frames")
    out.mkdir(parents=True, exist_ok=True)
    interval = _interval_ms(log)
    frame_ids = sorted(log.frames)
    first = log.image(frame_ids[0])
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(out / "video.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 1000.0 / interval,
                             (width, height))
    try:
        for frame_id in frame_ids:
            writer.write(log.image(frame_id))
    finally:
        writer.release()
    video_ms = {fid: k * interval for k, fid in enumerate(frame_ids)}  # frame id -> video time
    mono_of = {f.frame_id: f.capture_mono_ns for a in log.advice for f in a.frames}
    t0 = mono_of.get(frame_ids[0])
    nav_rows = []
    for mono, nav in log.nav:
        at_ms = 0 if t0 is None else max(0, round((mono - t0) / 1e6))
        row = nav.model_dump(mode="json", include={"nav_id", "maneuver", "distance_m", "text", "ttl_ms"})
        nav_rows.append({"at_ms": at_ms, **row})
    (out / "nav.jsonl").write_text("".join(json.dumps(r) + "\n" for r in nav_rows))
    (out / TEMPLATE_NAME).write_text("".join(json.dumps(r) + "\n" for r in _template(log, video_ms, interval)))
    meta = {"scenario": "capture", "seed": 0, "variant": "", "fps": 1000.0 / interval, "width": width,
            "height": height, "n_frames": len(frame_ids), "duration_s": len(frame_ids) * interval / 1000,
            "description": f"captured segment {name}", "source": name,
            "bundle_sha256": log.metadata.get("bundle_sha256", ""),
            "files": {"video": "video.mp4", "labels": "labels.jsonl", "nav": "nav.jsonl"}}
    (out / "scene.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _template(log: DriveLog, video_ms: dict[int, int], interval: int) -> list[dict]:
    """One label window per logged advice (its newest frame's interval), pre-filled with the advice."""
    rows = []
    for advice in log.advice:
        newest = advice.frames[-1].frame_id if advice.frames else None
        if newest not in video_ms or advice.advice is None:
            continue
        a = advice.advice
        actions = [a.action.value] + ([a.lateral.value] if a.lateral and a.lateral != a.action else [])
        rows.append({"start_ms": video_ms[newest], "end_ms": video_ms[newest] + interval, "actions": actions,
                     "lateral": a.lateral.value if a.lateral else None, "hazards": [h.value for h in a.hazards],
                     "urgency": a.urgency.value, "rationale": a.rationale, "source": f"advice seq {advice.seq}"})
    return rows
