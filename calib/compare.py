"""`edge calib --compare OUT.json`: which INT8 recipe is the best trade-off on this machine?

Quantises the bundle's vision graph several ways from the same calibration clips, and measures each
against fp32 on the same held-out clips (worst slice cosine) and on CPU latency (median of several
runs on one clip, fp32 timed in the same run). Nothing is written into the bundle; the figures go to
OUT.json in the benchmark shape (`results`, `ratios`) plus each variant's accuracy.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from calib.accuracy import measure_heldout, vision_slice_count
from calib.calibrate import expand_videos, fp32_onnx
from calib.clips import DEFAULT_INTERVAL_MS, ClipSplit, sample_clips
from calib.quantize import QuantSettings, model_bytes, quantize_vision
from edge.benchreport import Report, Stats, make_report, ratio, write_report
from edge.manifest import BundleManifest, VisionArtifact, load_bundle

VARIANTS: dict[str, dict] = {
    "static_matmul_gemm_conv": {"mode": "static", "op_types": ("MatMul", "Gemm", "Conv")},
    "static_gemm_conv": {"mode": "static", "op_types": ("Gemm", "Conv")},
    # The pre-fix graph (Gemm biases fused, Gemm outputs re-quantised): ONNX Runtime leaves the fc1
    # Gemms in fp32, so this variant shows what `split_gemm_bias` buys.
    "static_gemm_conv_fused_bias": {"mode": "static", "op_types": ("Gemm", "Conv"), "split_gemm_bias": False},
    "static_gemm_conv_cpu_qdq": {"mode": "static", "op_types": ("Gemm", "Conv"), "trt_compatible": False},
    "dynamic_gemm_conv": {"mode": "dynamic", "op_types": ("Gemm", "Conv")},
}


def time_encoder(encode: Callable, pixels, runs: int, warmup: int = 1) -> Stats:
    return time_encoders([encode], pixels, runs, warmup)[0]


def time_encoders(encoders: Sequence[Callable], pixels, runs: int, warmup: int = 1) -> list[Stats]:
    """Median-ready samples per encoder, timed alternately (run i of each before run i+1): on a
    machine shared with other work the load drifts over seconds, which back-to-back blocks of runs
    turn into a false ratio."""
    for encode in encoders:
        for _ in range(warmup):
            encode(pixels)
    samples: list[list[float]] = [[] for _ in encoders]
    for _ in range(runs):
        for encode, out in zip(encoders, samples, strict=True):
            start = time.perf_counter()
            encode(pixels)
            out.append((time.perf_counter() - start) * 1000.0)
    return [Stats.from_samples(s) for s in samples]


@dataclass(frozen=True)
class CompareOptions:
    """Which recipes `compare_variants` tries and on how many clips (`edge calib --compare`)."""

    clips: int = 8
    heldout: int = 4
    method: str = "minmax"
    keep_float: tuple[str, ...] = ()
    interval_ms: float = DEFAULT_INTERVAL_MS
    runs: int = 5  # timed runs per variant (fp32 re-timed beside each)
    variants: Sequence[str] | None = None  # names from VARIANTS; None: all
    progress: bool = True
    log: Callable[[str], None] = print


def compare_variants(bundle: str | Path, videos: Sequence[str | Path], out: str | Path,
                     options: CompareOptions | None = None) -> Report:
    o = options or CompareOptions()
    manifest, bundle_dir = load_bundle(bundle)
    reference = fp32_onnx(manifest)
    split = sample_clips(expand_videos(videos), manifest.profile, manifest.normalization, o.clips, o.heldout,
                         interval_ms=o.interval_ms, pixel_format=reference.pixel_format, progress=o.progress,
                         on_skip=lambda v, r: o.log(f"skipping video {v}: {r}"))
    results: dict[str, dict] = {}
    ratios: dict[str, float | None] = {}
    variant_info: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="calib-compare.") as tmp:
        for name in o.variants or list(VARIANTS):
            settings = QuantSettings(method=o.method, keep_float=o.keep_float, **VARIANTS[name])
            o.log(f"variant {name}: {settings.describe()}")
            fp32_stats, stats, variant_info[name] = _measure_variant(
                bundle_dir, manifest, reference, split, settings, Path(tmp) / name / "model.onnx", o.runs)
            results[f"fp32_vs_{name}"] = fp32_stats.as_dict()
            results[name] = stats.as_dict()
            ratios[f"fp32_over_{name}_median"] = ratio(fp32_stats.median_ms, stats.median_ms)
            o.log(f"  worst cosine {variant_info[name]['worst_cosine']:.6f}, median {stats.median_ms:.1f} ms vs fp32 "
                  f"{fp32_stats.median_ms:.1f} ms (x{ratios[f'fp32_over_{name}_median']:.2f})")
    report = make_report(
        "int8_variants",
        results,
        ratios,
        bundle=str(bundle_dir),
        vision_params=int(model_bytes(bundle_dir / reference.path) / 4),
        clips={"calibration": len(split.calibration), "heldout": len(split.heldout), "timed_runs": o.runs},
        variants=variant_info,
    )
    write_report(out, report)
    return report


def _measure_variant(bundle_dir: Path, manifest: BundleManifest, reference: VisionArtifact, split: ClipSplit,
                     settings: QuantSettings, model_path: Path, runs: int) -> tuple[Stats, Stats, dict]:
    """Quantise one recipe, then its accuracy on the held-out clips and its latency beside fp32."""
    from edge.vision.onnxruntime import OnnxRuntimeBackend

    start = time.perf_counter()
    quantized = quantize_vision(bundle_dir / reference.path, model_path, reference.input_name,
                                [c.pixel_values for c in split.calibration], settings)
    quantise_s = time.perf_counter() - start
    artifact = reference.model_copy(update={"path": str(quantized.path), "precision": "int8", "external_data": None})
    # Sessions are opened only after quantising: the full-size tower's calibration alone
    # needs most of a 24 GB machine, an fp32 session beside it does not fit.
    fp32 = OnnxRuntimeBackend(bundle_dir, reference, use_cuda=False)
    backend = OnnxRuntimeBackend(bundle_dir, artifact, use_cuda=False)
    accuracy = measure_heldout(fp32.encode, backend.encode, split.heldout, vision_slice_count(manifest, reference))
    # fp32 is re-timed next to each variant: a box shared with other work drifts over minutes.
    fp32_stats, stats = time_encoders([fp32.encode, backend.encode], split.heldout[0].pixel_values, runs)
    info = {
        "settings": settings.as_dict(),
        "quantise_s": quantise_s,
        "model_mib": model_bytes(quantized.path) / 2**20,
        "quantized_nodes": quantized.quantized_nodes,
        "worst_cosine": accuracy.worst_cosine,
        "row_cosine_min": accuracy.outputs["row"]["cosine_min"],
        "outputs": accuracy.outputs,
        "worst_clip": accuracy.worst_clip,
    }
    del backend, fp32
    gc.collect()
    return fp32_stats, stats, info
