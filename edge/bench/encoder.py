"""`edge bench encoder`: vision encoder latency per clip, fp32 vs INT8 (and TensorRT), in one run.

Every backend the bundle and this machine allow is timed on the same clips, round-robin (clip i on
every backend before clip i+1), so slow drift of a shared machine hits all variants alike:
- ONNX Runtime CPU, fp32 and INT8 (the calibrated QDQ model, adopted or not; the JSON says which);
- ONNX Runtime CUDA fp32, where onnxruntime-gpu finds a GPU;
- TensorRT fp16 / int8 plans that were built for this GPU and TensorRT version (a foreign plan is
  listed under `skipped` with the backend's reason).
Each variant's output on the first clip is also compared with ONNX Runtime fp32 CPU (cosine).

Latency does not depend on pixel content for these static graphs, so clips are seeded random
tensors in the encoder's input type and range (the accuracy figures that do depend on content are the
calibration's held-out drive clips, copied from the manifest).

The JSON names the vision tower's preset: INT8 is slower than fp32 on the tiny tower (quantise /
dequantise overhead dominates), so a speed claim is only meaningful on `full-vision`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.benchreport import Report, Stats, make_report, ratio, write_report
from edge.manifest import BundleManifest, VisionArtifact, load_bundle
from edge.vision.base import random_input

# The real 30B-A3B vision tower has ~0.54B parameters, the tiny test tower well under 1M.
FULL_VISION_MIN_PARAMS = 300_000_000
TINY_MAX_PARAMS = 50_000_000


def artifact_bytes(bundle_dir: Path, artifact: VisionArtifact) -> int:
    total = (bundle_dir / artifact.path).stat().st_size
    if artifact.external_data:
        total += (bundle_dir / artifact.external_data).stat().st_size
    return total


def vision_preset(manifest: BundleManifest, bundle_dir: Path) -> dict:
    """Which vision tower the bundle holds: from the manifest's source info when it says, else
    from the fp32 graph's size (4 bytes per parameter; constants are a rounding error)."""
    fp32 = next((a for a in manifest.vision if a.format == "onnx" and a.precision == "fp32"), None)
    params = artifact_bytes(bundle_dir, fp32) // 4 if fp32 else None
    source = manifest.source or {}
    named = source.get("preset") or (source.get("tiny_checkpoint") or {}).get("preset")
    if named:
        return {"preset": named, "params_estimate": params, "from": "manifest source"}
    if params is None:
        return {"preset": "unknown", "params_estimate": None, "from": "no fp32 ONNX graph"}
    if params >= FULL_VISION_MIN_PARAMS:
        preset = "full-vision"
    elif params <= TINY_MAX_PARAMS:
        preset = "tiny"
    else:
        preset = "custom"
    return {"preset": preset, "params_estimate": int(params), "from": "fp32 ONNX size (4 bytes per parameter)"}


def _onnx(manifest: BundleManifest, precision: str) -> VisionArtifact | None:
    return manifest.find_vision("onnx", precision)


def open_backends(bundle_dir: Path, manifest: BundleManifest, threads: int) -> tuple[dict, dict[str, str]]:
    """name -> (backend, info) for everything runnable here; name -> reason for the rest."""
    from edge.vision.base import VisionBackend, VisionBackendError
    from edge.vision.onnxruntime import OnnxRuntimeBackend, available_providers

    backends: dict[str, tuple[VisionBackend, dict]] = {}
    skipped: dict[str, str] = {}
    backend: VisionBackend
    for precision in ("fp32", "int8"):
        art = _onnx(manifest, precision)
        if art is None:
            skipped[f"onnx_{precision}_cpu"] = f"the bundle has no ONNX {precision} model"
            continue
        backend = OnnxRuntimeBackend(bundle_dir, art, use_cuda=False, threads=threads)
        backends[f"onnx_{precision}_cpu"] = (backend, {"artifact": art.path, "adopted": art.adopted})
    fp32 = _onnx(manifest, "fp32")
    if fp32 is not None:
        if "CUDAExecutionProvider" in available_providers():
            backend = OnnxRuntimeBackend(bundle_dir, fp32, use_cuda=True, threads=threads)
            if backend.provider == "CUDAExecutionProvider":
                backends["onnx_fp32_cuda"] = (backend, {"artifact": fp32.path, "adopted": fp32.adopted})
            else:
                skipped["onnx_fp32_cuda"] = f"ONNX Runtime fell back to {backend.provider}"
        else:
            skipped["onnx_fp32_cuda"] = "onnxruntime has no CUDAExecutionProvider here"
    plans = [a for a in manifest.vision if a.format == "tensorrt"]
    if not plans:
        skipped["trt"] = "the bundle has no TensorRT plan (`edge export trt` on the GPU)"
    for plan in plans:
        name = f"trt_{plan.precision}"
        try:
            from edge.vision.tensorrt import TensorRTBackend

            backend = TensorRTBackend(bundle_dir, plan)
        except (VisionBackendError, ImportError) as exc:
            skipped.setdefault(name, "")
            skipped[name] = "; ".join(filter(None, [skipped[name], f"{plan.path}: {exc}"]))
            continue
        if name in backends:  # two plans of one precision both run here: keep the first
            backend.close()
            continue
        skipped.pop(name, None)
        backends[name] = (backend, {"artifact": plan.path, "adopted": plan.adopted, "built_for": plan.built_for})
    return backends, skipped


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64) + 1e-30))


