"""`edge bench loop`: per-stage latency of the real advice loop on a video, and the loop's own overhead.

The bundle's models, the ZeroMQ publisher, the nav socket, the heartbeat thread and (by default) the
audit log all run as in `edge run`; only the feed differs:

- `stepped` (default): clips at fixed instants of a simulated clock (edge.feeds.SteppedFeed, the
  video looping so any number of cycles is possible), taken as fast as the loop goes. Video
  decoding happens in `next_clip`, outside the cycle, and is reported separately (`next_clip`).
- `live`: the video plays as a camera at its native frame rate (looping); the loop takes the
  freshest clip as on the road. The capture thread shares the process (and the GIL) with the loop,
  as it does in `edge run`.

Budgets are set far out of reach (an hour) so that every cycle runs every stage: this measures
the stages, it does not test budget enforcement. The loop's overhead is what the issue defines:
cycle wall time minus encode, prefill and decode, so it includes preprocessing, nav polling,
prompt assembly between the decoder's stages, message building, publishing, telemetry and the
audit write. `overhead_other` is that minus preprocess and publish (the bookkeeping nobody times).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.benchreport import Report, Stats, make_report, ratio, write_report

STAGES = ("capture_age", "preprocess", "encode", "prefill", "decode", "publish", "total")
MODEL_STAGES = ("encode", "prefill", "decode")
UNREACHABLE_BUDGET_MS = 3_600_000  # an hour: no stage is ever cut or judged late
NO_CLIP_TIMEOUT_S = 30.0
DRIVELOG_BLOCK = 5


@dataclass(frozen=True)
class LoopBenchSettings:
    cycles: int = 200
    warmup: int = 3
    mode: str = "stepped"
    interval_ms: int = 500
    threads: int = 1
    vision_threads: int = 0
    quant: str = "auto"
    max_tokens: int = 96
    audit: bool = True
    overrides: tuple[str, ...] = ()  # config `key=value` assignments applied last (--set)
    keep_samples: bool = False  # the report also carries every measured cycle's stage times
    # Recording, capture and live view: on in alternate blocks of DRIVELOG_BLOCK cycles, the writer
    # drained before each block without them, so both halves run in the same process and minutes.
    drivelog: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("stepped", "live"):
            raise ValueError(f"mode must be 'stepped' or 'live', not {self.mode!r}")
        if self.cycles < 1 or self.warmup < 0:
            raise ValueError(f"need cycles >= 1 and warmup >= 0 (got {self.cycles}, {self.warmup})")


if TYPE_CHECKING:
    from edge.capture import Clip
    from edge.drivelog.tap import DriveTap
    from edge.feeds import ClipFeed
    from edge.loop import AdviceLoop, CycleOutcome
    from edge.runtime import ModelParts


def looping_cycle(loop: AdviceLoop) -> CycleOutcome:
    """One cycle on the next clip of a looping video (such a feed always has one)."""
    clip = loop.next_clip()
    if clip is None:
        raise RuntimeError("the looping video gave no clip")
    return loop.run_cycle(clip)


def nav_endpoint(loop: AdviceLoop) -> str:
    """Where the running loop's nav socket is bound (a running loop always has one)."""
    if loop.parts.nav_in is None:
        raise RuntimeError("the loop has no nav socket")
    return loop.parts.nav_in.endpoint


def bench_config(bundle: Path, settings: LoopBenchSettings, audit_path: Path | None, drivelog_dir: Path | None = None):
    from edge.config import load_config

    sets = [
        f"bundle={str(bundle)!r}",
        "bus.publish_endpoint='tcp://127.0.0.1:*'",
        "bus.nav_endpoint='tcp://127.0.0.1:*'",
        f"camera.interval_ms={settings.interval_ms}",
        f"decoder.threads={settings.threads}",
        f"decoder.quant={settings.quant!r}",
        f"decoder.max_tokens={settings.max_tokens}",
        f"vision.threads={settings.vision_threads}",
    ]
    sets += [f"budgets.{name}={UNREACHABLE_BUDGET_MS}" for name in (
        "max_frame_age_ms", "preprocess_ms", "encode_ms", "prefill_ms", "decode_ms", "publish_ms", "total_ms")]
    if audit_path is not None:
        sets.append(f"audit.path={str(audit_path)!r}")
    if drivelog_dir is not None:  # every drive-log sink at its defaults; the live view on a free port
        sets += [f"record.dir={str(drivelog_dir / 'record')!r}", f"capture.dir={str(drivelog_dir / 'capture')!r}",
                 "live.enabled=true", "live.port=0"]
    return load_config(None, [*sets, *settings.overrides])


