"""`edge calib`: drive clips -> INT8 QDQ vision model -> held-out accuracy -> bundle manifest.

The bundle is changed only at the very end, after quantisation and measurement succeeded: the new
files are staged in a hidden folder inside the bundle and moved into place together with the
manifest update, so a failed run leaves the bundle as it was. Re-running replaces the previous
INT8 model (and its report).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from calib.accuracy import AccuracySummary, measure_heldout, vision_slice_count
from calib.clips import (
    DEFAULT_INTERVAL_MS,
    DEFAULT_RESIZE,
    CalibrationError,
    ClipSplit,
    overlapping_frames,
    sample_clips,
)
from calib.quantize import QuantizedModel, QuantSettings, quantize_vision
from edge.manifest import BundleManifest, VisionArtifact, add_file, load_bundle, write_manifest

INT8_NAME = "vision_int8.onnx"
REPORT_NAME = "int8_accuracy"
REPORT_PATH = f"reports/{REPORT_NAME}.json"
DEFAULT_CLIPS = 32
DEFAULT_HELDOUT = 8
DEFAULT_THRESHOLD = 0.99
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


@dataclass
class CalibrationResult:
    artifact: VisionArtifact
    accuracy: AccuracySummary
    report: dict
    report_path: Path
    adopted: bool
    passed: bool


def expand_videos(paths: Sequence[str | Path]) -> list[str]:
    """Video arguments: files as given, folders expanded to their video files (sorted)."""
    videos: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise CalibrationError(f"folder {path} holds no video file ({', '.join(VIDEO_SUFFIXES)})")
            videos.extend(str(p) for p in found)
        else:
            videos.append(str(path))
    return videos


def fp32_onnx(manifest: BundleManifest) -> VisionArtifact:
    art = manifest.find_vision("onnx", "fp32")
    if art is not None:
        return art
    raise CalibrationError("the bundle has no fp32 ONNX vision model to quantise (export it with `edge export bundle`)")


def onnx_encoder(bundle_dir: Path, artifact: VisionArtifact, threads: int = 0) -> Callable:
    """The runtime's own ONNX Runtime backend (CPU), as a plain function pixel_values -> rows."""
    from edge.vision.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(bundle_dir, artifact, use_cuda=False, threads=threads)
    return backend.encode


def _artifact_files(art: VisionArtifact) -> list[str]:
    return [art.path] + ([art.external_data] if art.external_data else [])


def _drop_previous_int8(manifest: BundleManifest, bundle_dir: Path) -> None:
    """Forget (and delete) an earlier INT8 ONNX model and its report."""
    for art in [a for a in manifest.vision if a.format == "onnx" and a.precision == "int8"]:
        manifest.vision.remove(art)
        for rel in _artifact_files(art):
            manifest.files.pop(rel, None)
            (bundle_dir / rel).unlink(missing_ok=True)
    old_report = manifest.reports.pop(REPORT_NAME, None)
    if old_report:
        manifest.files.pop(old_report, None)


def build_report(
    quantized: QuantizedModel,
    accuracy: AccuracySummary,
    split: ClipSplit,
    *,
    model_rel: str,
    reference_rel: str,
    threshold: float,
    passed: bool,
    adopted: bool,
    forced: bool,
    interval_ms: float,
    resize_mode: str = DEFAULT_RESIZE,
) -> dict:
    return {
        "report": REPORT_NAME,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": model_rel,
        "reference": reference_rel,
        "quantization": {
            **quantized.settings.as_dict(),
            "kept_float_nodes": quantized.kept_float,
            "quantized_nodes": quantized.quantized_nodes,
        },
        "threshold": threshold,
        "decision_metric": "minimum cosine over output slices (merger, deepstack_k) and held-out clips",
        "worst_cosine": accuracy.worst_cosine,
        "passed": passed,
        "adopted": adopted,
        "forced": forced,
        "worst_clip": {"clip": accuracy.worst_clip, "output": accuracy.worst_output, "cosine": accuracy.worst_cosine},
        "outputs": accuracy.outputs,
        "heldout": accuracy.per_clip,
        "calibration_clips": [
            {"clip": c.label, "video": c.video, "t_ms": c.t_ms, "frame_ids": list(c.frame_ids)} for c in split.calibration
        ],
        "sampling": {"interval_ms": interval_ms, "resize": resize_mode, "through": "edge.capture.VideoFileStepper + edge.preprocess.Preprocessor"},
        "skipped_videos": [{"video": v, "reason": r} for v, r in split.skipped],
        "notes": split.notes,
    }


