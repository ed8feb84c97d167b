"""`edge bench preprocess`: ours against the transformers processor, in the same run."""

from __future__ import annotations

import pytest


def test_preprocess_bench_reports_both_sides_on_the_same_grid(tmp_path):
    pytest.importorskip("transformers")
    from edge.benchreport import write_report
    from export.bench_preprocess import run_preprocess_bench

    report = run_preprocess_bench(clips=2, ours_per_hf=2)  # shape and plumbing, not speed
    assert report["bench"] == "preprocess"
    assert report["setup"]["pixel_format"] == "frames"
    # The frames run also times both patch-layout paths and the normalisation moved into the graph.
    assert set(report["results"]) == {"ours", "ours_streaming", "ours_streaming_uint8", "ours_streaming_float32",
                                      "in_graph_normalise_cpu", "hf"}
    assert report["results"]["hf"]["n"] == 2 and report["results"]["ours"]["n"] == 4
    assert report["ratios"]["hf_over_ours_median"] > 0 and report["ratios"]["hf_over_ours_streaming_float32_median"] > 0
    # Same work on both sides: normalised pixels differ only by the resize filter.
    assert 0 < report["setup"]["pixel_mean_abs_diff_normalised"] < 0.05
    assert write_report(tmp_path / "pre.json", report).exists()

    # Every format compares the same pixels with the processor's.
    for fmt, rows in [("uint8", {"ours_streaming_float32", "in_graph_normalise_cpu"}), ("float32", set())]:
        other = run_preprocess_bench(clips=1, ours_per_hf=1, pixel_format=fmt)
        assert set(other["results"]) == {"ours", "ours_streaming", "hf"} | rows
        assert other["setup"]["pixel_mean_abs_diff_normalised"] == pytest.approx(
            report["setup"]["pixel_mean_abs_diff_normalised"], abs=1e-6)
