"""`edge bench encoder-vs-llama-cpp`: the bundle's ONNX Runtime encoder (fp32, INT8) against
llama.cpp's own vision path (libmtmd with an mmproj GGUF of the same tower), CPU, one run.

Same frames for every variant: real drive-video frames (OpenCV, resized to the bundle's profile, RGB
uint8 [T, 3, H, W], the bundle's "frames" input). Variants are timed round-robin (clip i on every
variant before clip i+1) with the same thread count, so a shared machine's drift hits all alike.
Each variant's time is what a caller pays from uint8 frames to rows: ONNX Runtime normalises inside
its graph; for llama.cpp it is mtmd's preprocessing (normalise, patch) plus `mtmd_encode_chunk`
(the encode-only part is reported too).

Accuracy on the first clip: cosine of every variant's rows against ONNX Runtime fp32 (ours), and,
with `--checkpoint`, against transformers' own vision tower on the same pixels (the reference; this
needs torch and transformers, the workstation's export extra).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.benchreport import Stats, make_report, ratio

GOAL_SPEEDUP = 1.5  # INT8 ONNX Runtime over llama.cpp, full-size tower
GOAL_COSINE = 0.99  # to the reference


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64) + 1e-30))


def drive_clips(video: Path, width: int, height: int, frames: int, clips: int, step: int = 5) -> list[np.ndarray]:
    """`clips` clips of `frames` consecutive sampled frames (every `step`-th), uint8 [T, 3, H, W] RGB."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {video}")
    out: list[np.ndarray] = []
    current: list[np.ndarray] = []
    index = 0
    while len(out) < clips:
        ok, bgr = capture.read()
        if not ok:
            break
        if index % step == 0:
            rgb = cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            current.append(rgb.transpose(2, 0, 1))
            if len(current) == frames:
                out.append(np.ascontiguousarray(np.stack(current)))
                current = []
        index += 1
    capture.release()
    if len(out) < clips:
        raise ValueError(f"{video} gave {len(out)} clips of {frames} frames, {clips} asked")
    return out


def transformers_rows(checkpoint: Path, frames: np.ndarray, manifest) -> np.ndarray:
    """The reference: transformers' Qwen3-VL vision tower (fp32) on the same uint8 frames."""
    from export.checkpoint import CheckpointReader
    from export.verify import patchify
    from export.vision_onnx import load_vision_tower, reference_outputs

    profile, norm = manifest.profile, manifest.normalization
    visual = load_vision_tower(CheckpointReader(checkpoint), progress=False)
    pixels = patchify(frames.astype(np.float32) * norm.rescale_factor, norm.mean, norm.std,
                      profile.patch_size, profile.temporal_patch_size, profile.merge_size)
    rows = np.concatenate(reference_outputs(visual, pixels, profile), axis=-1)
    del visual
    return rows


def _text_gguf(bundle_dir: Path, manifest, text_gguf: Path | None) -> tuple[Path, int | None]:
    """The GGUF whose vocabulary mtmd takes, and the row width the bundle expects (when it says)."""
    if manifest.decoder:
        return (Path(text_gguf) if text_gguf else bundle_dir / manifest.decoder[0].path), manifest.decoder[0].n_embd_inp
    if text_gguf is None:
        raise ValueError("llama.cpp's mtmd needs the decoder's vocabulary: the bundle has no decoder GGUF "
                         "(give --text-gguf, a decoder GGUF of the same model)")
    return Path(text_gguf), None


def _variants(bundle_dir: Path, manifest, mmprojs: list[Path], threads: int,
              text_gguf: Path | None = None) -> dict[str, tuple[Callable, dict, object]]:
    """name -> (encode(frames) -> rows, info, closable)."""
    from edge.vision.llama_cpp_mtmd import MtmdEncoder
    from edge.vision.onnxruntime import OnnxRuntimeBackend

    variants: dict[str, tuple[Callable, dict, object]] = {}
    for art in manifest.vision:
        if art.format != "onnx" or art.precision not in ("fp32", "int8"):
            continue
        if art.input_layout != "frames":
            raise ValueError(f"{art.path} takes {art.input_layout}; this comparison feeds frames "
                             "(export the bundle with --vision-input frames, the default)")
        backend = OnnxRuntimeBackend(bundle_dir, art, use_cuda=False, threads=threads)
        variants[f"onnx_{art.precision}_cpu"] = (backend.encode, {"artifact": art.path, "adopted": art.adopted}, backend)
    if "onnx_fp32_cpu" not in variants:
        raise ValueError("the bundle has no fp32 ONNX vision model: nothing to compare against")
    text, width = _text_gguf(bundle_dir, manifest, text_gguf)
    for mmproj in mmprojs:
        enc = MtmdEncoder(mmproj, text, threads=threads, expected_width=width)
        kind = _mmproj_type(mmproj)
        variants[f"llama_cpp_{kind}_cpu"] = (enc.encode, {"mmproj": str(mmproj), "type": kind, "timing": enc}, enc)
    return variants


