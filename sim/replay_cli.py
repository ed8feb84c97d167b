"""`edge sim`: replay a drive video through the runtime and write a report."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from edge.capture import CaptureError
from edge.client import AdviceEvent, format_advice_line
from edge.commands.config import add_drivelog_arguments, drivelog_overrides
from edge.loop import CycleOutcome
from edge.preflight import check_bundle_folder, check_endpoints_free, check_video_file
from sim.labels import load_labels, load_nav
from sim.replay import MODES, ReplayOptions, replay_config, replay_scene


def _print_cycle(outcome: CycleOutcome) -> None:
    print(format_advice_line(AdviceEvent(outcome.advice, 0, 0.0)), flush=True)


def _sidecar(given: Path | None, video: Path, name: str, auto: bool) -> Path | None:
    if given is not None or not auto:
        return given
    beside = video.parent / name
    return beside if beside.is_file() else None


def _check_inputs(args: argparse.Namespace, nav: Path | None, labels: Path | None) -> None:
    """Everything a user can get wrong, checked before a model loads or a file is written."""
    if args.bundle is not None:
        check_bundle_folder(args.bundle)
    config = replay_config(args.bundle or Path("."), interval_ms=args.interval_ms, overrides=args.overrides,
                           config_file=args.config)
    stepper = check_video_file(args.video)
    try:
        span_ms = (config.camera.frames_per_clip - 1) * config.camera.interval_ms
        if stepper.frame_at(span_ms) is None:
            raise CaptureError(_too_short(args.video, stepper.duration_ms, config.camera.interval_ms))
    finally:
        stepper.close()
    if nav is not None:
        load_nav(nav)
    if labels is not None:
        load_labels(labels)
    check_endpoints_free(config)


def _too_short(video: Path, decoded_ms: float | None, interval_ms: int) -> str:
    return (f"{video}: no clip could be taken: only {decoded_ms or 0:.0f} ms of it decode, less than one clip "
            f"spans (its frames are {interval_ms} ms apart); truncated or too short?")


def _main(args: argparse.Namespace) -> int:
    video = Path(args.video)
    nav = _sidecar(args.nav, video, "nav.jsonl", args.auto_sidecars)
    labels = _sidecar(args.labels, video, "labels.jsonl", args.auto_sidecars)
    _check_inputs(args, nav, labels)
    bundle = args.bundle
    if bundle is None:
        from edge.builtin_bundle import builtin_bundle

        bundle = builtin_bundle()
    out_existed = args.out.exists()
    args.out.mkdir(parents=True, exist_ok=True)
    config = replay_config(
        bundle, vision_precision=args.vision_precision, decoder_quant=args.decoder_quant,
        interval_ms=args.interval_ms, audit_path=args.out / "audit.jsonl", overrides=[*args.overrides, *drivelog_overrides(args)],
        config_file=args.config,
    )
    if config.live.enabled:
        print(f"edge sim: live view on ws://{config.live.host}:{config.live.port} (Foxglove WebSocket; "
              "layout docs/foxglove-layout.json)", file=sys.stderr, flush=True)
    result = replay_scene(bundle, video, nav, labels,
                          ReplayOptions(mode=args.mode, speed=args.speed, max_cycles=args.max_cycles),
                          out_dir=args.out, config=config,
                          on_cycle=_print_cycle if not args.quiet else lambda _o: None)
    if not result.outcomes:
        if not out_existed:
            shutil.rmtree(args.out, ignore_errors=True)
        raise CaptureError(_too_short(video, result.video_duration_ms, config.camera.interval_ms))
    report = result.report.report if result.report else {}
    summary = f"{len(result.advice)} advice in {result.wall_s:.1f} s ({args.mode})"
    lost = result.lost_cycles
    if lost:
        summary += f"; {len(lost)} published but not received: cycles {lost}"
    if report.get("accuracy") is not None:
        summary += f"; meta-action accuracy {report['accuracy']:.1%} against {labels}"
    print(summary, file=sys.stderr)
    print(f"report: {result.report.report_md if result.report else args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sim", help="replay a drive video through the runtime and write a report")
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the built-in trained model)")
    parser.add_argument("--video", required=True, type=Path, help="drive video (recorded or from `edge scene`)")
    parser.add_argument("--nav", type=Path, help="navigation timeline (nav.jsonl)")
    parser.add_argument("--labels", type=Path, help="ground-truth labels (labels.jsonl) for accuracy")
    parser.add_argument("--no-sidecars", dest="auto_sidecars", action="store_false",
                        help="do not pick up nav.jsonl/labels.jsonl next to the video")
    parser.add_argument("--mode", choices=MODES, default="lockstep")
    parser.add_argument("--speed", type=float, default=1.0, help="realtime playback speed factor")
    parser.add_argument("--interval-ms", type=int, default=500, help="sampling interval")
    parser.add_argument("--vision-precision", default="auto", choices=["auto", "fp32", "int8", "fp16"])
    parser.add_argument("--decoder-quant", default="auto", help="decoder artifact: auto, f16, q4_k_m, ...")
    parser.add_argument("--max-cycles", type=int)
    parser.add_argument("--config", type=Path, help="runtime TOML configuration")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--quiet", action="store_true", help="do not print advice lines")
    add_drivelog_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="output folder for the report")
    parser.set_defaults(func=_main)