@dataclass(frozen=True)
class CalibrationOptions:
    """How `calibrate_bundle` samples, quantises and decides (`edge calib`'s flags)."""

    clips: int = DEFAULT_CLIPS
    heldout: int = DEFAULT_HELDOUT
    settings: QuantSettings = field(default_factory=QuantSettings)
    threshold: float = DEFAULT_THRESHOLD  # adopted when the worst held-out slice cosine reaches it
    force: bool = False  # adopt even below the threshold (the report says so)
    interval_ms: float = DEFAULT_INTERVAL_MS
    resize_mode: str = DEFAULT_RESIZE
    progress: bool = True
    log: Callable[[str], None] = print


@dataclass
class _Staged:
    """The quantised model moved into the bundle (the manifest not yet updated)."""

    quantized: QuantizedModel
    accuracy: AccuracySummary
    model_rel: str
    data_rel: str | None


def calibrate_bundle(bundle: str | Path, videos: Sequence[str | Path],
                     options: CalibrationOptions | None = None) -> CalibrationResult:
    """Calibrate, measure on held-out clips, and record the INT8 model in the bundle.

    Adopted (used by the runtime's `precision=auto`) only when the worst held-out slice cosine is
    at least `options.threshold`, or when `options.force` is set. Raises CalibrationError with a
    clear message when no clip can be read.
    """
    o = options or CalibrationOptions()
    if not 0.0 < o.threshold <= 1.0:
        raise CalibrationError(f"--threshold must be in (0, 1], got {o.threshold}")
    manifest, bundle_dir = load_bundle(bundle)
    reference = fp32_onnx(manifest)
    split = _sample_split(manifest, reference, expand_videos(videos), o)
    staged = _quantize_and_measure(manifest, bundle_dir, reference, split, o)
    passed = staged.accuracy.worst_cosine >= o.threshold
    adopted = passed or o.force
    report = build_report(
        staged.quantized, staged.accuracy, split, model_rel=staged.model_rel, reference_rel=reference.path,
        threshold=o.threshold, passed=passed, adopted=adopted, forced=o.force and not passed,
        interval_ms=o.interval_ms, resize_mode=o.resize_mode,
    )
    report_path = bundle_dir / REPORT_PATH
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    artifact = _record_int8(manifest, bundle_dir, reference, staged, passed, adopted, o)
    return CalibrationResult(artifact, staged.accuracy, report, report_path, adopted=adopted, passed=passed)


def _sample_split(manifest: BundleManifest, reference: VisionArtifact, video_list: list[str],
                  o: CalibrationOptions) -> ClipSplit:
    def skipped(video: str, reason: str) -> None:
        o.log(f"skipping video {video}: {reason}")

    split = sample_clips(
        video_list,
        manifest.profile,
        manifest.normalization,
        o.clips,
        o.heldout,
        interval_ms=o.interval_ms,
        resize_mode=o.resize_mode,
        pixel_format=reference.pixel_format,
        on_skip=skipped,
        progress=o.progress,
    )
    for note in split.notes:
        o.log(f"note: {note}")
    shared = overlapping_frames(split.calibration, split.heldout)
    if shared:  # cannot happen by construction; an honest report is worth the check
        raise CalibrationError(f"held-out clips share frames with calibration clips: {sorted(shared)[:5]}")
    o.log(f"{len(split.calibration)} calibration clips, {len(split.heldout)} held-out clips "
          f"from {len(video_list) - len(split.skipped)} video(s)")
    return split


