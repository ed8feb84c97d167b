"""`edge fleet bench` runs both configurations interleaved and writes the benchmark shape
(edge/benchreport.py) with the ratio, the CPU time per drive and the machine's load. Speed itself is
measured by the command (docs/PERFORMANCE.md), not asserted here."""

from __future__ import annotations

import json
import shutil

from tests.fleet.conftest import SCENARIOS


def test_fleet_bench_writes_medians_ratios_and_load(default_bundle, drives_root, tmp_path):
    from edge_cli.main import main

    root = tmp_path / "drives"
    shutil.copytree(drives_root / SCENARIOS[0], root / SCENARIOS[0])
    out = tmp_path / "bench.json"
    assert main(["fleet", "bench", "--scenes", str(root), "--bundle", str(default_bundle), "--out", str(out),
                 "--rounds", "1", "--precision", "fp32+q4_k_m"]) == 0
    report = json.loads(out.read_text())
    assert set(report) >= {"bench", "created", "machine", "results", "ratios", "load_average", "projection"}
    assert report["bench"] == "fleet_throughput"
    one, two = report["results"]["1_worker"], report["results"]["2_workers"]
    assert [r["workers"] for r in one["runs"]] == [1] and [r["workers"] for r in two["runs"]] == [2]
    for summary in (one, two):
        run = summary["runs"][0]
        assert run["done"] == 1 and run["cycles"] == 5 * 2
        assert summary["median_cycles_per_second"] == run["cycles_per_second"] > 0
        assert summary["median_cpu_s_per_drive"] > 0
    assert report["ratios"]["2_over_1_cycles_per_second"] == two["median_cycles_per_second"] / one["median_cycles_per_second"]
    assert len(report["load_average"]["before"]) == 3
    assert report["projection"]["drives"] == 1000 and report["projection"]["worker_hours"] > 0
