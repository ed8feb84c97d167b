"""`edge bench contention`: the loop's latency alone and beside other processes, in one run.

Three cases, each measured by `edge bench loop` (stepped mode, the real loop on a real drive
video, budgets out of reach) in a fresh child process:

- `idle`: nothing else started by the benchmark;
- `neighbour`: one CPU-bound process (`while True: pass`) runs the whole time;
- `second_runtime`: a second runtime instance (the same loop benchmark, endless) runs beside it.

The cases are interleaved round by round (idle, neighbour, second runtime, idle, ...), so a change
of the machine's background load spreads over all of them instead of biasing one; the samples of
a case are pooled over its rounds. The system load average before and after is in the report:
figures from a machine that other work shares are not idle figures.

`--baseline-spin` adds the same three cases with libgomp's own wait policy and ONNX Runtime's
spinning on, every core for both libraries (the configuration before the runtime chose its
defaults for sharing), so the report carries the comparison measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.benchreport import Report, Stats, make_report, ratio, write_report

CASES = ("idle", "neighbour", "second_runtime")
STAGES = ("total", "encode", "prefill", "decode")
DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "data" / "drive" / "udacity_solidWhiteRight.mp4"
# The acceptance bounds: ratio name -> the most it may be.
TARGETS = {
    "neighbour_over_idle_total_p50": 2.2,
    "neighbour_over_idle_total_p99": 3.0,
    "second_runtime_over_idle_total_p50": 2.5,
}
SECOND_RUNTIME_WARMUP_S = 4.0  # the second instance loads its models before the measured one starts
CHILD_TIMEOUT_S = 900


def _loop_command(bundle: Path, video: Path, out: Path, cycles: int, sets: list[str]) -> list[str]:
    command = [sys.executable, "-m", "edge.bench", "loop", "--bundle", str(bundle), "--video", str(video),
               "--out", str(out), "--cycles", str(cycles), "--warmup", "3", "--threads", "0", "--samples"]
    for assignment in sets:
        command += ["--set", assignment]
    return command


def _variant_env(variant: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if variant == "baseline_spin":
        env["OMP_WAIT_POLICY"] = ""  # libgomp's default: spin, then sleep (edge/llm/openmp.py)
    return env


def _variant_sets(variant: str, user_sets: list[str]) -> list[str]:
    if variant == "baseline_spin":
        # Every core for both libraries and both spinning: what the defaults were before.
        return ["vision.spin=true", f"decoder.threads={os.cpu_count()}", *user_sets]
    return list(user_sets)


def _start_neighbour(case: str, bundle: Path, video: Path, tmp: Path, variant: str,
                     sets: list[str]) -> subprocess.Popen | None:
    if case == "neighbour":
        return subprocess.Popen([sys.executable, "-c", "while True: pass"])
    if case == "second_runtime":
        command = _loop_command(bundle, video, tmp / "second.json", 10_000_000, sets)
        proc = subprocess.Popen(command, env=_variant_env(variant), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(SECOND_RUNTIME_WARMUP_S)
        return proc
    return None


def _measure(case: str, variant: str, bundle: Path, video: Path, cycles: int, user_sets: list[str],
             tmp: Path) -> dict[str, list[float]]:
    sets = _variant_sets(variant, user_sets)
    out = tmp / f"{variant}-{case}.json"
    neighbour = _start_neighbour(case, bundle, video, tmp, variant, sets)
    try:
        subprocess.run(_loop_command(bundle, video, out, cycles, sets), env=_variant_env(variant), check=True,
                       stdout=subprocess.DEVNULL, timeout=CHILD_TIMEOUT_S)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    report = json.loads(out.read_text())
    return {stage: report["samples"].get(stage, []) for stage in STAGES} | {
        "_threads": report["config"]["decoder_threads"], "_vision": report["config"]["vision_backend"]}


def run_contention_bench(bundle: Path, video: Path, cycles: int, rounds: int, user_sets: list[str],
                         baseline_spin: bool = False, progress=print) -> Report:
    variants = ["default", *(["baseline_spin"] if baseline_spin else [])]
    pooled: dict[tuple[str, str], dict[str, list[float]]] = {
        (v, c): {s: [] for s in STAGES} for v in variants for c in CASES}
    described: dict[str, object] = {}
    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edge-bench-contention-") as tmp:
        for round_index in range(rounds):
            for variant in variants:
                for case in CASES:
                    got = _measure(case, variant, bundle, video, cycles, user_sets, Path(tmp))
                    described[variant] = {"decoder_threads": got.pop("_threads"), "vision": got.pop("_vision")}
                    for stage in STAGES:
                        pooled[variant, case][stage] += got[stage]
                    total = Stats.from_samples(got["total"])
                    progress(f"round {round_index + 1}/{rounds} {variant:<13} {case:<15} total p50 "
                             f"{total.p50_ms:8.1f} ms  p99 {total.p99_ms:8.1f} ms  (load {os.getloadavg()[0]:.2f})")
    results, ratios = _summarise(pooled, variants)
    held = {name: (ratios.get(name) is not None and ratios[name] <= bound) for name, bound in TARGETS.items()}
    return make_report(
        "contention", results, ratios,
        targets=TARGETS, held=held,
        load_average={"before": list(load_before), "after": list(os.getloadavg())},
        wall_s=round(time.monotonic() - started, 1),
        config={"bundle": str(bundle), "video": str(video), "cycles_per_case_per_round": cycles,
                "rounds": rounds, "overrides": user_sets, "variants": described, "cpu_count": os.cpu_count(),
                "omp_wait_policy_default": "PASSIVE", "neighbour": "python -c 'while True: pass'"},
    )


def _summarise(pooled, variants):
    results: dict[str, object] = {}
    ratios: dict[str, float | None] = {}
    for variant in variants:
        prefix = "" if variant == "default" else f"{variant}."
        for case in CASES:
            for stage in STAGES:
                if pooled[variant, case][stage]:
                    results[f"{prefix}{case}.{stage}"] = Stats.from_samples(pooled[variant, case][stage]).as_dict()
        idle = results[f"{prefix}idle.total"]
        for case in CASES[1:]:
            for stat in ("p50", "p99"):
                ratios[f"{prefix}{case}_over_idle_total_{stat}"] = ratio(
                    results[f"{prefix}{case}.total"][f"{stat}_ms"], idle[f"{stat}_ms"])
    if "baseline_spin" in variants:
        for case in CASES:
            ratios[f"baseline_spin_over_default_{case}_total_p50"] = ratio(
                results[f"baseline_spin.{case}.total"]["p50_ms"], results[f"{case}.total"]["p50_ms"])
    return results, ratios


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "contention", help="loop latency idle, beside a CPU-bound process and beside a second runtime")
    parser.add_argument("--out", required=True, type=Path, help="JSON report path")
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the built-in one)")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="drive video, looped")
    parser.add_argument("--cycles", type=int, default=60, help="measured cycles per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the cases")
    parser.add_argument("--quick", action="store_true", help="20 cycles, 1 round (about a minute)")
    parser.add_argument("--baseline-spin", action="store_true",
                        help="also measure every core spinning (libgomp default, ORT spinning): the old defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for the runtime under test (e.g. decoder.threads=2)")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    bundle = args.bundle
    if bundle is None:
        from edge.builtin_bundle import builtin_bundle

        bundle = builtin_bundle()
    cycles, rounds = (20, 1) if args.quick else (args.cycles, args.rounds)
    report = run_contention_bench(bundle, args.video, cycles, rounds, args.overrides, args.baseline_spin)
    path = write_report(args.out, report)
    for name, value in report["ratios"].items():
        bound = TARGETS.get(name)
        print(f"{name:<48} {value:7.2f}" + (f"  (<= {bound}: {'held' if value <= bound else 'NOT held'})"
                                            if bound and value is not None else ""))
    print(f"load average before {report['load_average']['before']}, after {report['load_average']['after']}")
    print(f"wrote {path} ({report['wall_s']} s)")
    return 0
