"""The report of a replay: what a planner received, against the budgets and the labels.

``write_report`` takes the recorded messages (ActionAdvice and Status as dicts, or JSONL files),
the optional labels, the stage budgets and the source video, and writes into ``out_dir``:

- ``report.json``: ``stages`` (name -> n, p50/p90/p99/max ms...), ``verdicts`` (name -> count),
  ``frame_drop_ratio``, ``advice_count``; with labels ``accuracy``, ``windows`` (per-window
  agreement) and ``confusion`` (expected primary -> predicted -> count);
- ``report.md`` for a person; ``stages.png`` (latency over time against budgets) and
  ``timeline.png`` (advice against the labels);
- ``annotated.mp4``: the source video with the advice in force drawn on every frame.

Advice time: an advice is matched to the label window containing the video time of its newest
frame. That time is, in order of preference: ``video_times_ms[i]`` passed by the caller; a
``video_time_ms`` key the recorder added to the advice dict; the newest frame's
``capture_mono_ns`` minus ``video_start_mono_ns``; or minus the earliest capture time seen in
any advice (the first frame). The advice is shown in the video from its publish time: its video
time plus ``mono_ns - capture_mono_ns`` (or plus ``stages.total_ms``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.benchreport import Stats, make_report
from edge.benchreport import write_report as write_json
from edge.llm.confidence import expected_calibration_error
from edge.messages import ActionAdvice, FrameRef, MetaAction, StageTimings, Status, Verdict
from sim.labels import LabelWindow, load_labels, read_jsonl, window_at
from sim.reliability import plot_reliability

# Keys a recorder may add next to the wire fields; everything else must validate.
RECORDER_KEYS = ("video_time_ms", "recv_mono_ns", "recv_wall_ns", "topic")
STAGE_FIELDS = tuple(StageTimings.model_fields)
NO_ADVICE = "no_advice"
OUT_OF_DOMAIN = "out_of_domain"  # how the loop's verdict_reason names the warning (edge.ood)


@dataclass(frozen=True)
class ReportFiles:
    out_dir: Path
    report_json: Path
    report_md: Path
    stages_png: Path
    timeline_png: Path
    annotated_mp4: Path | None
    report: dict[str, Any]


@dataclass(frozen=True)
class Cycle:
    """One received advice message placed on the video's time axis."""

    message: ActionAdvice
    video_ms: float | None  # newest frame's video time
    publish_video_ms: float | None  # when it reached the planner, in video time
    publish_rel_s: float  # publish time relative to the first message (for latency plots)

    @property
    def action(self) -> MetaAction | None:
        return self.message.advice.action if self.message.advice else None


def stage_name(field: str) -> str:
    return field.removesuffix("_ms")


def _rows(source: Sequence[Mapping[str, Any]] | str | Path | None) -> list[dict[str, Any]]:
    if source is None:
        return []
    if isinstance(source, (str, Path)):
        return read_jsonl(source)
    return [dict(row) for row in source]


def parse_advice(rows: list[dict[str, Any]]) -> tuple[list[ActionAdvice], list[float | None]]:
    messages, recorded_times = [], []
    for i, row in enumerate(rows):
        fields = {k: v for k, v in row.items() if k not in RECORDER_KEYS}
        try:
            messages.append(ActionAdvice.model_validate(fields))
        except Exception as exc:  # pydantic's error names the field; add the line
            raise ValueError(f"advice record {i}: not an ActionAdvice: {exc}") from exc
        t = row.get("video_time_ms")
        recorded_times.append(float(t) if t is not None else None)
    return messages, recorded_times


def parse_status(rows: list[dict[str, Any]]) -> list[Status]:
    out = []
    for i, row in enumerate(rows):
        fields = {k: v for k, v in row.items() if k not in RECORDER_KEYS}
        try:
            out.append(Status.model_validate(fields))
        except Exception as exc:
            raise ValueError(f"status record {i}: not a Status: {exc}") from exc
    return out


