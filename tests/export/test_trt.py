"""`edge export trt` as far as a machine without a GPU allows: the QDQ graph checks TensorRT would
otherwise report one GPU build at a time, the choice of source graph, and the clear refusal when
TensorRT is absent. (The real build runs in tests/edge/test_tensorrt.py with `-m gpu`.)"""

from __future__ import annotations

import importlib.util
import shutil

import pytest

pytest.importorskip("onnx")

from calib.clips import sample_clips
from calib.quantize import QuantSettings, quantize_vision
from edge.manifest import load_bundle, write_manifest
from export.cli import main as export_main
from export.trt import TrtBuildError, build_engine, gpu_slug, plan_name, qdq_trt_problems, source_onnx

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def one_clip(tiny_vision_bundle, drive_videos):
    manifest, _ = load_bundle(tiny_vision_bundle)
    split = sample_clips(drive_videos[:1], manifest.profile, manifest.normalization, 1, 1,
                         pixel_format=manifest.vision[0].pixel_format, progress=False)
    return [split.calibration[0].pixel_values]


def _quantize(bundle, tmp_path, clips, **settings):
    manifest, bundle_dir = load_bundle(bundle)
    fp32 = manifest.vision[0]
    return quantize_vision(bundle_dir / fp32.path, tmp_path / "q.onnx", fp32.input_name, clips, QuantSettings(**settings))


def test_default_calibration_output_is_tensorrt_consumable(calibrated):
    bundle, result, _ = calibrated
    assert qdq_trt_problems(bundle / result.artifact.path) == []


def test_cpu_only_qdq_is_flagged_before_any_gpu_build(tiny_vision_bundle, tmp_path, one_clip):
    model = _quantize(tiny_vision_bundle, tmp_path, one_clip, trt_compatible=False)
    problems = " | ".join(qdq_trt_problems(model.path))
    assert "INT32 input" in problems and "non-zero zero point" in problems


def test_dynamic_quantisation_is_flagged(tiny_vision_bundle, tmp_path):
    model = _quantize(tiny_vision_bundle, tmp_path, [], mode="dynamic")
    assert model.quantized_nodes.get("MatMulInteger", 0) == 24  # every Gemm became an integer MatMul
    problems = qdq_trt_problems(model.path)
    assert len(problems) == 1 and "dynamic-quantisation ops" in problems[0]


def test_int8_plan_needs_a_calibrated_bundle(tiny_vision_bundle):
    manifest, _ = load_bundle(tiny_vision_bundle)
    assert source_onnx(manifest, "fp16").precision == "fp32"
    with pytest.raises(TrtBuildError, match="run `edge calib"):
        source_onnx(manifest, "int8")


def test_unadopted_int8_model_needs_force(calibrated, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(calibrated[0], bundle)
    manifest, bundle_dir = load_bundle(bundle)
    int8 = next(a for a in manifest.vision if a.precision == "int8")
    int8.adopted = False
    write_manifest(bundle_dir, manifest)
    manifest, _ = load_bundle(bundle)
    with pytest.raises(TrtBuildError, match="not adopted"):
        source_onnx(manifest, "int8")
    assert source_onnx(manifest, "int8", allow_unadopted=True).path == int8.path


def test_plan_names_are_per_gpu():
    assert gpu_slug("NVIDIA A10G") == "a10g"
    assert plan_name("int8", "NVIDIA Jetson AGX Orin") == "vision_int8_jetson-agx-orin.plan"


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here: the real build is tested with -m gpu")
def test_without_tensorrt_the_command_fails_clearly(calibrated, capsys):
    bundle, _, _ = calibrated
    before = (bundle / "manifest.json").read_text()
    with pytest.raises(TrtBuildError, match="TensorRT is not installed"):
        build_engine(bundle, "fp16")
    assert export_main(["export", "trt", "--bundle", str(bundle), "--precision", "int8"]) == 2
    err = capsys.readouterr().err
    assert "edge export trt: TensorRT is not installed" in err and "on the target device" in err
    assert (bundle / "manifest.json").read_text() == before  # nothing written


def test_bad_arguments_are_refused_before_anything_heavy(calibrated):
    with pytest.raises(TrtBuildError, match="precision must be one of"):
        build_engine(calibrated[0], "int4")
    with pytest.raises(TrtBuildError, match="workspace-gb must be > 0"):
        build_engine(calibrated[0], "fp16", workspace_gb=0)
