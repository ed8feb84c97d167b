"""`edge calib` on the tiny bundle with the real drive videos (skipped where they are absent).

Real components throughout: OpenCV decoding through edge.capture, edge.preprocess, onnxruntime's
quantiser and ONNX Runtime sessions; the figures asserted are measured, not stored.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from calib.calibrate import REPORT_PATH
from calib.cli import main as calib_main
from calib.clips import CalibrationError, overlapping_frames, sample_clips
from calib.quantize import QuantSettings, gemm_to_matmul, quantize_vision, resolve_keep_float
from edge.config import VisionConfig
from edge.manifest import load_bundle
from edge.vision.base import random_input
from edge.vision.select import select_backend

THRESHOLD = 0.99


@pytest.fixture
def bundle_copy(tiny_vision_bundle, tmp_path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(tiny_vision_bundle, out)
    return out


@pytest.fixture
def corrupt_video(tmp_path) -> Path:
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    return path


def test_int8_heldout_cosine_reported_and_adopted(calibrated):
    bundle, result, _ = calibrated
    manifest, _ = load_bundle(bundle)  # hashes of the new files verify
    int8 = [a for a in manifest.vision if a.format == "onnx" and a.precision == "int8"]
    assert len(int8) == 1
    acc = int8[0].accuracy
    report = json.loads((bundle / REPORT_PATH).read_text())
    assert manifest.reports["int8_accuracy"] == REPORT_PATH
    # Every slice of the row is measured: merger + 3 DeepStack slices (tiny preset), plus the whole row.
    assert set(report["outputs"]) == {"row", "merger", "deepstack_1", "deepstack_2", "deepstack_3"}
    assert len(report["heldout"]) == 2 and report["worst_clip"]["clip"] in {c["clip"] for c in report["heldout"]}
    figures = {k: round(v["cosine_min"], 6) for k, v in report["outputs"].items()}
    # The main output (the merger) and every other slice: INT8 within the threshold of fp32.
    assert report["outputs"]["merger"]["cosine_min"] >= THRESHOLD, figures
    assert result.accuracy.worst_cosine >= THRESHOLD, figures
    assert result.adopted and int8[0].adopted and report["adopted"] and not report["forced"]
    assert acc["cosine"] == pytest.approx(report["outputs"]["row"]["cosine_min"])
    assert acc["report"] == REPORT_PATH and acc["passed"] is True
    assert 0 < acc["max_abs_diff"] < 1.0
    # The runtime now picks INT8 by default and its rows match fp32 closely.
    choice = select_backend(bundle, manifest, VisionConfig(backend="onnxruntime", precision="auto"))
    assert choice.backend.artifact.precision == "int8", choice.reason
    fp32 = select_backend(bundle, manifest, VisionConfig(backend="onnxruntime", precision="fp32")).backend
    # Both graphs take whole uint8 frames (they normalise and patchify); INT8 calibration keeps the input.
    assert fp32.artifact.pixel_format == choice.backend.artifact.pixel_format == "frames"
    pixels = random_input(fp32.artifact, np.random.default_rng(0))
    a, b = fp32.encode(pixels).ravel(), choice.backend.encode(pixels).ravel()
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.98


def test_calibration_and_heldout_clips_are_disjoint(calibrated, drive_videos):
    bundle, _, _ = calibrated
    report = json.loads((bundle / REPORT_PATH).read_text())
    calib_frames = {(c["video"], f) for c in report["calibration_clips"] for f in c["frame_ids"]}
    held_frames = {(c["video"], f) for c in report["heldout"] for f in c["frame_ids"]}
    assert calib_frames and held_frames and not (calib_frames & held_frames)
    assert len(report["calibration_clips"]) == 4
    # Spread across videos, not all from the first one.
    assert len({c["video"] for c in report["calibration_clips"] + report["heldout"]}) >= 2
    # Report says how clips were made (the runtime's own capture + preprocessing).
    assert "VideoFileStepper" in report["sampling"]["through"]


def test_sampling_many_clips_is_disjoint_and_deterministic(tiny_vision_bundle, drive_videos):
    manifest, _ = load_bundle(tiny_vision_bundle)
    args = (drive_videos, manifest.profile, manifest.normalization, 10, 4)
    first = sample_clips(*args, progress=False)
    again = sample_clips(*args, progress=False)
    everything = first.calibration + first.heldout
    assert len(first.calibration) == 10 and len(first.heldout) == 4
    assert not overlapping_frames(first.calibration, first.heldout)
    # No frame in two clips at all (stronger than the held-out requirement).
    frames = [(c.video, f) for c in everything for f in c.frame_ids]
    assert len(frames) == len(set(frames))
    assert [c.frame_ids for c in everything] == [c.frame_ids for c in again.calibration + again.heldout]
    assert all(np.array_equal(a.pixel_values, b.pixel_values)
               for a, b in zip(everything, again.calibration + again.heldout, strict=True))
    shape = (manifest.profile.patches_per_clip, manifest.profile.patch_dim)
    assert all(c.pixel_values.shape == shape and c.pixel_values.dtype == np.float32 for c in everything)


def test_clip_pixels_are_the_runtime_preprocessing_of_the_stepper_frames(tiny_vision_bundle, drive_videos):
    from edge.capture import VideoFileStepper
    from edge.preprocess import Preprocessor

    manifest, _ = load_bundle(tiny_vision_bundle)
    split = sample_clips(drive_videos[:1], manifest.profile, manifest.normalization, 2, 1, progress=False)
    clip = split.calibration[0]
    with VideoFileStepper(clip.video) as stepper:
        frames = stepper.clip_at(clip.t_ms, 500, manifest.profile.frames_per_clip)
    assert frames.frame_ids == clip.frame_ids
    want = Preprocessor(manifest.profile, manifest.normalization).preprocess_clip(frames.frames)
    np.testing.assert_array_equal(clip.pixel_values, want)


def test_threshold_refuses_then_force_adopts(bundle_copy, drive_videos, capsys):
    # An unreachable threshold: the INT8 model is recorded with its figures but not adopted.
    argv = ["--bundle", str(bundle_copy), "--video", str(drive_videos[0]), "--video", str(drive_videos[1]),
            "--clips", "2", "--heldout", "1", "--threshold", "0.999999", "--no-progress"]
    assert calib_main(argv) == 3
    out = capsys.readouterr().out
    assert "NOT ADOPTED" in out and "worst cosine" in out
    manifest, _ = load_bundle(bundle_copy)
    int8 = next(a for a in manifest.vision if a.precision == "int8")
    assert not int8.adopted and int8.accuracy["passed"] is False
    assert int8.accuracy["cosine_min_slice"] < 0.999999
    report = json.loads((bundle_copy / REPORT_PATH).read_text())
    assert report["passed"] is False and report["adopted"] is False
    choice = select_backend(bundle_copy, manifest, VisionConfig(backend="onnxruntime"))
    assert choice.backend.artifact.precision == "fp32"

    # --force adopts it (and says so); re-running replaces the previous INT8 model, not adds one.
    assert calib_main([*argv, "--force"]) == 0
    assert "ADOPTED BY --force" in capsys.readouterr().out
    manifest, _ = load_bundle(bundle_copy)
    int8s = [a for a in manifest.vision if a.precision == "int8"]
    assert len(int8s) == 1 and int8s[0].adopted and int8s[0].accuracy["forced"] is True


def test_corrupt_video_is_skipped_with_a_message(tiny_vision_bundle, drive_videos, corrupt_video, tmp_path):
    manifest, _ = load_bundle(tiny_vision_bundle)
    messages = []
    split = sample_clips([corrupt_video, drive_videos[0], tmp_path / "missing.mp4"], manifest.profile,
                         manifest.normalization, 2, 1, on_skip=lambda v, r: messages.append((v, r)), progress=False)
    assert len(split.calibration) == 2 and len(split.heldout) == 1
    reasons = dict(split.skipped)
    assert "cannot be decoded" in reasons[str(corrupt_video)]
    assert reasons[str(tmp_path / "missing.mp4")] == "file not found"
    assert [v for v, _ in messages] == [str(corrupt_video), str(tmp_path / "missing.mp4")]


def test_corrupt_video_in_cli_run_is_reported(bundle_copy, drive_videos, corrupt_video, capsys):
    rc = calib_main(["--bundle", str(bundle_copy), "--video", str(corrupt_video), "--video", str(drive_videos[0]),
                     "--clips", "2", "--heldout", "1", "--no-progress", "--force"])
    assert rc == 0
    err = capsys.readouterr().err
    assert f"skipping video {corrupt_video}" in err and "cannot be decoded" in err
    report = json.loads((bundle_copy / REPORT_PATH).read_text())
    assert report["skipped_videos"][0]["video"] == str(corrupt_video)


def test_no_clip_at_all_is_a_clear_error(bundle_copy, corrupt_video, tmp_path, capsys):
    manifest, _ = load_bundle(bundle_copy)
    with pytest.raises(CalibrationError, match="no clip can be read: all 2 video"):
        sample_clips([corrupt_video, tmp_path / "nope.mp4"], manifest.profile, manifest.normalization, 2, 1,
                     progress=False)
    rc = calib_main(["--bundle", str(bundle_copy), "--video", str(corrupt_video), "--no-progress"])
    assert rc == 2
    assert "no clip can be read" in capsys.readouterr().err
    # The bundle is untouched by a failed run.
    after, _ = load_bundle(bundle_copy)
    assert [a.precision for a in after.vision] == ["fp32"]


def test_keep_float_leaves_named_nodes_unquantised(tiny_vision_bundle, drive_videos, tmp_path):
    import onnx

    manifest, bundle_dir = load_bundle(tiny_vision_bundle)
    fp32 = manifest.vision[0]
    split = sample_clips(drive_videos[:1], manifest.profile, manifest.normalization, 1, 1,
                         pixel_format=fp32.pixel_format, progress=False)
    settings = QuantSettings(keep_float=("patch_embed", "merger"))
    result = quantize_vision(bundle_dir / fp32.path, tmp_path / "q.onnx", fp32.input_name,
                             [split.calibration[0].pixel_values], settings)
    assert "/patch_embed/proj/Conv" in result.kept_float
    assert {"/merger/linear_fc1/Gemm", "/merger/linear_fc2/Gemm"} <= set(result.kept_float)
    assert not any(n.startswith("/deepstack_merger_list") for n in result.kept_float)
    graph = onnx.load(str(result.path)).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    consumers = {n.name: n for n in graph.node}
    for name in ("/patch_embed/proj/Conv", "/merger/linear_fc1/Gemm"):
        assert all(producers.get(i) != "DequantizeLinear" for i in consumers[name].input), name
    # ... while the blocks in between are quantised.
    assert any(producers.get(i) == "DequantizeLinear" for i in consumers["/blocks.0/mlp/linear_fc1/Gemm"].input)
    with pytest.raises(CalibrationError, match="matches no node"):
        resolve_keep_float([n.name for n in graph.node], ["no_such_module"])


def test_gemm_to_matmul_is_exact(tiny_vision_bundle, tmp_path):
    import onnx
    import onnxruntime as ort

    manifest, bundle_dir = load_bundle(tiny_vision_bundle)
    fp32 = manifest.vision[0]
    model = onnx.load(str(bundle_dir / fp32.path))
    assert gemm_to_matmul(model) == 24  # every nn.Linear of the tiny tower
    assert not [n for n in model.graph.node if n.op_type == "Gemm"]
    onnx.save(model, str(tmp_path / "mm.onnx"))
    pixels = random_input(fp32, np.random.default_rng(3))
    want = ort.InferenceSession(str(bundle_dir / fp32.path), providers=["CPUExecutionProvider"]).run(None, {fp32.input_name: pixels})[0]
    got = ort.InferenceSession(str(tmp_path / "mm.onnx"), providers=["CPUExecutionProvider"]).run(None, {fp32.input_name: pixels})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_default_int8_graph_runs_every_gemm_as_an_integer_kernel(calibrated, tmp_path):
    """The speed-up hinges on ONNX Runtime fusing each QDQ Gemm into QGemm. Before `split_gemm_bias`
    only 16 of the tiny tower's 24 Gemms fused (MLP and merger fc1 stayed DequantizeLinear -> fp32
    Gemm) and INT8 was slower than fp32 on the full-size tower."""
    import onnx
    import onnxruntime as ort

    bundle, result, _ = calibrated
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(bundle / result.artifact.path), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("QGemm") == 24, sorted(set(ops))
    assert "Gemm" not in ops and "QLinearConv" in ops
    # Weights stay INT8 inside the integer kernels: nothing dequantises a weight at run time.
    assert ops.count("DequantizeLinear") <= 1  # at most the one before the output
