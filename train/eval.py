"""`edge eval`: meta-action accuracy of a bundle on labelled scenes, per precision combination.

Every scene is replayed in lock-step through the real runtime loop (sim.replay.replay_scene: the
bundle's ONNX encoder in ONNX Runtime, its GGUF decoder in llama.cpp, the grammar, ZeroMQ), once
per (vision precision, decoder quant) pair in the bundle. A cycle counts as correct when its
advice's action is one the label window of its newest frame accepts (labels.jsonl lists the
acceptable actions, primary first); a cycle without advice counts as wrong, and so does a cycle whose
advice the recording planner never received (counted under "lost": the loop's cycles are judged, not
just the messages that arrived, so a lost message cannot shrink the denominator). Agreement compares each
combination's per-cycle action with the most precise combination's (fp32 encoder + the widest
decoder), cycle by cycle: how often quantisation changes the decision.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edge.config import build_config
from edge.manifest import BundleManifest, load_bundle
from sim.labels import LabelWindow, load_labels, window_at
from train.dataset import Scene, find_scenes

if TYPE_CHECKING:
    from sim.replay import ReplayResult

REPORT_NAME = "eval"
# Most precise first: the reference combination is the first that exists.
VISION_ORDER = ("fp32", "fp16", "int8")
DECODER_ORDER = ("f32", "f16", "q8_0", "q4_k_m", "q4_0")
NO_ADVICE = "no_advice"


@dataclass(frozen=True)
class Combo:
    vision: str
    decoder: str

    @property
    def name(self) -> str:
        return f"{self.vision}+{self.decoder}"

    @classmethod
    def parse(cls, text: str) -> Combo:
        vision, sep, decoder = text.partition("+")
        if not sep or not vision or not decoder:
            raise ValueError(f"precision combination {text!r} must read ENCODER+DECODER, e.g. int8+q4_k_m")
        return cls(vision.lower(), decoder.lower())


def bundle_combos(manifest: BundleManifest) -> list[Combo]:
    """Every (adopted ONNX vision precision, decoder quant) pair, most precise first."""
    visions = sorted({a.precision for a in manifest.adopted_vision("onnx")}, key=VISION_ORDER.index)
    decoders = sorted({d.quant for d in manifest.decoder}, key=DECODER_ORDER.index)
    if not visions or not decoders:
        raise ValueError("the bundle needs at least one adopted ONNX vision model and one decoder to evaluate")
    return [Combo(v, d) for v in visions for d in decoders]


@dataclass
class SceneRun:
    scene: Scene
    actions: list[str]  # per cycle: the advised action or "no_advice"
    video_ms: list[float]
    correct: list[bool | None]  # None: no label window at that time
    wall_s: float
    lost: int = 0  # cycles whose advice the recording planner did not receive (judged as no advice)
    signals: list[CycleSignals] = field(default_factory=list)  # per cycle: confidence, out-of-domain, hazards


@dataclass(frozen=True)
class CycleSignals:
    """What a cycle said besides its action: how sure (as published and raw), whether the input
    looked foreign, and the hazards it named."""

    confidence: float | None
    raw: float | None
    out_of_domain: bool
    hazards: tuple[str, ...] = ()


def cycle_signals(result: ReplayResult) -> list[CycleSignals]:
    out = []
    for cycle, outcome in zip(result.cycles(), result.outcomes, strict=True):
        message = cycle.received
        advice = message.advice if message is not None else None
        out.append(CycleSignals(
            message.confidence if message is not None else None,
            outcome.decode.confidence_raw if outcome.decode is not None and advice is not None else None,
            bool(outcome.ood is not None and outcome.ood.out_of_domain),
            tuple(h.value for h in advice.hazards) if advice is not None else ()))
    return out


def judge_cycles(result: ReplayResult, windows: list[LabelWindow]
                 ) -> tuple[list[str], list[float], list[bool | None], int]:
    """Per cycle the loop ran: the action the planner received (or no_advice), the newest frame's
    video time, whether the label window there accepts it, and how many cycles' advice was lost."""
    actions, times, correct = [], [], []
    lost = 0
    for cycle in result.cycles():
        message = cycle.received
        lost += message is None
        action = message.advice.action.value if message is not None and message.advice is not None else NO_ADVICE
        actions.append(action)
        times.append(cycle.video_time_ms)
        window = window_at(windows, cycle.video_time_ms)
        correct.append(None if window is None else (action != NO_ADVICE and window.accepts(action)))
    return actions, times, correct, lost


