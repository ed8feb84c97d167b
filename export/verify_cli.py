"""`edge export verify --bundle B --checkpoint DIR --out REPORT.json` (hooked in by export/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_verify(args: argparse.Namespace) -> int:
    from edge.manifest import BundleError
    from export.checkpoint import CheckpointError
    from export.verify import verify_bundle

    try:
        report = verify_bundle(args.bundle, args.checkpoint, args.out, greedy_len=args.greedy_len,
                               threads=args.threads, reference_dtype=args.reference_dtype,
                               write_into_bundle=not args.no_bundle_report, verify_hashes=not args.skip_hashes,
                               thresholds=thresholds_from_args(args))
    except (BundleError, CheckpointError, ValueError) as exc:
        print(f"edge export verify: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    print(f"report written to {args.out}")
    return 0 if report["gate"]["passed"] else 1


def thresholds_from_args(args: argparse.Namespace):
    from export.verify_gate import Thresholds

    return Thresholds(encoder_cosine=args.min_encoder_cosine, logits_cosine=args.min_logits_cosine,
                      greedy_match=args.min_greedy, quantised_logits_cosine=args.min_quantised_logits_cosine)


def print_report(report: dict) -> None:
    """The figures, then PASS or one FAIL line per figure under its threshold (on stderr)."""
    for name, stats in report["encoder"].items():
        print(f"encoder {name:32s} cosine {stats['cosine']:.7f}  max|diff| {stats['max_abs_diff']:.3g}")
    for quant, stats in report["decoder"].items():
        print(f"decoder {quant:8s} logits cosine {stats['logits_cosine']:.7f}  "
              f"greedy {stats['greedy_match']}/{stats['greedy_len']}  (worst of {', '.join(stats['cases'])})")
    if report["gate"]["passed"]:
        print("verify: PASS (all figures meet their thresholds)")
    for failure in report["gate"]["failures"]:
        print(f"verify: FAIL {failure}", file=sys.stderr)


def add_threshold_arguments(parser) -> None:
    """--min-* options shared by `edge export verify` and `edge export bundle --verify`."""
    from export.verify_gate import Thresholds

    d = Thresholds()
    parser.add_argument("--min-encoder-cosine", type=float, default=d.encoder_cosine,
                        help=f"every encoder output slice (default {d.encoder_cosine})")
    parser.add_argument("--min-logits-cosine", type=float, default=d.logits_cosine,
                        help=f"last-token logits of every unquantised (f32/f16) decoder (default {d.logits_cosine})")
    parser.add_argument("--min-greedy", type=int, default=None,
                        help="greedy tokens equal to transformers for unquantised decoders (default: all of --greedy-len)")
    parser.add_argument("--min-quantised-logits-cosine", type=float, default=None,
                        help="also gate quantised decoders on logits cosine (default: reported, not gated)")


def register_verify(commands) -> None:
    verify = commands.add_parser(
        "verify", help="compare a bundle (ONNX encoder + GGUF decoder) against transformers on the same inputs",
        description="Runs the same pixels and prompts (one image; a clip of two frame pairs with timestamps) "
                    "through transformers and through the bundle, and reports encoder cosine/max-abs-diff and, "
                    "per decoder quant, last-token logits cosine and greedy agreement. Exits 1, naming "
                    "each figure, when one misses its threshold (2 when the bundle or checkpoint is unusable).")
    verify.add_argument("--bundle", type=Path, required=True, help="bundle folder (with manifest.json)")
    verify.add_argument("--checkpoint", type=Path, required=True, help="the HF checkpoint the bundle was exported from")
    verify.add_argument("--out", type=Path, required=True, help="report JSON to write")
    verify.add_argument("--greedy-len", type=int, default=16, help="greedy tokens to compare (default 16)")
    verify.add_argument("--threads", type=int, default=None, help="CPU threads for llama.cpp and ONNX Runtime")
    verify.add_argument("--reference-dtype", choices=["float32", "bfloat16"], default="float32",
                        help="transformers reference precision (bfloat16 halves its memory for the real model)")
    verify.add_argument("--no-bundle-report", action="store_true",
                        help="do not store the report as reports/verify.json in the bundle")
    verify.add_argument("--skip-hashes", action="store_true", help="skip sha256 verification of the bundle files")
    add_threshold_arguments(verify)
    verify.set_defaults(func=_cmd_verify)