def _capture_to_publish_ms(m: ActionAdvice, newest: FrameRef | None) -> float | None:
    """How long after its newest frame an advice reached the bus. The loop's own stage timings say
    it on any clock (the clip's age when the cycle began, then the cycle); frames stamped on a
    simulated clock (lock-step, fast) cannot be subtracted from the publisher's real `mono_ns`."""
    if m.stages.total_ms is not None:
        return (m.stages.capture_age_ms or 0.0) + m.stages.total_ms
    if newest is not None and m.mono_ns >= newest.capture_mono_ns > 0:
        return (m.mono_ns - newest.capture_mono_ns) / 1e6
    return None


def place_cycles(
    messages: list[ActionAdvice],
    recorded_times: list[float | None],
    video_times_ms: Sequence[float | None] | None,
    video_start_mono_ns: int | None,
) -> list[Cycle]:
    if video_times_ms is not None and len(video_times_ms) != len(messages):
        raise ValueError(f"video_times_ms has {len(video_times_ms)} entries for {len(messages)} advice messages")
    captures = [f.capture_mono_ns for m in messages for f in m.frames]
    origin = video_start_mono_ns if video_start_mono_ns is not None else (min(captures) if captures else None)
    first_pub = min((m.mono_ns for m in messages if m.mono_ns), default=0)
    cycles = []
    for i, m in enumerate(messages):
        newest = max(m.frames, key=lambda f: f.capture_mono_ns) if m.frames else None
        t: float | None = None
        if video_times_ms is not None and video_times_ms[i] is not None:
            t = float(video_times_ms[i])  # type: ignore[arg-type]
        elif recorded_times[i] is not None:
            t = recorded_times[i]
        elif newest is not None and origin is not None:
            t = (newest.capture_mono_ns - origin) / 1e6
        latency = _capture_to_publish_ms(m, newest)
        publish = t + latency if t is not None and latency is not None else t
        rel = (m.mono_ns - first_pub) / 1e9 if m.mono_ns else float(i)
        cycles.append(Cycle(m, t, publish, rel))
    return cycles


def stage_stats(messages: list[ActionAdvice]) -> dict[str, dict[str, float | int]]:
    out = {}
    for field in STAGE_FIELDS:
        samples = [getattr(m.stages, field) for m in messages if getattr(m.stages, field) is not None]
        if samples:
            out[stage_name(field)] = Stats.from_samples(samples).as_dict()
    return out


def agreement(cycles: list[Cycle], windows: list[LabelWindow]) -> dict[str, Any]:
    confusion: dict[str, Counter[str]] = {}
    per_window = [{"start_ms": w.start_ms, "end_ms": w.end_ms, "expected": w.primary.value,
                   "acceptable": [a.value for a in w.actions], "n": 0, "agree": 0, "no_advice": 0}
                  for w in windows]
    judged = agreed = missing = 0
    confidence: list[tuple[float, bool]] = []
    for c in cycles:
        if c.video_ms is None:
            continue
        idx = next((i for i, w in enumerate(windows) if w.contains(c.video_ms)), None)
        if idx is None:
            continue
        w, row = windows[idx], per_window[idx]
        predicted = c.action.value if c.action else NO_ADVICE
        confusion.setdefault(w.primary.value, Counter())[predicted] += 1
        row["n"] += 1
        if c.action is None:
            row["no_advice"] += 1
            missing += 1
            continue
        judged += 1
        if c.message.confidence is not None:
            confidence.append((c.message.confidence, w.accepts(c.action)))
        if w.accepts(c.action):
            row["agree"] += 1
            agreed += 1
    for row in per_window:
        answered = row["n"] - row["no_advice"]
        row["agreement"] = row["agree"] / answered if answered else None
    return {
        "accuracy": agreed / judged if judged else None,
        "judged": judged,
        "agreed": agreed,
        "no_advice_in_windows": missing,
        "calibration": expected_calibration_error([p for p, _ in confidence], [ok for _, ok in confidence]),
        "windows": per_window,
        "confusion": {k: dict(sorted(v.items())) for k, v in sorted(confusion.items())},
    }


# --- pictures -------------------------------------------------------------------------------------