def run_scene(bundle_dir: Path, scene: Scene, config, models) -> SceneRun:
    from sim.replay import ReplayOptions, replay_scene

    started = time.monotonic()
    result = replay_scene(bundle_dir, scene.video, scene.nav, None,
                          ReplayOptions(mode="lockstep", annotate=False), config=config, models=models)
    actions, times, correct, lost = judge_cycles(result, load_labels(scene.labels))
    return SceneRun(scene, actions, times, correct, time.monotonic() - started, lost, cycle_signals(result))


def _rate(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def calibration_figures(runs: list[SceneRun], keep_raw: bool = False) -> dict:
    """ECE and reliability bins of the published confidence over the judged cycles with advice,
    the out-of-domain rate over every cycle, and (keep_raw) the raw probabilities for fitting."""
    from edge.llm.confidence import expected_calibration_error

    pairs = [(sig, ok) for r in runs for sig, ok in zip(r.signals, r.correct, strict=True)
             if ok is not None and sig.confidence is not None]
    signals = [sig for r in runs for sig in r.signals]
    out = {"calibration": expected_calibration_error([s.confidence for s, _ in pairs], [ok for _, ok in pairs]),
           "out_of_domain_rate": _rate([s.out_of_domain for s in signals]),
           "out_of_domain_cycles": sum(s.out_of_domain for s in signals)}
    if keep_raw:
        out["calibration_cycles"] = [{"raw": s.raw, "correct": ok} for s, ok in pairs if s.raw is not None]
    return out


def summarize(runs: list[SceneRun], keep_raw: bool = False) -> dict:
    judged = [c for r in runs for c in r.correct if c is not None]
    by_scenario: dict[str, list[bool]] = {}
    by_variant: dict[str, list[bool]] = {}
    confusion: dict[str, dict[str, int]] = {}
    for run in runs:
        windows = load_labels(run.scene.labels)
        for action, t_ms, ok in zip(run.actions, run.video_ms, run.correct, strict=True):
            if ok is None:
                continue
            by_scenario.setdefault(run.scene.scenario, []).append(ok)
            by_variant.setdefault(run.scene.variant, []).append(ok)
            expected = window_at(windows, t_ms).primary.value  # type: ignore[union-attr]
            row = confusion.setdefault(expected, {})
            row[action] = row.get(action, 0) + 1
    return {
        "accuracy": _rate(judged),
        "cycles": len(judged),
        "correct": sum(judged),
        "no_advice": sum(a == NO_ADVICE for r in runs for a in r.actions),
        "lost": sum(r.lost for r in runs),  # of the no_advice cycles: published but not received
        "per_scenario": {k: _rate(v) for k, v in sorted(by_scenario.items())},
        "per_variant": {k: _rate(v) for k, v in sorted(by_variant.items())},
        "confusion": {k: dict(sorted(v.items())) for k, v in sorted(confusion.items())},
        # Where the errors are, cycle by cycle: [newest frame's video time (ms), action, correct].
        "per_scene": {run.scene.rel: {"accuracy": _rate([c for c in run.correct if c is not None]),
                                      "cycles": [[round(t_ms), action, ok] for action, t_ms, ok
                                                 in zip(run.actions, run.video_ms, run.correct, strict=True)]}
                      for run in runs},
        "wall_s": round(sum(r.wall_s for r in runs), 1),
        **(calibration_figures(runs, keep_raw) if any(r.signals for r in runs) else {}),
    }


def agreement(a: list[SceneRun], b: list[SceneRun]) -> dict:
    """Share of cycles (matched by scene and newest-frame time) with the same action."""
    same = total = 0
    for ra, rb in zip(a, b, strict=True):
        times_b = dict(zip(rb.video_ms, rb.actions, strict=True))
        for t_ms, action in zip(ra.video_ms, ra.actions, strict=True):
            if t_ms in times_b:
                total += 1
                same += action == times_b[t_ms]
    return {"agreement": same / total if total else None, "cycles": total, "same": same}


def choose_combos(manifest: BundleManifest, combos: list[str] | None) -> tuple[list[Combo], Combo]:
    """The combinations to run (the reference, the bundle's most precise one, always among them)."""
    available = bundle_combos(manifest)
    if combos:
        wanted = [Combo.parse(c) for c in combos]
        missing = [c.name for c in wanted if c not in available]
        if missing:
            raise ValueError(f"precision combination(s) {missing} not in the bundle (has {[c.name for c in available]})")
        chosen = wanted
    else:
        chosen = available
    reference = available[0]
    if reference not in chosen:
        chosen = [reference, *chosen]
    return chosen, reference


def eval_report(manifest: BundleManifest, bundle_dir: Path, scenes: list[Scene], reference: Combo,
                runs: dict[str, list[SceneRun]], keep_raw: bool = False) -> dict:
    """The report of `edge eval` (and `edge fleet eval`): per combination, and each against the reference."""
    from edge.benchreport import machine_info

    return {
        "bench": REPORT_NAME,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "bundle": str(bundle_dir),
        "bundle_sha256": manifest.bundle_sha256(),
        "source": {k: manifest.source.get(k) for k in ("checkpoint", "config_sha256") if k in manifest.source},
        "scenes": [s.rel for s in scenes],
        "mode": "lockstep",
        "reference": reference.name,
        "precisions": {name: summarize(r, keep_raw) for name, r in runs.items()},
        "agreement": {f"{name} vs {reference.name}": agreement(r, runs[reference.name])["agreement"]
                      for name, r in runs.items() if name != reference.name},
        "agreement_detail": {f"{name} vs {reference.name}": agreement(r, runs[reference.name])
                             for name, r in runs.items() if name != reference.name},
    }


def replay_overrides(confirm_cycles: int | None = None) -> list[str]:
    """The runtime settings every evaluation replays with: ONNX Runtime for the encoder, and the
    alarm confirmation the runtime runs (edge.confirm) unless `confirm_cycles` says otherwise
    (1: score the decoder's own decisions)."""
    return ["vision.backend='onnxruntime'", *([f"advice.confirm_cycles={confirm_cycles}"] if confirm_cycles else [])]


def effective_confirm_cycles(confirm_cycles: int | None = None) -> int:
    """The confirmation a replay with `replay_overrides(confirm_cycles)` runs (for the report)."""
    return build_config({}, replay_overrides(confirm_cycles)).advice.confirm_cycles


def evaluate(
    bundle: Path | str | None,
    scenes_root: Path | str,
    out: Path | str | None = None,
    *,
    combos: list[str] | None = None,
    max_scenes: int | None = None,
    progress: Callable[[str], None] | None = print,
    keep_raw: bool = False,
    confirm_cycles: int | None = None,
) -> dict:
    """Replay every scene under `scenes_root` per precision combination; write and return the report."""
    from edge.runtime import load_model_parts
    from sim.replay import replay_config

    if bundle is None:
        from train.default import ensure_default_bundle

        bundle = ensure_default_bundle()
    manifest, bundle_dir = load_bundle(bundle)
    chosen, reference = choose_combos(manifest, combos)
    scenes = find_scenes(scenes_root)
    if max_scenes is not None:
        scenes = scenes[:max_scenes]

    runs: dict[str, list[SceneRun]] = {}
    for combo in chosen:
        config = replay_config(bundle_dir, vision_precision=combo.vision, decoder_quant=combo.decoder,
                               overrides=replay_overrides(confirm_cycles))
        models = load_model_parts(config, verify_hashes=False)  # hashes were verified above
        try:
            runs[combo.name] = []
            for i, scene in enumerate(scenes):
                run = run_scene(bundle_dir, scene, config, models)
                runs[combo.name].append(run)
                if progress is not None:
                    ok = [c for c in run.correct if c is not None]
                    progress(f"[{combo.name}] {i + 1}/{len(scenes)} {scene.rel}: "
                             f"{sum(ok)}/{len(ok)} correct ({run.wall_s:.1f} s)")
        finally:
            models.close()

    report = eval_report(manifest, bundle_dir, scenes, reference, runs, keep_raw)
    report["confirm_cycles"] = effective_confirm_cycles(confirm_cycles)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
        write_reliability_plots(report, Path(out))
    return report


def write_reliability_plots(report: dict, out: Path) -> list[Path]:
    """One reliability plot per precision combination beside the report: OUT.<combo>.reliability.png."""
    from sim.reliability import plot_reliability

    paths = []
    for name, figures in report["precisions"].items():
        if figures.get("calibration"):
            path = out.with_name(f"{out.stem}.{name}.reliability.png")
            paths.append(plot_reliability(figures["calibration"], path, title=f"{name} confidence"))
    return paths
