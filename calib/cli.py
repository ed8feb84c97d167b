"""`edge calib`: INT8 calibration of the bundle's vision encoder from drive videos.

Heavy imports (onnx, onnxruntime.quantization) happen inside the command function so that
`edge --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calib.clips import DEFAULT_INTERVAL_MS
from edge.commandline import add_bundle_option, add_command

METHODS = ("minmax", "entropy", "percentile")


def _op_types(text: str) -> tuple[str, ...]:
    from calib.quantize import ALL_LINEAR_OP_TYPES

    names = tuple(t.strip() for t in text.replace("+", ",").split(",") if t.strip())
    bad = [t for t in names if t not in ALL_LINEAR_OP_TYPES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"op types must be from {', '.join(ALL_LINEAR_OP_TYPES)} (got {text!r})")
    return names


def _cmd_calib(args: argparse.Namespace) -> int:
    from calib.calibrate import CalibrationOptions, calibrate_bundle
    from calib.quantize import QuantSettings

    settings = QuantSettings(
        mode=args.mode,
        method=args.method,
        op_types=args.op_types,
        per_channel=not args.per_tensor,
        keep_float=tuple(args.keep_float or ()),
        trt_compatible=not args.cpu_only_qdq,
    )
    if args.compare:
        from calib.compare import CompareOptions, compare_variants

        compare_variants(args.bundle, args.video, args.compare, CompareOptions(
            clips=args.clips, heldout=args.heldout, method=args.method, keep_float=settings.keep_float,
            interval_ms=args.interval_ms, runs=args.runs, progress=not args.no_progress,
        ))
        print(f"comparison written to {args.compare}")
        return 0
    result = calibrate_bundle(args.bundle, args.video, CalibrationOptions(
        clips=args.clips, heldout=args.heldout, settings=settings, threshold=args.threshold, force=args.force,
        interval_ms=args.interval_ms, progress=not args.no_progress, log=lambda line: print(line, file=sys.stderr),
    ))
    acc = result.accuracy
    print(f"INT8 model {result.artifact.path} ({settings.describe()}) recorded in {args.bundle}")
    for name, figures in acc.outputs.items():
        print(f"  {name:12s} cosine min {figures['cosine_min']:.6f} mean {figures['cosine_mean']:.6f} "
              f"max |diff| {figures['max_abs_diff']:.4g}")
    print(f"  worst held-out clip: {acc.worst_clip} ({acc.worst_output}, cosine {acc.worst_cosine:.6f})")
    if result.adopted and result.passed:
        print(f"  ADOPTED: worst cosine {acc.worst_cosine:.6f} >= threshold {args.threshold}")
    elif result.adopted:
        print(f"  ADOPTED BY --force although worst cosine {acc.worst_cosine:.6f} < threshold {args.threshold}")
    else:
        print(f"  NOT ADOPTED: worst cosine {acc.worst_cosine:.6f} < threshold {args.threshold} "
              "(the runtime keeps fp32; --force adopts it anyway)")
    print(f"  report: {result.report_path}")
    return 0 if result.adopted else 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calib.calibrate import DEFAULT_CLIPS, DEFAULT_HELDOUT, DEFAULT_THRESHOLD
    from calib.quantize import DEFAULT_OP_TYPES

    add_bundle_option(parser, required=True)
    parser.add_argument("--video", action="append", required=True,
                        help="drive video file or folder of videos (repeat for several)")
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS, help="calibration clips (default %(default)s)")
    parser.add_argument("--heldout", type=int, default=DEFAULT_HELDOUT,
                        help="held-out clips for the accuracy report (default %(default)s)")
    parser.add_argument("--method", choices=METHODS, default="minmax",
                        help="static calibration method (default %(default)s; entropy/percentile keep full "
                             "activations per clip in memory: use few clips on the full-size tower)")
    parser.add_argument("--mode", choices=["static", "dynamic"], default="static",
                        help="static: QDQ from calibration data (ONNX Runtime and TensorRT); dynamic: weights only, "
                             "activation scales at run time (ONNX Runtime CPU only)")
    parser.add_argument("--op-types", type=_op_types, default=DEFAULT_OP_TYPES,
                        help=f"ops to quantise, e.g. Gemm,Conv or MatMul,Gemm,Conv (default {'+'.join(DEFAULT_OP_TYPES)})")
    parser.add_argument("--keep-float", action="append", metavar="NODE",
                        help="keep a node in float: exact node name, glob (/blocks.0/*), module path "
                             "(merger, blocks.3/mlp) or alias (patch_embed, merger, deepstack); repeatable")
    parser.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales (default per-channel)")
    parser.add_argument("--cpu-only-qdq", action="store_true",
                        help="asymmetric activations and INT32 biases: may be more accurate on CPU, but TensorRT "
                             "cannot build it")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="adopt the INT8 model only if the worst held-out cosine reaches this (default %(default)s)")
    parser.add_argument("--force", action="store_true", help="adopt the INT8 model even below the threshold")
    parser.add_argument("--interval-ms", type=float, default=DEFAULT_INTERVAL_MS,
                        help="sampling interval between a clip's frames (default: the runtime's camera.interval_ms)")
    parser.add_argument("--compare", type=Path, metavar="OUT.json",
                        help="instead of calibrating: quantise static MatMul+Gemm+Conv, static Gemm+Conv and "
                             "dynamic variants, measure held-out cosine and CPU latency, write OUT.json; "
                             "the bundle is not changed")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per variant with --compare")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "calib", _cmd_calib,
        help="INT8-quantise the bundle's vision encoder from drive videos (held-out accuracy report)",
        description="Samples clips from drive videos through the runtime's own capture and preprocessing, "
                    "quantises the vision ONNX to INT8 QDQ, measures it against fp32 on held-out clips and "
                    "records it in the bundle (adopted only at or above --threshold, or with --force).",
    )
    add_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m calib.cli --bundle ...`), same as `edge calib ...`."""
    from edge.commandline import add_log_level, run_command

    parser = argparse.ArgumentParser(prog="edge calib")
    add_log_level(parser)
    add_arguments(parser)
    parser.set_defaults(func=_cmd_calib, command="calib")
    return run_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