def _open_feed(settings: LoopBenchSettings, video: Path, models):
    """(feed, clock, enforce_deadlines) for the mode: the runtime's own feeds, wired as it wires them."""
    from edge.capture import CaptureOptions, VideoFileStepper
    from edge.feeds import SimClock, SteppedFeed, SystemClock, open_live_feed

    frames_per_clip = models.manifest.profile.frames_per_clip
    if settings.mode == "stepped":
        clock = SimClock()
        stepper = VideoFileStepper(video, loop=True)
        return SteppedFeed(stepper, clock, settings.interval_ms, frames_per_clip), clock, False
    options = CaptureOptions(interval_ms=settings.interval_ms, frames_per_clip=frames_per_clip, loop=True)
    return open_live_feed(str(video), options, models.preprocessor), SystemClock(), True


@dataclass
class _Measured:
    """What the measured cycles leave: each stage's samples and the work the cycles did."""

    samples: dict[str, list[float]]
    verdicts: Counter[str] = field(default_factory=Counter)
    prefill_tokens: list[int] = field(default_factory=list)
    generated_tokens: list[int] = field(default_factory=list)
    frame_ids: list[int] = field(default_factory=list)

    @classmethod
    def empty(cls, drivelog: bool) -> _Measured:
        samples: dict[str, list[float]] = {name: [] for name in (*STAGES, "cycle_wall", "overhead",
                                                                  "overhead_other", "next_clip")}
        if drivelog:
            samples |= {f"{name}_drivelog_{state}": [] for name in ("overhead", "cycle_wall") for state in ("on", "off")}
        return cls(samples)

    def add(self, outcome: CycleOutcome, clip: Clip, next_clip_ms: float, drivelog_state: str | None) -> None:
        """One measured cycle; `drivelog_state` is "on"/"off" when the bench alternates the drive log."""
        samples = self.samples
        # The published StageTimings (their publish_ms runs up to the send, as before).
        stages = outcome.advice.stages.model_dump()
        for name in STAGES:
            value = stages.get(f"{name}_ms")
            if value is not None:
                samples[name].append(value)
        model_ms = sum(stages.get(f"{name}_ms") or 0.0 for name in MODEL_STAGES)
        overhead = outcome.cycle_wall_ms - model_ms
        samples["cycle_wall"].append(outcome.cycle_wall_ms)
        samples["overhead"].append(overhead)
        samples["overhead_other"].append(
            overhead - (stages.get("preprocess_ms") or 0.0) - (stages.get("publish_ms") or 0.0))
        samples["next_clip"].append(next_clip_ms)
        if drivelog_state is not None:
            samples[f"overhead_drivelog_{drivelog_state}"].append(overhead)
            samples[f"cycle_wall_drivelog_{drivelog_state}"].append(outcome.cycle_wall_ms)
        self.verdicts[outcome.advice.verdict.value] += 1
        self.frame_ids.append(clip.frame_ids[-1])
        if outcome.decode is not None:
            self.prefill_tokens.append(outcome.decode.prefill_tokens)
            self.generated_tokens.append(outcome.decode.generated_tokens)


