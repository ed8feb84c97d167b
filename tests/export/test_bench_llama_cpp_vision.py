"""`edge bench encoder-vs-llama-cpp` on the calibrated tiny bundle: ONNX Runtime fp32 and INT8
against llama.cpp's own vision path (mtmd with an mmproj of the same checkpoint), one run."""

from __future__ import annotations

import argparse
import json

import pytest

from export import bench_llama_cpp_vision

pytest.importorskip("torch")
pytest.importorskip("gguf")


def test_against_llama_cpp_reports_every_path_its_ratios_and_the_goal(calibrated, tiny_bundle, tiny_checkpoint,
                                                                       drive_videos, tmp_path, capsys):
    from export.checkpoint import CheckpointReader
    from export.mmproj import write_mmproj_gguf

    bundle, _, _ = calibrated
    mmproj = write_mmproj_gguf(CheckpointReader(tiny_checkpoint), tmp_path / "mmproj-f16.gguf", base="f16")
    text = tiny_bundle / "decoder" / "decoder-f32.gguf"  # the vision-only bundle's vocabulary
    parser = argparse.ArgumentParser()
    bench_llama_cpp_vision.register(parser.add_subparsers())
    args = parser.parse_args(["encoder-vs-llama-cpp", "--bundle", str(bundle), "--out", str(tmp_path / "enc.json"),
                              "--mmproj", str(mmproj), "--text-gguf", str(text),
                              "--video", str(drive_videos[0]), "--checkpoint", str(tiny_checkpoint),
                              "--clips", "2", "--warmup", "1", "--threads", "2"])
    assert args.func(args) == 0
    report = json.loads((tmp_path / "enc.json").read_text())
    assert report["bench"] == "encoder_against_llama_cpp" and {"created", "machine", "results", "ratios"} <= set(report)
    results = report["results"]
    assert set(results) == {"onnx_fp32_cpu", "onnx_int8_cpu", "llama_cpp_f16_cpu"}
    assert all(r["n"] == 2 and r["median_ms"] > 0 for r in results.values())
    llama = results["llama_cpp_f16_cpu"]
    assert 0 < llama["encode_only_median_ms"] <= llama["max_ms"]
    ratios = report["ratios"]
    assert ratios["llama_cpp_f16_cpu_over_onnx_int8_cpu_median"] == llama["median_ms"] / results["onnx_int8_cpu"]["median_ms"]
    assert ratios["llama_cpp_f16_cpu_over_onnx_fp32_cpu_median"] == llama["median_ms"] / results["onnx_fp32_cpu"]["median_ms"]
    # Real drive frames: ours and llama.cpp's agree with transformers; INT8 is close, not equal.
    assert results["onnx_fp32_cpu"]["cosine_vs_transformers"] > 0.999999
    assert llama["cosine_vs_transformers"] > 0.9999 and llama["cosine_vs_onnx_fp32_cpu"] > 0.9999
    assert 0.98 < results["onnx_int8_cpu"]["cosine_vs_transformers"] < 1.0
    goal = report["goal"]
    assert goal["against"] == "llama_cpp_f16_cpu" and goal["cosine_to"] == "cosine_vs_transformers"
    assert goal["met"] == (goal["int8_speedup"] >= 1.5 and goal["int8_cosine"] >= 0.99)
    assert report["vision_tower"]["preset"] == "tiny"
    assert "goal (INT8 >=" in capsys.readouterr().out


def test_a_vision_only_bundle_without_a_vocabulary_is_refused(calibrated, tmp_path, capsys):
    bundle, _, _ = calibrated
    parser = argparse.ArgumentParser()
    bench_llama_cpp_vision.register(parser.add_subparsers())
    args = parser.parse_args(["encoder-vs-llama-cpp", "--bundle", str(bundle), "--out", str(tmp_path / "enc.json"),
                              "--mmproj", str(tmp_path / "missing.gguf")])
    assert args.func(args) == 2
    assert "--text-gguf" in capsys.readouterr().out
    assert not (tmp_path / "enc.json").exists()
