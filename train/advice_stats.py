"""What a bundle needs to say how sure its advice is and when its input is foreign.

    edge fit-advice --bundle B --ood-scenes scenes/train --ood-real data/drive \
        --calibration-scenes scenes/validation --out models/default/advice_stats.json

- **Out-of-domain statistics** (edge.ood): the pooled vision embedding of clips from the data the
  model was trained on (rendered training scenes and the real training recordings), one clip a
  second, through the runtime's reader, preprocessing and the encoder the runtime runs by default.
- **Confidence calibration** (edge.llm.confidence): Platt scaling fitted on the raw action
  probability against correctness over every cycle of a lock-step replay of labelled scenes
  (the validation scenes: never the held-out ones, which judge the result).

The file goes next to the checkpoint (models/default/advice_stats.json); `build_default_bundle`
writes it into the bundle (ood_stats.json and the manifest's quality.confidence_calibration), and
`apply_to_bundle` does the same for any bundle.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.llm.confidence import CALIBRATION_KEY, ConfidenceCalibration, expected_calibration_error, fit_platt
from edge.manifest import BundleManifest, add_file, load_bundle, write_manifest
from edge.ood import OOD_STATS_NAME, OodStats, pooled_embedding

ADVICE_STATS_NAME = "advice_stats.json"
OOD_REPORT_KEY = "ood_stats"


def shipped_vision(manifest: BundleManifest):
    """The ONNX vision artifact the runtime picks on a CPU: INT8 when adopted, else fp32."""
    adopted = manifest.adopted_vision("onnx")
    by_precision = {a.precision: a for a in adopted}
    return by_precision.get("int8") or by_precision.get("fp32") or adopted[0]


def clip_embeddings(bundle: Path, videos: list[Path], every_ms: float = 1000.0,
                    progress: Callable[[str], None] | None = None) -> np.ndarray:
    """Pooled embeddings [n, 2 * width] of clips ending every `every_ms` in each video."""
    from edge.capture import VideoFileStepper
    from edge.config import CameraConfig
    from edge.preprocess import Preprocessor
    from edge.vision.onnxruntime import OnnxRuntimeBackend

    manifest, bundle_dir = load_bundle(bundle, verify_hashes=False)
    artifact = shipped_vision(manifest)
    camera = CameraConfig()
    preprocessor = Preprocessor(manifest.profile, manifest.normalization, resize_mode=camera.resize,
                                pixel_format=artifact.pixel_format)
    backend = OnnxRuntimeBackend(bundle_dir, artifact, use_cuda=False)
    frames = manifest.profile.frames_per_clip
    out = []
    try:
        for i, video in enumerate(videos):
            with VideoFileStepper(video) as stepper:
                t = (frames - 1) * camera.interval_ms
                while (clip := stepper.clip_at(t, camera.interval_ms, frames)) is not None:
                    pixels = preprocessor.preprocess_clip(clip.frames, clip.frame_ids)
                    out.append(pooled_embedding(backend.encode(pixels)))
                    t += every_ms
            if progress is not None:
                progress(f"embedded {i + 1}/{len(videos)}: {video} ({len(out)} clips so far)")
    finally:
        backend.close()
    return np.stack(out)


def fit_ood(bundle: Path, scenes: list[Path], real: Path | None,
            progress: Callable[[str], None] | None = None) -> OodStats:
    from sim.real_labels import find_real_clips

    videos = sorted(p for root in scenes for p in Path(root).rglob("video.mp4"))
    if real is not None:
        videos += [c.video for c in find_real_clips(real, split="train")]
    if not videos:
        raise ValueError("no videos to fit the out-of-domain statistics on")
    embeddings = clip_embeddings(bundle, videos, progress=progress)
    names = ", ".join(str(s) for s in scenes) + (f" + {real} (train split)" if real else "")
    return OodStats.fit(embeddings, source=f"{len(embeddings)} clips of {len(videos)} videos: {names}")


def fit_confidence(bundle: Path, scenes: Path, combo: str | None = None,
                   progress: Callable[[str], None] | None = None) -> tuple[ConfidenceCalibration, dict]:
    """Replay the labelled scenes with the bundle as it is (raw confidence when it has no
    calibration yet) and fit Platt scaling on the raw probabilities."""
    from train.eval import evaluate
    from train.gate import shipped_combo

    name = combo or shipped_combo(bundle)
    report = evaluate(bundle, scenes, None, combos=[name], progress=progress, keep_raw=True)
    cycles = report["precisions"][name]["calibration_cycles"]
    raw = [c["raw"] for c in cycles]
    correct = [c["correct"] for c in cycles]
    a, b = fit_platt(raw, correct)
    calibration = ConfidenceCalibration(a, b, fitted_on=f"{len(raw)} cycles of {scenes} ({name})")
    fitted = [calibration.apply(r) for r in raw]
    summary = {"combo": name, "cycles": len(raw), "a": a, "b": b,
               "ece_raw": expected_calibration_error(raw, correct)["ece"],
               "ece_fitted": expected_calibration_error(fitted, correct)["ece"]}
    return calibration, summary


def apply_to_bundle(bundle: Path, stats: dict) -> None:
    """Write the statistics file's content into a bundle (ood_stats.json + the manifest)."""
    manifest, bundle_dir = load_bundle(bundle, verify_hashes=False)
    if stats.get("ood"):
        (bundle_dir / OOD_STATS_NAME).write_text(json.dumps(stats["ood"]) + "\n")
        manifest.reports[OOD_REPORT_KEY] = OOD_STATS_NAME
        add_file(manifest, bundle_dir, OOD_STATS_NAME)
    if stats.get("confidence"):
        manifest.quality[CALIBRATION_KEY] = stats["confidence"]
    write_manifest(bundle_dir, manifest)
