"""`edge eval --real DIR`: how a bundle behaves on recorded drives, labelled like the synthetic scenes.

Every labelled recording in DIR (NAME.mp4 + NAME.labels.jsonl; sim.real_labels) is replayed in
lock-step through the runtime loop without navigation, once per precision combination, and every
cycle is judged against the label window of its newest frame (windows with source "unjudged" are
skipped: a camera turned away, for example). Besides accuracy it counts **false alarms**: advice
whose action is stop, pull_over, yield, turn_left or turn_right where the window does not accept
it, or that names a hazard the window does not list (the hazards that are in view); and
**unwarranted manoeuvres**: nudges and lane changes the window does not accept. Figures per
clip, per condition (clips.json) and overall, with the confidence's calibration and the
out-of-domain rate. `--emulate dusk,night` adds darkened copies of every clip (an exposure
transform, sim.real_labels.LOOKS: not real dusk or night footage), reported as their own
conditions.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edge.confirm import ALARM_ACTIONS as RUNTIME_ALARMS
from edge.manifest import load_bundle
from sim.labels import LabelWindow, window_at
from sim.real_labels import RealClip, find_real_clips, load_clip_labels, write_look
from train.dataset import Scene
from train.eval import (
    Combo,
    SceneRun,
    calibration_figures,
    choose_combos,
    cycle_signals,
    effective_confirm_cycles,
    judge_cycles,
    replay_overrides,
    write_reliability_plots,
)

# The runtime's alarms (edge.confirm), as the action strings the replay reports.
ALARM_ACTIONS = frozenset(a.value for a in RUNTIME_ALARMS)
# Not alarms, but wrong on ordinary road where the labels do not accept them: a model that swerves
# on every dark clip must show in the report even though it never raises an alarm.
MANOEUVRE_ACTIONS = frozenset({"nudge_left", "nudge_right", "change_lane_left", "change_lane_right"})
UNJUDGED = "unjudged"


def _rate(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def false_alarm(action: str, hazards: tuple[str, ...], window: LabelWindow) -> bool:
    """An alarming action the window does not accept, or a hazard that is not there."""
    if action in ALARM_ACTIONS and not window.accepts(action):
        return True
    present = {h.value for h in window.hazards}
    return any(h not in present for h in hazards)


def judged_windows(windows: list[LabelWindow]) -> list[LabelWindow]:
    return [w for w in windows if w.source != UNJUDGED]


def clip_figures(run: SceneRun, windows: list[LabelWindow], condition: str) -> dict:
    alarms, judged, manoeuvres = [], [], []
    for action, t_ms, sig in zip(run.actions, run.video_ms, run.signals, strict=True):
        window = window_at(windows, t_ms)
        if window is None or window.source == UNJUDGED:
            continue
        judged.append(window.accepts(action) if action != "no_advice" else False)
        alarms.append(action != "no_advice" and false_alarm(action, sig.hazards, window))
        manoeuvres.append(action in MANOEUVRE_ACTIONS and not window.accepts(action))
    return {"condition": condition, "cycles": len(judged), "false_alarms": sum(alarms),
            "false_alarm_rate": _rate(alarms), "unwarranted_manoeuvres": sum(manoeuvres),
            "accuracy": _rate(judged),
            "actions": {a: run.actions.count(a) for a in sorted(set(run.actions))},
            "out_of_domain_rate": _rate([s.out_of_domain for s in run.signals]),
            "cycles_detail": [[round(t), a, s.confidence, s.out_of_domain, list(s.hazards)]
                              for t, a, s in zip(run.video_ms, run.actions, run.signals, strict=True)]}


def aggregate(per_clip: dict[str, dict]) -> dict:
    cycles = sum(c["cycles"] for c in per_clip.values())
    alarms = sum(c["false_alarms"] for c in per_clip.values())
    correct = sum(c["accuracy"] * c["cycles"] for c in per_clip.values() if c["accuracy"] is not None)
    return {"clips": len(per_clip), "cycles": cycles, "false_alarms": alarms,
            "false_alarm_rate": alarms / cycles if cycles else None,
            "unwarranted_manoeuvres": sum(c["unwarranted_manoeuvres"] for c in per_clip.values()),
            "accuracy": correct / cycles if cycles else None}


def emulated_clips(clips: list[RealClip], looks: list[str], folder: Path) -> list[RealClip]:
    """Darkened copies of the clips (same labels, low visibility allowed as a hazard)."""
    out = []
    for clip in clips:
        windows = load_clip_labels(clip)
        for look in looks:
            name = f"{clip.name}.{look}_emulated"
            video = write_look(clip.video, folder / f"{name}.mp4", f"{look}_emulated")
            labels = folder / f"{name}.labels.jsonl"
            rows = []
            for w in windows:
                row = w.to_json()
                if "low_visibility" not in row["hazards"] and len(row["hazards"]) < 4:
                    row["hazards"].append("low_visibility")
                rows.append(json.dumps(row))
            labels.write_text("\n".join(rows) + "\n")
            out.append(RealClip(video, labels, name, f"{look} (emulated from {clip.condition})", clip.split))
    return out


def _replay_clip(bundle_dir: Path, clip: RealClip, config, models) -> SceneRun:
    from sim.replay import ReplayOptions, replay_scene

    started = time.monotonic()
    windows = load_clip_labels(clip)
    result = replay_scene(bundle_dir, clip.video, None, None, ReplayOptions(annotate=False), config=config,
                          models=models)
    actions, times, correct, lost = judge_cycles(result, judged_windows(windows))
    scene = Scene(clip.video.parent, clip.name, clip.name, 0, clip.condition, 0.0)
    return SceneRun(scene, actions, times, correct, time.monotonic() - started, lost, cycle_signals(result))


def evaluate_real(bundle: Path | str | None, folder: Path | str, out: Path | str | None = None, *,
                  combos: list[str] | None = None, split: str | None = "validation", emulate: list[str] | None = None,
                  progress: Callable[[str], None] | None = print, confirm_cycles: int | None = None) -> dict:
    """Replay every labelled recording of `folder` (one split of clips.json; None: all) per
    precision combination; write and return the report."""
    from edge.benchreport import machine_info
    from edge.runtime import load_model_parts
    from sim.replay import replay_config

    if bundle is None:
        from train.default import ensure_default_bundle

        bundle = ensure_default_bundle()
    manifest, bundle_dir = load_bundle(bundle)
    chosen, reference = choose_combos(manifest, combos)
    clips = find_real_clips(folder, split=split)
    windows = {c.name: load_clip_labels(c) for c in clips}  # refuses mismatched labels before any replay
    with tempfile.TemporaryDirectory(prefix="edge-eval-emulated-") as tmp:
        if emulate:
            extra = emulated_clips(clips, emulate, Path(tmp))
            clips = clips + extra
            windows.update({c.name: load_clip_labels(c) for c in extra})
        report_precisions = {name: data for name, data in
                             _run_combos(bundle_dir, chosen, clips, windows, load_model_parts, replay_config,
                                         progress, replay_overrides(confirm_cycles)).items()}
    report = {
        "bench": "eval_real", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(), "bundle": str(bundle_dir), "bundle_sha256": manifest.bundle_sha256(),
        "folder": str(folder), "split": split, "emulated": emulate or [], "reference": reference.name,
        "false_alarm_actions": sorted(ALARM_ACTIONS),
        "confirm_cycles": effective_confirm_cycles(confirm_cycles),
        "precisions": report_precisions,
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
        write_reliability_plots(report, Path(out))
    return report


def _run_combos(bundle_dir, chosen: list[Combo], clips: list[RealClip], windows: dict, load_model_parts,
                replay_config, progress, overrides: list[str]) -> dict:
    out = {}
    for combo in chosen:
        config = replay_config(bundle_dir, vision_precision=combo.vision, decoder_quant=combo.decoder,
                               overrides=overrides)
        models = load_model_parts(config, verify_hashes=False)
        runs, per_clip = [], {}
        try:
            for clip in clips:
                run = _replay_clip(bundle_dir, clip, config, models)
                runs.append(run)
                per_clip[clip.name] = clip_figures(run, windows[clip.name], clip.condition)
                if progress is not None:
                    figures = per_clip[clip.name]
                    progress(f"[{combo.name}] {clip.name}: {figures['false_alarms']}/{figures['cycles']} false alarms "
                             f"({run.wall_s:.1f} s)")
        finally:
            models.close()
        conditions = sorted({c["condition"] for c in per_clip.values()})
        out[combo.name] = {
            **aggregate(per_clip),
            "per_condition": {cond: aggregate({k: v for k, v in per_clip.items() if v["condition"] == cond})
                              for cond in conditions},
            "per_clip": per_clip,
            **calibration_figures(runs),
        }
    return out
