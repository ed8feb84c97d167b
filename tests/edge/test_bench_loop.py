"""`edge bench loop` on the tiny bundle and a real drive video: a short run that checks the report."""

from __future__ import annotations

import json

import pytest

from edge.bench.loop import LoopBenchSettings, run_loop_bench
from edge_cli.main import main as edge_main

CYCLES = 3
REPORTED_STAGES = ("preprocess", "encode", "prefill", "decode", "publish", "total")


@pytest.fixture(scope="module")
def video(drive_videos):
    return drive_videos[0]


@pytest.fixture(scope="module")
def report(tiny_bundle, video):
    settings = LoopBenchSettings(cycles=CYCLES, warmup=1, max_tokens=16)
    return run_loop_bench(tiny_bundle, video, settings)


def test_every_stage_ran_every_cycle(report):
    results = report["results"]
    assert report["bench"] == "loop"
    for name in (*REPORTED_STAGES, "cycle_wall", "overhead", "overhead_other", "next_clip"):
        assert results[name]["n"] == CYCLES, name
    work = report["work"]
    assert work["cycles"] == CYCLES
    # 16 tokens of a random tiny model rarely reach a decision: any verdict, but one per cycle.
    assert sum(work["verdicts"].values()) == CYCLES
    assert work["prefill_tokens_median"] > 0 and work["generated_tokens_total"] > 0
    assert work["last_frame_id"] > work["first_frame_id"]  # the video advanced
    assert work["audit_lines"] == CYCLES + 1  # warm-up included: the audit log saw every cycle
    # The per-frame resize cache works: clips slide by one sample, so far fewer resizes than frames.
    assert work["preprocess_resizes"] < (CYCLES + 1) * 4


def test_numbers_are_sane(report):
    results = report["results"]
    for name in (*REPORTED_STAGES, "cycle_wall", "overhead"):
        stats = results[name]
        assert 0 < stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"], name
    # Overhead is the cycle minus the model stages: positive, and below the whole cycle.
    assert results["overhead"]["max_ms"] < results["cycle_wall"]["max_ms"]
    assert results["total"]["p50_ms"] <= results["cycle_wall"]["p50_ms"]
    model_p50 = sum(results[name]["p50_ms"] for name in ("encode", "prefill", "decode"))
    assert model_p50 < results["cycle_wall"]["max_ms"]
    assert 0 < report["ratios"]["overhead_over_cycle_wall_p50"] < 1


def test_live_mode_via_cli(tiny_bundle, video, tmp_path):
    out = tmp_path / "loop.json"
    code = edge_main(["bench", "loop", "--bundle", str(tiny_bundle), "--video", str(video), "--out", str(out),
                      "--mode", "live", "--cycles", "2", "--warmup", "0", "--interval-ms", "200",
                      "--max-tokens", "8", "--no-audit"])
    assert code == 0
    written = json.loads(out.read_text())
    assert written["config"]["mode"] == "live" and written["work"]["cycles"] == 2
    assert written["work"]["audit_lines"] == 0
    # On a real clock the newest frame has a real age.
    assert written["results"]["capture_age"]["max_ms"] > 0
    for name in REPORTED_STAGES:
        assert written["results"][name]["n"] == 2


def test_settings_refuse_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        LoopBenchSettings(mode="realtime")


def test_drivelog_on_and_off_are_measured_in_alternate_blocks(tiny_bundle, video):
    settings = LoopBenchSettings(cycles=10, warmup=0, max_tokens=16, drivelog=True, audit=False)
    report = run_loop_bench(tiny_bundle, video, settings)
    results, work = report["results"], report["work"]
    assert results["overhead_drivelog_on"]["n"] == results["overhead_drivelog_off"]["n"] == 5
    assert "overhead_p99_drivelog_on_minus_off_ms" in report["ratios"]
    # Every on-cycle logged its advice and its new frame (first clip: all 4), the status messages too.
    assert work["drivelog_records_written"] >= 5 + (4 + 4) and work["drivelog_dropped"] == 0
