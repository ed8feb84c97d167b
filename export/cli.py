"""`edge export ...`: tiny checkpoint, bundle (and verify, registered by the decoder side).

Heavy imports (torch, transformers, onnx, gguf) happen inside the command functions so that
`edge --help` stays fast and the device never needs them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.commandline import add_command, add_command_group
from edge.environment import peak_rss_bytes


def _cmd_tiny(args: argparse.Namespace) -> int:
    if args.preset == "full-dims":
        return _cmd_full_dims(args)
    from export.tiny import make_tiny_checkpoint

    path = make_tiny_checkpoint(
        args.out,
        seed=args.seed,
        preset=args.preset,
        shard_size_mb=args.shard_size_mb,
        dtype=args.dtype,
        expert_layout=args.expert_layout,
    )
    size = sum(p.stat().st_size for p in path.glob("*.safetensors"))
    print(f"tiny checkpoint ({args.preset}, seed {args.seed}) written to {path} ({size / 2**20:.1f} MiB of weights)")
    return 0


def _cmd_full_dims(args: argparse.Namespace) -> int:
    from export.full_dims import make_full_dims_checkpoint

    try:
        path = make_full_dims_checkpoint(args.out, args.layers, experts=args.experts, seed=args.seed,
                                         vision=args.vision, shard_size_mb=args.shard_size_mb or 2048)
    except ValueError as exc:
        print(f"edge export tiny: {exc}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in path.glob("*.safetensors"))
    print(f"full-dims checkpoint ({args.layers} layers, {args.experts} experts, {args.vision} vision, seed {args.seed}) "
          f"written to {path} ({size / 2**30:.2f} GiB of bf16 weights; peak RSS {peak_rss_bytes() / 2**30:.2f} GiB)")
    return 0


def _cmd_bundle(args: argparse.Namespace) -> int:
    from export.bundle import DEFAULT_QUANTS, build_bundle

    if args.verify and args.vision_only:
        print("edge export bundle: --verify needs the decoder (not with --vision-only)", file=sys.stderr)
        return 2
    quants = list(args.quant or DEFAULT_QUANTS)
    # --verify checks the GGUF conversion on an unquantised decoder; one is exported for the check
    # alone (and removed after it) when none was asked for.
    reference_only = [] if not args.verify or set(quants) & {"f32", "f16"} else ["f16"]
    manifest = build_bundle(  # a BundleError or CheckpointError is printed by the edge command (exit 2)
        args.checkpoint,
        args.out,
        width=args.width,
        height=args.height,
        frames=args.frames,
        quants=quants + reference_only,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        include_decoder=not args.vision_only,
        self_check=not args.no_self_check,
        vision_input=args.vision_input,
    )
    if args.verify:
        code = _verify_new_bundle(args, reference_only)
        if code:
            return code
        from edge.manifest import load_bundle

        manifest, _ = load_bundle(args.out, verify_hashes=False)
    checkpoint_bytes = manifest.source.get("checkpoint_bytes", 0)
    peak = peak_rss_bytes()
    print(f"bundle written to {args.out} (bundle sha256 {manifest.bundle_sha256()[:16]})")
    print(f"  profile {manifest.profile.width}x{manifest.profile.height}, {manifest.profile.frames_per_clip} frames "
          f"-> {manifest.profile.tokens_per_clip} visual tokens per clip")
    for art in manifest.vision:
        acc = art.accuracy or {}
        extra = f", self-check cosine min {acc['cosine_min']:.7f}" if "cosine_min" in acc else ""
        print(f"  vision  {art.path} {art.precision} {art.input_shape} -> {art.output_shape}{extra}")
    for art in manifest.decoder:
        print(f"  decoder {art.path} {art.quant} n_embd {art.n_embd} n_embd_inp {art.n_embd_inp}")
    print(f"  peak RSS {peak / 2**20:.0f} MiB; checkpoint weights {checkpoint_bytes / 2**20:.1f} MiB")
    return 0


def _verify_new_bundle(args: argparse.Namespace, reference_only: list[str]) -> int:
    """`--verify`: the bundle against transformers; a bundle under its thresholds is removed (exit 1)."""
    from export.verify_cli import print_report, thresholds_from_args
    from export.verify_gate import VerifyFailed, verify_new_bundle

    try:
        report = verify_new_bundle(args.out, args.checkpoint, thresholds_from_args(args),
                                   reference_only=reference_only, threads=args.threads)
    except VerifyFailed as exc:
        for failure in exc.failures:
            print(f"edge export bundle: verify FAIL {failure}", file=sys.stderr)
        print(f"edge export bundle: {args.out} removed: it does not meet the verify thresholds", file=sys.stderr)
        return 1
    print_report(report)
    if reference_only:
        print(f"  {', '.join(reference_only)} decoder exported for the check only, removed from the bundle")
    return 0


def register(subparsers) -> None:
    commands = add_command_group(
        subparsers, "export", dest="export_command", metavar="EXPORT_COMMAND",
        help="checkpoint -> model bundle (needs the [export] extra: torch, transformers, onnx, gguf)",
        description="Workstation-side export: HF checkpoint -> bundle (vision ONNX + GGUF decoder + manifest).",
    )

    tiny = add_command(commands, "tiny", _cmd_tiny,
                       help="write a tiny random-initialised Qwen3-VL-MoE checkpoint (tests, demo)")
    tiny.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--preset", choices=["tiny", "full-vision", "full-dims"], default="tiny",
                      help="full-vision: real 30B-A3B vision tower dimensions (~0.54B params) with the tiny decoder; "
                      "full-dims: every tensor at the real 30B-A3B shape, --layers decoder layers (bf16, sharded)")
    tiny.add_argument("--layers", type=int, default=4, help="full-dims: decoder layers (>= 4; the real model has 48)")
    tiny.add_argument("--experts", type=int, default=128, help="full-dims: experts per layer (real: 128)")
    tiny.add_argument("--vision", choices=["full", "tiny"], default="full", help="full-dims: the vision tower")
    tiny.add_argument("--shard-size-mb", type=float, default=None,
                      help="split weights into shards of at most this size (with model.safetensors.index.json)")
    tiny.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    tiny.add_argument("--expert-layout", choices=["transformers", "original"], default="transformers",
                      help="original: fused experts stored transposed, as the Qwen release does")

    bundle = add_command(commands, "bundle", _cmd_bundle,
                         help="export a checkpoint to a model bundle for one camera profile")
    bundle.add_argument("--checkpoint", type=Path, required=True, help="HF checkpoint folder (Qwen3VLMoeForConditionalGeneration)")
    bundle.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    bundle.add_argument("--width", type=int, required=True, help="input width in pixels (multiple of 32)")
    bundle.add_argument("--height", type=int, required=True, help="input height in pixels (multiple of 32)")
    bundle.add_argument("--frames", type=int, required=True, help="frames per clip (even: 2 frames per temporal patch)")
    bundle.add_argument("--quant", action="append", choices=["q4_k_m", "q4_0", "q8_0", "f16", "f32"],
                        help="decoder quantisation (repeat for several; default q4_k_m)")
    bundle.add_argument("--overwrite", action="store_true", help="replace an existing bundle in --out")
    bundle.add_argument("--vision-input", choices=["frames", "patches"], default="frames",
                        help="the vision graph's input: whole uint8 RGB frames (the graph normalises and cuts "
                        "the patches; the default) or the processor's patch rows as uint8 levels")
    bundle.add_argument("--vision-only", action="store_true", help="skip the decoder (vision ONNX + manifest only)")
    bundle.add_argument("--no-self-check", action="store_true",
                        help="skip the ONNX Runtime vs transformers check of the exported vision graph")
    bundle.add_argument("--no-progress", action="store_true", help="no progress bars")
    bundle.add_argument("--verify", action="store_true",
                        help="run `edge export verify` at the end (report stored in the bundle); a bundle that "
                        "misses a threshold is removed and the command exits 1")
    bundle.add_argument("--threads", type=int, default=None, help="CPU threads for --verify")
    from export.lora_cli import register_lora
    from export.mmproj import register_mmproj
    from export.trt import register_trt
    from export.verify_cli import add_threshold_arguments, register_verify

    add_threshold_arguments(bundle)
    # The other export subcommands are declared beside the code they run.
    for register_more in (register_verify, register_trt, register_mmproj, register_lora):
        register_more(commands)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m export.cli export bundle ...`), same as `edge export ...`."""
    from edge.commandline import add_log_level, run_command

    parser = argparse.ArgumentParser(prog="edge")
    add_log_level(parser)
    register(parser.add_subparsers(dest="command", required=True))
    return run_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