def _mmproj_type(path: Path) -> str:
    from gguf import GGUFReader, LlamaFileType

    field = GGUFReader(path).fields.get("general.file_type")
    return LlamaFileType(int(field.contents())).name.lower().replace("mostly_", "").replace("all_", "") if field else "unknown"


def run_against_llama_cpp(bundle: Path | str, mmprojs: list[Path], video: Path, clips: int = 3, warmup: int = 1,
                          threads: int = 0, checkpoint: Path | None = None, verify_hashes: bool = True,
                          text_gguf: Path | None = None, log: Callable[[str], None] = print) -> dict:
    from edge.manifest import load_bundle

    if clips < 1 or not mmprojs:
        raise ValueError("give at least one clip and one --mmproj")
    manifest, bundle_dir = load_bundle(bundle, verify_hashes=verify_hashes)
    threads = threads or os.cpu_count() or 1
    p = manifest.profile
    inputs = drive_clips(video, p.width, p.height, p.frames_per_clip, clips)
    reference = transformers_rows(Path(checkpoint), inputs[0], manifest) if checkpoint else None
    variants = _variants(bundle_dir, manifest, list(mmprojs), threads, text_gguf)
    ours = variants["onnx_fp32_cpu"][0](inputs[0])
    accuracy: dict[str, dict] = {}
    for name, (encode, _, _) in variants.items():
        rows = encode(inputs[0])
        accuracy[name] = {"cosine_vs_onnx_fp32_cpu": _cosine(rows, ours),
                          "cosine_vs_transformers": _cosine(rows, reference) if reference is not None else None}
        for _ in range(max(0, warmup - 1)):
            encode(inputs[0])
    samples: dict[str, list[float]] = {name: [] for name in variants}
    encode_only: dict[str, list[float]] = {name: [] for name in variants if name.startswith("llama_cpp")}
    for i, frames in enumerate(inputs):
        for name, (encode, info, _) in variants.items():
            start = time.perf_counter()
            encode(frames)
            samples[name].append((time.perf_counter() - start) * 1000.0)
            if name in encode_only:
                encode_only[name].append(info["timing"].last_timing["encode_ms"])
        log(f"clip {i + 1}/{clips}: " + ", ".join(f"{n} {s[-1]:.0f} ms" for n, s in samples.items()))
    return _report(manifest, variants, samples, encode_only, accuracy, reference is not None,
                   threads=threads, clips=clips, warmup=warmup, video=video, checkpoint=checkpoint,
                   bundle_dir=bundle_dir)


def _report(manifest, variants, samples, encode_only, accuracy, has_reference: bool, **context) -> dict:
    from edge.bench.encoder import vision_preset

    results = {}
    for name, (_, info, closable) in variants.items():
        extra = {k: v for k, v in info.items() if k != "timing"}
        if name in encode_only:
            extra["encode_only_median_ms"] = Stats.from_samples(encode_only[name]).median_ms
        results[name] = {**Stats.from_samples(samples[name]).as_dict(), **accuracy[name], **extra}
        closable.close()
    med = {name: r["median_ms"] for name, r in results.items()}
    ratios: dict[str, float | None] = {}
    if "onnx_int8_cpu" in med:
        ratios["fp32_over_int8_median"] = ratio(med["onnx_fp32_cpu"], med["onnx_int8_cpu"])
    for name in (n for n in med if n.startswith("llama_cpp")):
        ratios[f"{name}_over_onnx_fp32_cpu_median"] = ratio(med[name], med["onnx_fp32_cpu"])
        if "onnx_int8_cpu" in med:
            ratios[f"{name}_over_onnx_int8_cpu_median"] = ratio(med[name], med["onnx_int8_cpu"])
    return make_report(
        "encoder_against_llama_cpp", results, ratios,
        goal=_goal(results, ratios, has_reference),
        vision_tower=vision_preset(manifest, context["bundle_dir"]),
        profile={"width": manifest.profile.width, "height": manifest.profile.height,
                 "frames_per_clip": manifest.profile.frames_per_clip, "tokens": manifest.profile.tokens_per_clip},
        clips={"timed": context["clips"], "warmup": context["warmup"], "content": f"drive video {context['video']}"},
        threads=context["threads"],
        reference=("transformers fp32 vision tower of " + str(context["checkpoint"])) if has_reference else None,
        bundle_sha256=manifest.bundle_sha256(),
    )