def _quantize_and_measure(manifest: BundleManifest, bundle_dir: Path, reference: VisionArtifact,
                          split: ClipSplit, o: CalibrationOptions) -> _Staged:
    """Quantise into a staging folder inside the bundle, measure on the held-out clips, then move
    the files into place (a failure before the move leaves the bundle as it was)."""
    settings = o.settings
    vision_dir = (bundle_dir / reference.path).parent
    with tempfile.TemporaryDirectory(prefix=".calib-staging.", dir=vision_dir) as staging:
        staged_path = Path(staging) / INT8_NAME
        from tqdm import tqdm

        bar = tqdm(total=len(split.calibration) if settings.mode == "static" else 0, desc=f"quantise ({settings.describe()})",
                   unit="clip", disable=not o.progress)
        quantized = quantize_vision(
            bundle_dir / reference.path,
            staged_path,
            reference.input_name,
            [c.pixel_values for c in split.calibration],
            settings,
            progress=bar.update,
        )
        bar.close()

        staged_artifact = reference.model_copy(
            update={
                "path": Path(staged_path).relative_to(bundle_dir).as_posix(),
                "precision": "int8",
                "external_data": None,
                "accuracy": None,
                "adopted": False,
                "built_for": None,
                "timing_cache": None,
            }
        )
        accuracy = measure_heldout(
            onnx_encoder(bundle_dir, reference),
            onnx_encoder(bundle_dir, staged_artifact),
            split.heldout,
            vision_slice_count(manifest, reference),
        )
        final_rel = (Path(reference.path).parent / INT8_NAME).as_posix()
        final_data_rel = f"{final_rel}.data" if quantized.external_data else None
        _drop_previous_int8(manifest, bundle_dir)
        (bundle_dir / final_rel).with_name(INT8_NAME + ".data").unlink(missing_ok=True)
        shutil.move(str(staged_path), bundle_dir / final_rel)
        if quantized.external_data:
            shutil.move(str(quantized.external_data), bundle_dir / str(final_data_rel))
    return _Staged(quantized, accuracy, final_rel, final_data_rel)


def _record_int8(manifest: BundleManifest, bundle_dir: Path, reference: VisionArtifact, staged: _Staged,
                 passed: bool, adopted: bool, o: CalibrationOptions) -> VisionArtifact:
    """The INT8 artifact and its report into the manifest; TensorRT INT8 plans built from an
    earlier INT8 model stop being adopted."""
    entry = staged.accuracy.manifest_entry(o.threshold, REPORT_PATH)
    entry["quantization"] = staged.quantized.settings.describe()
    entry["forced"] = o.force and not passed
    artifact = reference.model_copy(
        update={
            "path": staged.model_rel,
            "precision": "int8",
            "external_data": staged.data_rel,
            "accuracy": entry,
            "adopted": adopted,
            "built_for": None,
            "timing_cache": None,
        }
    )
    manifest.vision.append(artifact)
    manifest.reports[REPORT_NAME] = REPORT_PATH
    for rel in [*_artifact_files(artifact), REPORT_PATH]:
        add_file(manifest, bundle_dir, rel)
    new_sha = manifest.files[artifact.path]
    for plan in manifest.vision:
        stale = (plan.built_for or {}).get("source_sha256") != new_sha
        if plan.format == "tensorrt" and plan.precision == "int8" and plan.adopted and stale:
            plan.adopted = False
            o.log(f"TensorRT plan {plan.path} was built from an earlier INT8 model: no longer adopted "
                  "(rebuild it with `edge export trt --precision int8`)")
    write_manifest(bundle_dir, manifest)
    return artifact
