from edge.bench.bus import run_bus_bench


def test_bus_bench_report_has_both_variants_and_ratios():
    # A short run: this checks the shape and that real messages flowed, not the speed.
    report = run_bus_bench(count=300, rounds=2)
    results = report["results"]
    for name in ["ours_tcp", "ours_ipc", "pyzmq_tcp", "pyzmq_ipc"]:
        assert results[name]["n"] == 300
        assert 0 < results[name]["p50_ms"] <= results[name]["p99_ms"] <= results[name]["max_ms"]
    assert set(report["ratios"]) >= {"ours_over_pyzmq_tcp_p99", "ours_over_pyzmq_ipc_p99"}
    assert report["bench"] == "bus" and report["machine"]["cores"] >= 1
    assert report["config"]["rounds"] == 2