def _goal(results: dict, ratios: dict, has_reference: bool) -> dict:
    """INT8 >= GOAL_SPEEDUP x faster than the fastest llama.cpp variant, at cosine >= GOAL_COSINE to the
    reference (transformers when given, else ONNX Runtime fp32)."""
    key = "cosine_vs_transformers" if has_reference else "cosine_vs_onnx_fp32_cpu"
    llama = [n for n in results if n.startswith("llama_cpp")]
    if "onnx_int8_cpu" not in results or not llama:
        return {"met": None, "why": "needs an INT8 model in the bundle and a llama.cpp variant"}
    fastest = min(llama, key=lambda n: results[n]["median_ms"])
    speedup = ratios[f"{fastest}_over_onnx_int8_cpu_median"]
    cosine = results["onnx_int8_cpu"][key]
    return {"speedup_min": GOAL_SPEEDUP, "cosine_min": GOAL_COSINE, "against": fastest, "cosine_to": key,
            "int8_speedup": speedup, "int8_cosine": cosine,
            "met": bool(speedup is not None and speedup >= GOAL_SPEEDUP and cosine >= GOAL_COSINE)}


def register(benches: argparse._SubParsersAction) -> None:
    parser = benches.add_parser(
        "encoder-vs-llama-cpp",
        help="vision encoder: ONNX Runtime fp32/INT8 against llama.cpp's own mtmd path on real drive frames (CPU)",
    )
    parser.add_argument("--bundle", type=Path, required=True, help="bundle folder (manifest.json)")
    parser.add_argument("--out", type=Path, required=True, help="JSON report path")
    parser.add_argument("--mmproj", type=Path, action="append", required=True,
                        help="mmproj GGUF of the same tower (`edge export mmproj`); repeat for several types")
    parser.add_argument("--video", type=Path, default=Path("data/drive/udacity_solidWhiteRight.mp4"),
                        help="drive video the clips are cut from (default %(default)s)")
    parser.add_argument("--text-gguf", type=Path, default=None,
                        help="decoder GGUF whose vocabulary mtmd takes (default: the bundle's first decoder)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="also compare every variant with transformers on this checkpoint (needs torch)")
    parser.add_argument("--clips", type=int, default=3, help="timed clips per variant (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per variant first")
    parser.add_argument("--threads", type=int, default=0, help="threads for every variant (0: all cores)")
    parser.add_argument("--no-verify", action="store_true", help="skip the bundle's sha256 check (huge bundles)")
    parser.set_defaults(func=main_against_llama_cpp)


def main_against_llama_cpp(args: argparse.Namespace) -> int:
    """`edge bench encoder-vs-llama-cpp`."""
    from edge.benchreport import write_report
    from edge.manifest import BundleError
    from edge.vision.base import VisionBackendError

    try:
        report = run_against_llama_cpp(args.bundle, args.mmproj, args.video, clips=args.clips, warmup=args.warmup,
                                       threads=args.threads, checkpoint=args.checkpoint,
                                       verify_hashes=not args.no_verify, text_gguf=args.text_gguf)
    except (BundleError, ValueError, VisionBackendError) as exc:
        print(f"edge bench encoder: {exc}")
        return 2
    path = write_report(args.out, report)
    for name, r in report["results"].items():  # type: ignore[union-attr]
        ref = r["cosine_vs_transformers"]
        print(f"{name:<22} median {r['median_ms']:9.1f} ms  cos vs ours fp32 {r['cosine_vs_onnx_fp32_cpu']:.6f}"
              + (f"  vs transformers {ref:.6f}" if ref is not None else ""))
    for name, value in report["ratios"].items():  # type: ignore[union-attr]
        print(f"{name}: {value:.2f}" if value is not None else f"{name}: n/a")
    goal = report["goal"]
    if goal.get("met") is not None:
        print(f"goal (INT8 >= {goal['speedup_min']}x {goal['against']}, cosine >= {goal['cosine_min']}): "
              f"{'met' if goal['met'] else 'NOT met'} ({goal['int8_speedup']:.2f}x, cosine {goal['int8_cosine']:.5f})")
    print(f"wrote {path}")
    return 0