def run_encoder_bench(bundle: str | Path, clips: int = 10, warmup: int = 2, threads: int = 0,
                      verify_hashes: bool = True, log: Callable[[str], None] = print) -> Report:
    if clips < 1:
        raise ValueError(f"--clips must be >= 1, got {clips}")
    manifest, bundle_dir = load_bundle(bundle, verify_hashes=verify_hashes)
    backends, skipped = open_backends(bundle_dir, manifest, threads)
    if "onnx_fp32_cpu" not in backends:
        raise ValueError("the bundle has no fp32 ONNX vision model: nothing to compare against")
    # Every artifact of a bundle is exported from the same graph, so they share the input type.
    rng = np.random.default_rng(0)
    inputs = [random_input(backends["onnx_fp32_cpu"][0].artifact, rng) for _ in range(clips)]

    reference = backends["onnx_fp32_cpu"][0].encode(inputs[0])
    agreement = {}
    for name, (backend, _) in backends.items():
        agreement[name] = _cosine(backend.encode(inputs[0]), reference)
        for _ in range(max(0, warmup - 1)):
            backend.encode(inputs[0])
    samples: dict[str, list[float]] = {name: [] for name in backends}
    for i, pixels in enumerate(inputs):
        for name, (backend, _) in backends.items():
            start = time.perf_counter()
            backend.encode(pixels)
            samples[name].append((time.perf_counter() - start) * 1000.0)
        log(f"clip {i + 1}/{clips}: " + ", ".join(f"{n} {s[-1]:.1f} ms" for n, s in samples.items()))

    results = {}
    for name, (backend, info) in backends.items():
        results[name] = {**Stats.from_samples(samples[name]).as_dict(), "backend": backend.name,
                         "cosine_vs_onnx_fp32_cpu": agreement[name], **info}
        backend.close()
    med = {name: r["median_ms"] for name, r in results.items()}
    ratios: dict[str, float | None] = {}
    if "onnx_int8_cpu" in med:
        ratios["fp32_over_int8_median"] = ratio(med["onnx_fp32_cpu"], med["onnx_int8_cpu"])
    # TensorRT runs on the GPU: its fair fp32 baseline is ONNX Runtime on the same GPU when present.
    gpu_baseline = "onnx_fp32_cuda" if "onnx_fp32_cuda" in med else "onnx_fp32_cpu"
    for precision in ("fp16", "int8"):
        if f"trt_{precision}" in med:
            ratios[f"fp32_over_trt_{precision}_median"] = ratio(med[gpu_baseline], med[f"trt_{precision}"])
            ratios[f"fp32_cpu_over_trt_{precision}_median"] = ratio(med["onnx_fp32_cpu"], med[f"trt_{precision}"])
    if "onnx_fp32_cuda" in med:
        ratios["fp32_cpu_over_fp32_cuda_median"] = ratio(med["onnx_fp32_cpu"], med["onnx_fp32_cuda"])

    int8 = _onnx(manifest, "int8")
    return make_report(
        "encoder",
        results,
        ratios,
        vision_tower=vision_preset(manifest, bundle_dir),
        profile={"width": manifest.profile.width, "height": manifest.profile.height,
                 "frames_per_clip": manifest.profile.frames_per_clip, "patches": manifest.profile.patches_per_clip,
                 "input_dtype": backends["onnx_fp32_cpu"][0].artifact.input_dtype,
                 "input_layout": backends["onnx_fp32_cpu"][0].artifact.input_layout,
                 "tokens": manifest.profile.tokens_per_clip},
        clips={"timed": clips, "warmup": warmup, "content": "seeded uniform random input (levels or normalised values)"},
        trt_baseline=gpu_baseline,
        int8_heldout_accuracy=(int8.accuracy if int8 else None),
        skipped=skipped,
        bundle_sha256=manifest.bundle_sha256(),
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encoder", help="vision encoder latency: fp32 vs INT8 ONNX Runtime (and TensorRT fp16/int8 where present)"
    )
    parser.add_argument("--bundle", type=Path, required=True, help="bundle folder (manifest.json)")
    parser.add_argument("--out", type=Path, required=True, help="JSON report path")
    parser.add_argument("--clips", type=int, default=10, help="timed clips per variant (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per variant first")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: all cores)")
    parser.add_argument("--no-verify", action="store_true", help="skip the bundle's sha256 check (huge bundles)")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from edge.manifest import BundleError

    try:
        report = run_encoder_bench(args.bundle, clips=args.clips, warmup=args.warmup, threads=args.threads,
                                   verify_hashes=not args.no_verify, log=lambda line: None)
    except (BundleError, ValueError) as exc:
        print(f"edge bench encoder: {exc}")
        return 2
    path = write_report(args.out, report)
    tower = report["vision_tower"]
    print(f"vision tower: {tower['preset']} (~{(tower['params_estimate'] or 0) / 1e6:.1f}M params, {tower['from']})")
    for name, stats in report["results"].items():
        print(f"{name:<16} median {stats['median_ms']:.2f} ms  p90 {stats['p90_ms']:.2f} ms  n={stats['n']}  "
              f"cos vs fp32 {stats['cosine_vs_onnx_fp32_cpu']:.6f}")
    for name, value in report["ratios"].items():
        print(f"{name}: {value:.2f}" if value is not None else f"{name}: n/a")
    for name, why in report["skipped"].items():
        print(f"skipped {name}: {why}")
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m edge.bench.encoder --bundle B --out F.json`), same as `edge bench encoder`."""
    parser = argparse.ArgumentParser(prog="edge bench")
    register(parser.add_subparsers(dest="bench", required=True))
    args = parser.parse_args(["encoder", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
