"""`edge bench encoder` on the calibrated tiny bundle: fp32 vs INT8 ONNX Runtime CPU in one run."""

from __future__ import annotations

import argparse
import json

from edge.bench import encoder


def test_bench_reports_both_variants_ratio_and_preset(calibrated, tmp_path, capsys):
    bundle, _, _ = calibrated
    parser = argparse.ArgumentParser()
    encoder.register(parser.add_subparsers())
    args = parser.parse_args(["encoder", "--bundle", str(bundle), "--out", str(tmp_path / "enc.json"), "--clips", "3",
                              "--warmup", "1"])
    assert args.func(args) == 0
    report = json.loads((tmp_path / "enc.json").read_text())
    assert report["bench"] == "encoder" and {"created", "machine", "results", "ratios"} <= set(report)
    fp32, int8 = report["results"]["onnx_fp32_cpu"], report["results"]["onnx_int8_cpu"]
    assert fp32["n"] == int8["n"] == 3 and fp32["median_ms"] > 0 and int8["median_ms"] > 0
    assert report["ratios"]["fp32_over_int8_median"] == fp32["median_ms"] / int8["median_ms"]
    assert int8["adopted"] is True and int8["artifact"] == "vision/vision_int8.onnx"
    assert fp32["cosine_vs_onnx_fp32_cpu"] > 0.999999 and 0.98 < int8["cosine_vs_onnx_fp32_cpu"] < 1.0
    # The tiny tower is labelled as such: its INT8/fp32 ratio says nothing about real sizes.
    assert report["vision_tower"]["preset"] == "tiny" and report["vision_tower"]["params_estimate"] < 5_000_000
    assert report["int8_heldout_accuracy"]["heldout_clips"] == 2
    # No GPU here: TensorRT and CUDA variants are reported as skipped with a reason, not silently absent.
    assert "trt" in report["skipped"] and "onnx_fp32_cuda" in report["skipped"]
    assert "fp32_over_int8_median" in capsys.readouterr().out