def plot_stages(cycles: list[Cycle], budgets: Mapping[str, float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = []
    for field in STAGE_FIELDS:
        pts = [(c.publish_rel_s, getattr(c.message.stages, field)) for c in cycles
               if getattr(c.message.stages, field) is not None]
        if pts:
            series.append((stage_name(field), pts))
    n = max(1, len(series))
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.9 * n + 0.6), sharex=True, squeeze=False)
    for ax, (name, pts) in zip(axes[:, 0], series, strict=False):
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, ".-", lw=0.8, ms=3, label=name)
        budget = budgets.get(name)
        if budget is not None:
            ax.axhline(budget, color="red", ls="--", lw=1, label=f"budget {budget:g} ms")
            over = [(x, y) for x, y in pts if y > budget]
            if over:
                ax.plot(*zip(*over, strict=True), "rx", ms=5)
        ax.set_ylabel(f"{name} [ms]", fontsize=8)
        ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    if not series:
        axes[0, 0].text(0.5, 0.5, "no stage timings recorded", ha="center", va="center")
    axes[-1, 0].set_xlabel("time since the first advice [s]")
    fig.suptitle("Stage latency per cycle against the budgets", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_timeline(cycles: list[Cycle], windows: list[LabelWindow], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [a.value for a in MetaAction] + [NO_ADVICE]
    y = {name: i for i, name in enumerate(rows)}
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for w in windows:
        for rank, action in enumerate(w.actions):
            ax.barh(y[action.value], (w.end_ms - w.start_ms) / 1000, left=w.start_ms / 1000, height=0.7,
                    color="tab:blue", alpha=0.55 if rank == 0 else 0.18, edgecolor="none")
    for c in cycles:
        if c.video_ms is None:
            continue
        name = c.action.value if c.action else NO_ADVICE
        w = window_at(windows, c.video_ms)
        colour = "grey" if w is None else ("tab:green" if c.action and w.accepts(c.action) else "tab:red")
        ax.plot(c.video_ms / 1000, y[name], "o", color=colour, ms=4)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    ax.set_xlabel("video time [s]")
    ax.set_title("Advice (dots: green = acceptable, red = not) against labels (bars: dark = primary)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


URGENCY_COLOUR = {"low": (80, 220, 80), "medium": (0, 200, 255), "high": (40, 40, 255)}


def annotate_video(video: Path, cycles: list[Cycle], windows: list[LabelWindow],
                   out: Path) -> tuple[Path, list[int | None]]:
    """Draw the advice in force on every frame, and say which cycle each frame shows (None: none
    yet). Reads until the decoder stops (a header may claim more frames than the file has)."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {video}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 0 < fps < 1000 else 10.0
    shown = sorted((c for c in cycles if c.publish_video_ms is not None), key=lambda c: c.publish_video_ms)
    writer = None
    frame_cycles: list[int | None] = []
    k = -1
    cycle: Cycle | None = None
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise ValueError(f"OpenCV cannot write {out} with the mp4v codec")
            t_ms = len(frame_cycles) * 1000.0 / fps
            while k + 1 < len(shown) and shown[k + 1].publish_video_ms <= t_ms:  # type: ignore[operator]
                k += 1
                # A newer cycle replaces an older one, never the reverse: an old cycle that took long
                # (placed late on the video's time line) does not take back the screen.
                if cycle is None or shown[k].message.cycle > cycle.message.cycle:
                    cycle = shown[k]
            draw_overlay(frame, cycle, window_at(windows, t_ms) if windows else None, t_ms)
            writer.write(frame)
            frame_cycles.append(cycle.message.cycle if cycle else None)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    return out, frame_cycles


def frame_runs(frame_cycles: list[int | None]) -> list[dict[str, int | None]]:
    """Per-frame cycles as runs: [{"first_frame", "last_frame", "cycle"}] (cycle None: waiting)."""
    runs: list[dict[str, int | None]] = []
    for i, cycle in enumerate(frame_cycles):
        if runs and runs[-1]["cycle"] == cycle:
            runs[-1]["last_frame"] = i
        else:
            runs.append({"first_frame": i, "last_frame": i, "cycle": cycle})
    return runs


def draw_overlay(frame: np.ndarray, cycle: Cycle | None, window: LabelWindow | None, t_ms: float) -> None:
    h, w = frame.shape[:2]
    s = w / 640.0
    bar = int(70 * s)
    region = frame[:bar]
    region[:] = (region.astype(np.float32) * 0.35).astype(np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX

    def text(msg: str, x: float, y: float, size: float, colour: tuple[int, int, int], thick: int = 1) -> None:
        cv2.putText(frame, msg, (int(x * s), int(y * s)), font, size * s, colour, max(1, int(thick * s)), cv2.LINE_AA)

    text(f"t={t_ms / 1000:5.1f}s", 540, 16, 0.42, (220, 220, 220))
    if cycle is None:
        text("waiting for advice", 8, 24, 0.6, (200, 200, 200))
    else:
        m = cycle.message
        total = m.stages.total_ms
        latency = f"{total:.0f} ms" if total is not None else "n/a"
        if m.advice is None:
            text(f"NO ADVICE ({m.verdict.value})", 8, 26, 0.7, (60, 60, 255), 2)
            text(m.verdict_reason[:70], 8, 48, 0.45, (220, 220, 220))
        else:
            a = m.advice
            colour = URGENCY_COLOUR.get(a.urgency.value, (255, 255, 255))
            lateral = f" + {a.lateral.value}" if a.lateral else ""
            sure = f"  {m.confidence:.0%} sure" if m.confidence is not None else ""
            text(f"{a.action.value.upper()}{lateral}  [{a.urgency.value}]{sure}", 8, 26, 0.7, colour, 2)
            text(a.rationale[:80], 8, 47, 0.45, (235, 235, 235))
        verdict_colour = (80, 220, 80) if m.verdict == Verdict.OK else (0, 200, 255)
        foreign = "  OUT OF DOMAIN" if OUT_OF_DOMAIN in m.verdict_reason else ""
        text(f"cycle {m.cycle}  latency {latency}  verdict {m.verdict.value}{foreign}", 8, 64, 0.42,
             (0, 140, 255) if foreign else verdict_colour)
    if window is not None:
        agree = ""
        if cycle is not None and cycle.action is not None:
            agree = "  (agrees)" if window.accepts(cycle.action) else "  (differs)"
        msg = f"expected: {'/'.join(a.value for a in window.actions[:2])}{agree}"
        (tw, _), _ = cv2.getTextSize(msg, font, 0.42 * s, 1)
        cv2.rectangle(frame, (0, h - int(22 * s)), (tw + int(12 * s), h), (0, 0, 0), -1)
        text(msg, 6, h / s - 7, 0.42, (255, 255, 255))


# --- the report -----------------------------------------------------------------------------------

def _markdown(report: dict[str, Any], files: dict[str, str]) -> str:
    lines = ["# Replay report", ""]
    lines.append(f"- advice messages: {report['advice_count']} (with an action: {report['advice_with_action']})")
    fdr = report.get("frame_drop_ratio")
    lines.append(f"- frame drop ratio: {fdr:.3f}" if fdr is not None else "- frame drop ratio: n/a (no status)")
    if report.get("accuracy") is not None:
        lines.append(f"- meta-action accuracy: {report['accuracy']:.1%} of {report['judged']} judged cycles")
    if (report.get("calibration") or {}).get("ece") is not None:
        lines.append(f"- confidence calibration: ECE {report['calibration']['ece']:.3f} over "
                     f"{report['calibration']['n']} cycles (reliability.png)")
    lines.append(f"- out-of-domain warnings: {report.get('out_of_domain_cycles', 0)} cycles")
    lines += ["", "## Stage latency (ms)", "", "| stage | n | p50 | p90 | p99 | max | budget | over budget |",
              "|---|---|---|---|---|---|---|---|"]
    for name, st in report["stages"].items():
        budget = report["budgets_ms"].get(name)
        over = report["over_budget"].get(name, 0)
        lines.append(f"| {name} | {st['n']} | {st['p50_ms']:.1f} | {st['p90_ms']:.1f} | {st['p99_ms']:.1f} | "
                     f"{st['max_ms']:.1f} | {budget if budget is not None else '-'} | {over} |")
    lines += ["", "## Verdicts", "", "| verdict | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["verdicts"].items()]
    if "confusion" in report:
        predicted = sorted({p for row in report["confusion"].values() for p in row})
        lines += ["", "## Confusion (rows: expected primary, columns: predicted)", "",
                  "| expected | " + " | ".join(predicted) + " |", "|---|" + "---|" * len(predicted)]
        for exp, row in report["confusion"].items():
            lines.append(f"| {exp} | " + " | ".join(str(row.get(p, 0)) for p in predicted) + " |")
        lines += ["", "## Windows", "", "| from s | to s | expected | acceptable | cycles | agreement |",
                  "|---|---|---|---|---|---|"]
        for w in report["windows"]:
            ag = f"{w['agreement']:.0%}" if w["agreement"] is not None else "-"
            lines.append(f"| {w['start_ms'] / 1000:.1f} | {w['end_ms'] / 1000:.1f} | {w['expected']} | "
                         f"{', '.join(w['acceptable'])} | {w['n']} | {ag} |")
    lines += ["", "## Pictures", ""]
    for title, name in files.items():
        lines.append(f"- {title}: [{name}]({name})" if name.endswith(".mp4") else f"![{title}]({name})")
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: str | Path,
    *,
    advice: Sequence[Mapping[str, Any]] | str | Path,
    status: Sequence[Mapping[str, Any]] | str | Path | None = None,
    labels: Sequence[LabelWindow] | str | Path | None = None,
    budgets_ms: Mapping[str, float] | None = None,
    video: str | Path | None = None,
    video_times_ms: Sequence[float | None] | None = None,
    video_start_mono_ns: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ReportFiles:
    """Write report.json, report.md, stages.png, timeline.png and (with ``video``) annotated.mp4.

    ``advice``/``status``: dicts as received (or JSONL paths); ``labels``: windows or a
    labels.jsonl path; ``budgets_ms``: stage name (``encode`` or ``encode_ms``) -> budget;
    ``video_times_ms``: per advice, the video time of its newest frame (overrides the capture
    timestamps); ``extra``: more top-level keys for report.json (mode, bundle, ...)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    messages, recorded = parse_advice(_rows(advice))
    statuses = parse_status(_rows(status))
    windows: list[LabelWindow] = []
    if labels is not None:
        windows = load_labels(labels) if isinstance(labels, (str, Path)) else list(labels)
    budgets = {stage_name(k): float(v) for k, v in (budgets_ms or {}).items()}
    cycles = place_cycles(messages, recorded, video_times_ms, video_start_mono_ns)

    stages = stage_stats(messages)
    over_budget = {name: sum(1 for m in messages if (v := getattr(m.stages, f"{name}_ms", None)) is not None and v > b)
                   for name, b in budgets.items()}
    verdicts = Counter(m.verdict.value for m in messages)
    body: dict[str, Any] = {
        "stages": stages,
        "budgets_ms": budgets,
        "over_budget": over_budget,
        "verdicts": {v.value: verdicts.get(v.value, 0) for v in Verdict},
        "frame_drop_ratio": statuses[-1].frame_drop_ratio if statuses else None,
        "advice_count": len(messages),
        "advice_with_action": sum(1 for m in messages if m.advice is not None),
        "status_count": len(statuses),
        "actions": dict(Counter(c.action.value for c in cycles if c.action)),
        "out_of_domain_cycles": sum(1 for m in messages if OUT_OF_DOMAIN in m.verdict_reason),
    }
    if windows:
        body.update(agreement(cycles, windows))
    if extra:
        body.update(extra)
    report = make_report("sim", results=stages, ratios={}, **body)

    stages_png = plot_stages(cycles, budgets, out / "stages.png")
    timeline_png = plot_timeline(cycles, windows, out / "timeline.png")
    reliability_png = None
    if "calibration" in report:
        reliability_png = plot_reliability(report["calibration"], out / "reliability.png")
    annotated = None
    if video is not None:
        annotated, frame_cycles = annotate_video(Path(video), cycles, windows, out / "annotated.mp4")
        report["annotated_frames"] = len(frame_cycles)
        report["annotated_cycles"] = frame_runs(frame_cycles)
    report_json = write_json(out / "report.json", report)
    pictures = {"stage latency": stages_png.name, "advice timeline": timeline_png.name}
    if reliability_png is not None:
        pictures["confidence reliability"] = reliability_png.name
    if annotated is not None:
        pictures["annotated video"] = annotated.name
    report_md = out / "report.md"
    report_md.write_text(_markdown(report, pictures))
    return ReportFiles(out, report_json, report_md, stages_png, timeline_png, annotated, report)

