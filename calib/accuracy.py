"""INT8 vs fp32 accuracy on held-out clips, per output slice of the visual row.

A visual row is `[merger | deepstack 1 | ... | deepstack k]` (llama.cpp's decoder input layout), and
each slice feeds a different place of the decoder, so each is judged on its own: cosine over the
whole clip's slice (all tokens flattened) and the largest absolute difference. The adoption decision
uses the worst slice of the worst clip, because one bad slice is enough to mislead the decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from calib.clips import ClipSample
from edge.manifest import BundleManifest, VisionArtifact


def slice_names(n_slices: int) -> list[str]:
    return ["merger", *[f"deepstack_{k}" for k in range(1, n_slices)]]


def vision_slice_count(manifest: BundleManifest, artifact: VisionArtifact) -> int:
    """How many [n_embd]-wide slices a row holds.

    The decoder artifact knows n_deepstack; a vision-only bundle still carries the export's
    self-check, which names one entry per slice. Without either the row is judged as one slice.
    """
    if manifest.decoder:
        return 1 + manifest.decoder[0].n_deepstack
    for art in manifest.vision:
        outputs = (art.accuracy or {}).get("outputs")
        if isinstance(outputs, dict) and outputs and artifact.output_shape[1] % len(outputs) == 0:
            return len(outputs)
    return 1


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64 = np.asarray(a, dtype=np.float64).ravel()
    b64 = np.asarray(b, dtype=np.float64).ravel()
    denom = np.linalg.norm(a64) * np.linalg.norm(b64)
    if denom == 0.0:
        return 1.0 if not a64.any() and not b64.any() else 0.0
    return float(a64 @ b64 / denom)


def compare_rows(reference: np.ndarray, candidate: np.ndarray, n_slices: int) -> dict[str, dict[str, float]]:
    """{"row": {...}, "merger": {...}, "deepstack_1": {...}, ...} with cosine and max_abs_diff."""
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: fp32 {reference.shape} vs candidate {candidate.shape}")
    width = reference.shape[-1]
    if width % n_slices:
        raise ValueError(f"row width {width} is not divisible into {n_slices} slices")
    n_embd = width // n_slices
    result = {"row": _pair(reference, candidate)}
    for i, name in enumerate(slice_names(n_slices)):
        result[name] = _pair(reference[:, i * n_embd : (i + 1) * n_embd], candidate[:, i * n_embd : (i + 1) * n_embd])
    return result


def _pair(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return {"cosine": cosine(a, b), "max_abs_diff": float(diff.max()) if diff.size else 0.0}


@dataclass
class AccuracySummary:
    per_clip: list[dict]  # one entry per held-out clip: {"clip", "video", "t_ms", "frame_ids", "outputs"}
    outputs: dict[str, dict[str, float]]  # name -> {"cosine_min", "cosine_mean", "max_abs_diff"}
    worst_clip: str
    worst_output: str
    worst_cosine: float  # min over slices (not "row") and clips: the adoption metric

    def manifest_entry(self, threshold: float, report_path: str) -> dict:
        """The compact `VisionArtifact.accuracy` dict; the full figures live in the report file."""
        return {
            "reference": "fp32 ONNX, held-out drive clips",
            "cosine": self.outputs["row"]["cosine_min"],
            "cosine_min_slice": self.worst_cosine,
            "max_abs_diff": self.outputs["row"]["max_abs_diff"],
            "worst_clip": self.worst_clip,
            "worst_output": self.worst_output,
            "threshold": threshold,
            "passed": self.worst_cosine >= threshold,
            "heldout_clips": len(self.per_clip),
            "outputs": {k: {"cosine_min": v["cosine_min"], "max_abs_diff": v["max_abs_diff"]} for k, v in self.outputs.items()},
            "report": report_path,
        }


def measure_heldout(
    reference: Callable[[np.ndarray], np.ndarray],
    candidate: Callable[[np.ndarray], np.ndarray],
    clips: Sequence[ClipSample],
    n_slices: int,
) -> AccuracySummary:
    """Run both encoders on every held-out clip and summarise per output slice."""
    if not clips:
        raise ValueError("no held-out clip to measure accuracy on")
    per_clip = []
    for clip in clips:
        want = np.array(reference(clip.pixel_values), copy=True)
        got = np.asarray(candidate(clip.pixel_values))
        per_clip.append(
            {
                "clip": clip.label,
                "video": clip.video,
                "t_ms": clip.t_ms,
                "frame_ids": list(clip.frame_ids),
                "outputs": compare_rows(want, got, n_slices),
            }
        )
    names = list(per_clip[0]["outputs"])
    outputs = {}
    for name in names:
        cosines = [c["outputs"][name]["cosine"] for c in per_clip]
        outputs[name] = {
            "cosine_min": float(min(cosines)),
            "cosine_mean": float(np.mean(cosines)),
            "max_abs_diff": float(max(c["outputs"][name]["max_abs_diff"] for c in per_clip)),
        }
    worst = min(
        ((c["outputs"][name]["cosine"], c["clip"], name) for c in per_clip for name in names if name != "row"),
        key=lambda item: item[0],
    )
    return AccuracySummary(per_clip, outputs, worst_clip=worst[1], worst_output=worst[2], worst_cosine=float(worst[0]))