def _switch_drivelog(loop: AdviceLoop, tap: DriveTap | None, done: int) -> bool:
    """Turn the drive log on or off for the block `done` falls in; whether it is on."""
    if tap is None:
        return False
    on = (done // DRIVELOG_BLOCK) % 2 == 0
    if not on and done % DRIVELOG_BLOCK == 0:
        tap.drain()  # the off block starts without the writer's backlog
    loop.parts.tap = tap if on else None
    return on


def _run_cycles(loop: AdviceLoop, feed: ClipFeed, settings: LoopBenchSettings, measured: _Measured) -> None:
    """Warm-up and measured cycles, each on the next clip the feed gives."""
    tap = loop.parts.tap
    done = 0
    last_clip_at = time.monotonic()
    while done < settings.warmup + settings.cycles:
        t = time.perf_counter()
        clip = loop.next_clip()
        next_clip_ms = (time.perf_counter() - t) * 1e3
        if clip is None:
            if time.monotonic() - last_clip_at > NO_CLIP_TIMEOUT_S:
                raise RuntimeError(f"no clip for {NO_CLIP_TIMEOUT_S:.0f} s: {feed.health()}")
            continue
        last_clip_at = time.monotonic()
        drivelog_on = _switch_drivelog(loop, tap, done)
        outcome = loop.run_cycle(clip)
        done += 1
        if done > settings.warmup:
            state = None if tap is None else ("on" if drivelog_on else "off")
            measured.add(outcome, clip, next_clip_ms, state)
    if tap is not None:
        loop.parts.tap = tap


def _run_facts(loop: AdviceLoop, models: ModelParts, audit_path: Path | None, resizes_before: int) -> dict[str, Any]:
    """What the run did besides its cycles (drive-log records, resizes, audit lines) and what it ran on."""
    tap = loop.parts.tap
    drivelog_work: dict[str, int] = {}
    if tap is not None:
        tap.drain()
        drivelog_work = {"drivelog_records_written": tap.written, "drivelog_dropped": tap.dropped}
    audit_lines = 0
    if loop.parts.audit is not None and audit_path is not None:
        loop.parts.audit.sync()
        audit_lines = sum(1 for _ in audit_path.open())
    return {
        "drivelog_work": drivelog_work,
        "resizes": models.preprocessor.resizes - resizes_before,
        "audit_lines": audit_lines,
        "vision_backend": models.vision.name,
        "decoder_quant": models.decoder.artifact.quant,
        "decoder_threads": {"generation": models.decoder.threads, "prefill": models.decoder.threads_batch},
    }


def _loop_report(bundle: Path, video: Path, settings: LoopBenchSettings, measured: _Measured,
                 facts: dict[str, Any]) -> Report:
    samples = measured.samples
    results = {name: Stats.from_samples(values).as_dict() for name, values in samples.items() if values}
    ratios = {
        "overhead_over_cycle_wall_p50": ratio(results["overhead"]["p50_ms"], results["cycle_wall"]["p50_ms"]),
    }
    if settings.drivelog:
        on, off = results["overhead_drivelog_on"], results["overhead_drivelog_off"]
        ratios |= {"overhead_p99_drivelog_on_minus_off_ms": on["p99_ms"] - off["p99_ms"],
                   "overhead_p50_drivelog_on_minus_off_ms": on["p50_ms"] - off["p50_ms"],
                   "cycle_wall_p50_drivelog_on_over_off": ratio(results["cycle_wall_drivelog_on"]["p50_ms"],
                                                                results["cycle_wall_drivelog_off"]["p50_ms"])}
    prefill_tokens, generated_tokens, frame_ids = measured.prefill_tokens, measured.generated_tokens, measured.frame_ids
    work = {
        "cycles": len(samples["cycle_wall"]),
        "verdicts": dict(measured.verdicts),
        "prefill_tokens_median": sorted(prefill_tokens)[len(prefill_tokens) // 2] if prefill_tokens else 0,
        "generated_tokens_median": sorted(generated_tokens)[len(generated_tokens) // 2] if generated_tokens else 0,
        "generated_tokens_total": sum(generated_tokens),
        "first_frame_id": frame_ids[0] if frame_ids else None,
        "last_frame_id": frame_ids[-1] if frame_ids else None,
        # Frames actually resized during the whole run (warm-up included): with the Preprocessor's
        # per-frame cache this is ~1 per cycle in steady state, not frames_per_clip.
        "preprocess_resizes": facts["resizes"],
        "audit_lines": facts["audit_lines"],
        **facts["drivelog_work"],
    }
    extra = {"samples": samples} if settings.keep_samples else {}
    return make_report(
        "loop", results, ratios,
        work=work, **extra,
        config={**asdict(settings), "bundle": str(bundle), "video": str(video),
                "vision_backend": facts["vision_backend"], "decoder_quant": facts["decoder_quant"],
                "decoder_threads": facts["decoder_threads"], "budgets_ms": UNREACHABLE_BUDGET_MS,
                "cpu_count": os.cpu_count(), "overhead": "cycle_wall - (encode + prefill + decode)"},
    )


def run_loop_bench(bundle: Path, video: Path, settings: LoopBenchSettings | None = None) -> Report:
    from edge.runtime import load_model_parts, running_loop

    settings = settings or LoopBenchSettings()
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"video {video} does not exist")
    measured = _Measured.empty(settings.drivelog)
    with tempfile.TemporaryDirectory(prefix="edge-bench-loop-") as tmp:
        audit_path = Path(tmp) / "audit.jsonl" if settings.audit else None
        config = bench_config(bundle, settings, audit_path, Path(tmp) if settings.drivelog else None)
        models = load_model_parts(config)
        try:
            feed, clock, enforce = _open_feed(settings, video, models)
            resizes_before = models.preprocessor.resizes
            with running_loop(config, models=models, feed=feed, clock=clock, enforce_deadlines=enforce) as loop:
                _run_cycles(loop, feed, settings, measured)
                facts = _run_facts(loop, models, audit_path, resizes_before)
        finally:
            models.close()
    return _loop_report(bundle, video, settings, measured, facts)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("loop", help="the real advice loop on a video: per-stage p50/p99 and loop overhead")
    parser.add_argument("--bundle", required=True, type=Path, help="model bundle folder")
    parser.add_argument("--video", required=True, type=Path, help="video file (looped)")
    parser.add_argument("--out", required=True, type=Path, help="JSON report path")
    parser.add_argument("--cycles", type=int, default=200, help="measured cycles (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3, help="cycles run first and not measured")
    parser.add_argument("--mode", choices=["stepped", "live"], default="stepped",
                        help="stepped: simulated clock, as fast as it goes; live: the video plays as a camera")
    parser.add_argument("--interval-ms", type=int, default=500, help="sampling interval (camera.interval_ms)")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads (1 avoids spin-wait collapse on a busy small box)")
    parser.add_argument("--vision-threads", type=int, default=0, help="ONNX Runtime threads (0: its default)")
    parser.add_argument("--quant", default="auto", help="decoder artifact of the bundle")
    parser.add_argument("--max-tokens", type=int, default=96, help="decoder.max_tokens")
    parser.add_argument("--no-audit", action="store_true", help="run without the JSONL audit log")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override applied last (e.g. decoder.threads_batch=2, vision.spin=true)")
    parser.add_argument("--samples", action="store_true", help="also write every cycle's stage times")
    parser.add_argument("--drivelog", action="store_true",
                        help="recording + capture + live view on in alternate blocks of cycles: overhead on vs off")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    settings = LoopBenchSettings(
        cycles=args.cycles, warmup=args.warmup, mode=args.mode, interval_ms=args.interval_ms, threads=args.threads,
        vision_threads=args.vision_threads, quant=args.quant, max_tokens=args.max_tokens, audit=not args.no_audit,
        overrides=tuple(args.overrides), keep_samples=args.samples,
        drivelog=args.drivelog,
    )
    report = run_loop_bench(args.bundle, args.video, settings)
    path = write_report(args.out, report)
    for name, stats in report["results"].items():
        print(f"{name:<15} p50 {stats['p50_ms']:8.3f} ms  p99 {stats['p99_ms']:8.3f} ms  "
              f"max {stats['max_ms']:8.3f} ms  n={stats['n']}")
    print(f"work: {report['work']}")
    print(f"wrote {path}")
    return 0
