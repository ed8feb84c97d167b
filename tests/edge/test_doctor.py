"""`edge doctor`: the machine report on this CPU box, and the bundle verdicts (runs here / cannot run
here, with the reason). Bundles are built in tmp with real files and real sha256s; the GGUF is
written by the `gguf` package, so the doctor's own header reader is checked against an
independent writer."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge import doctor
from edge.manifest import (
    BundleManifest,
    CameraProfile,
    DecoderArtifact,
    Normalization,
    SpecialTokens,
    VisionArtifact,
    add_file,
    write_manifest,
)

EDGE = Path(sys.executable).with_name("edge")
# The machine CI runs on has no NVIDIA GPU; on one that has, the "no GPU" assertions do not apply.
HAS_NVIDIA_DEVICE = Path("/dev/nvidia0").exists() or Path("/dev/nvhost-gpu").exists()

# A tiny but self-consistent geometry: 64x64 pixels, 2 frames -> 16 patches, 4 visual tokens.
PROFILE = CameraProfile(width=64, height=64, frames_per_clip=2)
N_EMBD, N_DEEPSTACK = 256, 3
N_EMBD_INP = N_EMBD * (1 + N_DEEPSTACK)
GGUF_LAYERS, GGUF_HEADS, GGUF_KV_HEADS, GGUF_HEAD_DIM = 4, 4, 2, 64
A10G = {"gpu_name": "NVIDIA A10G", "compute_capability": "8.6", "tensorrt_version": "10.3.0.26"}


def run_edge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EDGE), *args], capture_output=True, text=True, timeout=120)


def write_gguf(path: Path, n_vocab: int = 3000) -> None:
    gguf = pytest.importorskip("gguf")
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch="qwen3vlmoe")
    writer.add_block_count(GGUF_LAYERS)
    writer.add_embedding_length(N_EMBD)
    writer.add_head_count(GGUF_HEADS)
    writer.add_head_count_kv(GGUF_KV_HEADS)
    writer.add_key_length(GGUF_HEAD_DIM)
    writer.add_value_length(GGUF_HEAD_DIM)
    # A vocabulary long enough that the reader must skip it rather than keep it.
    writer.add_token_list([f"tok{i}" for i in range(n_vocab)])
    writer.add_tensor("token_embd.weight", np.zeros((n_vocab, N_EMBD), np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def make_bundle(root: Path, *, onnx: bool, plan_built_for: dict | None) -> Path:
    """A bundle folder whose manifest validates and whose files hash correctly. The vision files'
    bytes are not models: the doctor judges compatibility and memory, it does not execute them."""
    bundle = root / "bundle"
    (bundle / "vision").mkdir(parents=True)
    (bundle / "decoder").mkdir()
    write_gguf(bundle / "decoder" / "model-q4_k_m.gguf")
    manifest = BundleManifest(
        profile=PROFILE,
        normalization=Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        special_tokens=SpecialTokens(
            im_start=1, im_end=2, vision_start=3, vision_end=4, image_pad=5, video_pad=6, endoftext=0
        ),
        decoder=[
            DecoderArtifact(
                path="decoder/model-q4_k_m.gguf",
                quant="q4_k_m",
                n_embd=N_EMBD,
                n_embd_inp=N_EMBD_INP,
                n_deepstack=N_DEEPSTACK,
                n_vocab=3000,
                n_layer=GGUF_LAYERS,
            )
        ],
    )
    shapes = {
        "input_name": "pixel_values",
        "input_shape": [PROFILE.patches_per_clip, PROFILE.patch_dim],
        "output_name": "vision_embeds",
        "output_shape": [PROFILE.tokens_per_clip, N_EMBD_INP],
    }
    if onnx:
        (bundle / "vision" / "vision_fp32.onnx").write_bytes(b"\x08\x07" * 4096)
        manifest.vision.append(
            VisionArtifact(path="vision/vision_fp32.onnx", format="onnx", precision="fp32", **shapes)
        )
    if plan_built_for is not None:
        (bundle / "vision" / "vision_fp16.plan").write_bytes(b"ftrt" * 4096)
        manifest.vision.append(
            VisionArtifact(
                path="vision/vision_fp16.plan",
                format="tensorrt",
                precision="fp16",
                built_for=plan_built_for,
                **shapes,
            )
        )
    for art in manifest.vision + manifest.decoder:
        add_file(manifest, bundle, art.path)
    write_manifest(bundle, manifest)
    return bundle


def test_doctor_json_reports_this_cpu_machine():
    result = run_edge("doctor", "--json")
    assert result.returncode == 0, result.stderr
    machine = json.loads(result.stdout)["machine"]
    assert machine["python"] == sys.version.split()[0]
    assert machine["packages"]["onnxruntime"] is not None
    assert machine["packages"]["llama-cpp-python"] is not None
    assert "CPUExecutionProvider" in machine["onnxruntime_providers"]
    assert machine["ram_total_bytes"] > machine["ram_available_bytes"] > 0
    if HAS_NVIDIA_DEVICE:
        pytest.skip("this machine has an NVIDIA GPU; the no-GPU assertions below do not apply")
    assert machine["gpus"] == []
    assert machine["cuda_available"] is False
    assert machine["llama_gpu_offload"] is False  # the CPU build of llama.cpp
    assert machine["tensorrt_version"] is None and machine["tensorrt_error"]
    assert "CUDAExecutionProvider" not in machine["onnxruntime_providers"]
    assert "NVML" in machine["gpu_probe"] and "CUDA driver" in machine["gpu_probe"]
    assert machine["cameras"] == [] or all(c["path"].startswith("/dev/video") for c in machine["cameras"])


def test_doctor_text_names_missing_gpu():
    result = run_edge("doctor")
    assert result.returncode == 0, result.stderr
    if not HAS_NVIDIA_DEVICE:
        assert "gpu: none" in result.stdout
    assert "onnxruntime providers:" in result.stdout


@pytest.mark.skipif(HAS_NVIDIA_DEVICE, reason="judges a plan against a machine without GPU")
def test_bundle_with_only_a_plan_for_another_gpu_cannot_run(tmp_path):
    bundle = make_bundle(tmp_path, onnx=False, plan_built_for=A10G)
    result = run_edge("doctor", "--bundle", str(bundle), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)["bundle"]
    assert report["loaded"] is True and report["runnable"] is False
    (reason,) = report["reasons"]
    assert "no vision artifact can run here" in reason
    assert "vision/vision_fp16.plan" in reason and "NVIDIA A10G" in reason and "no NVIDIA GPU" in reason

    text = run_edge("doctor", "--bundle", str(bundle))
    assert text.returncode == 1
    assert "CANNOT run here" in text.stdout and "built for NVIDIA A10G" in text.stdout


def test_bundle_with_onnx_and_gguf_runs_on_cpu(tmp_path):
    bundle = make_bundle(tmp_path, onnx=True, plan_built_for=A10G)
    result = run_edge("doctor", "--bundle", str(bundle), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)["bundle"]
    assert report["runnable"] is True and report["reasons"] == []
    if not HAS_NVIDIA_DEVICE:
        # The plan is still reported as unusable; ONNX Runtime on the CPU carries the vision.
        assert report["vision_choice"] == "onnx fp32 (vision/vision_fp32.onnx)"
        plan_check = next(c for c in report["checks"] if "tensorrt" in c["name"])
        assert plan_check["ok"] is False and "A10G" in plan_check["detail"]
    memory = report["memory"]
    assert memory["gguf_bytes"] == (bundle / "decoder" / "model-q4_k_m.gguf").stat().st_size
    # From the GGUF header: layers x kv heads x (k + v head dims) x n_ctx (4096 by default) x f16.
    assert memory["kv_cache_bytes"] == GGUF_LAYERS * GGUF_KV_HEADS * 2 * GGUF_HEAD_DIM * 4096 * 2


def test_bundle_whose_file_changed_does_not_load(tmp_path):
    bundle = make_bundle(tmp_path, onnx=True, plan_built_for=None)
    with open(bundle / "vision" / "vision_fp32.onnx", "r+b") as handle:
        handle.write(b"\x00")
    result = run_edge("doctor", "--bundle", str(bundle), "--json")
    assert result.returncode == 1
    (reason,) = json.loads(result.stdout)["bundle"]["reasons"]
    assert (
        reason.startswith("the bundle does not load")
        and "vision/vision_fp32.onnx" in reason
        and "sha256" in reason
    )


def test_config_decoder_settings_reach_the_estimate(tmp_path):
    bundle = make_bundle(tmp_path, onnx=True, plan_built_for=None)
    result = run_edge("doctor", "--bundle", str(bundle), "--json", "--set", "decoder.n_ctx=1024")
    assert result.returncode == 0, result.stderr
    memory = json.loads(result.stdout)["bundle"]["memory"]
    assert memory["kv_cache_bytes"] == GGUF_LAYERS * GGUF_KV_HEADS * 2 * GGUF_HEAD_DIM * 1024 * 2


def test_not_enough_ram_is_a_reason(tmp_path):
    bundle = make_bundle(tmp_path, onnx=True, plan_built_for=None)
    machine = dataclasses.replace(doctor.probe_machine(), ram_available_bytes=64 * doctor.MIB)
    report = doctor.check_bundle(bundle, machine)
    assert not report.runnable
    assert any(r.startswith("not enough RAM") and "64.0 MiB available" in r for r in report.reasons)


def _gpu(name: str, cc: str) -> doctor.GpuInfo:
    return doctor.GpuInfo(0, name, cc, 24 * doctor.GIB, 20 * doctor.GIB, unified_memory=False, source="nvml")


@pytest.mark.parametrize(
    ("gpu", "trt", "runs"),
    [
        (_gpu("NVIDIA A10G", "8.6"), "10.3.0.26", True),
        (_gpu("nvidia  a10g", "8.6"), "10.3.0.26", True),
        (_gpu("NVIDIA A10G", "8.6"), "10.8.0.43", False),
        (_gpu("Orin", "8.7"), "10.3.0.26", False),
        (_gpu("NVIDIA A10", "8.6"), "10.3.0.26", False),
        (None, "10.3.0.26", False),
        (_gpu("NVIDIA A10G", "8.6"), None, False),
    ],
)
def test_plan_verdict_is_the_runtimes(gpu, trt, runs):
    """The doctor judges a plan exactly as the runtime's TensorRT backend will."""
    from edge.vision.tensorrt import check_engine_compat

    why = doctor.plan_mismatch(A10G, gpu, trt)
    assert (why is None) == runs
    assert why == check_engine_compat(
        A10G, gpu.name if gpu else None, gpu.compute_capability if gpu else None, trt
    )
    if why is not None:
        assert "NVIDIA A10G" in why and "edge export trt" in why


def test_plan_without_built_for_is_refused():
    why = doctor.plan_mismatch(None, _gpu("NVIDIA A10G", "8.6"), "10.3.0.26")
    assert why is not None and "built_for" in why


def test_gguf_header_reader_matches_the_writer(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(path, n_vocab=6000)
    meta = doctor.read_gguf_metadata(path)
    assert meta["general.architecture"] == "qwen3vlmoe"
    assert meta["qwen3vlmoe.block_count"] == GGUF_LAYERS
    assert meta["qwen3vlmoe.attention.head_count_kv"] == GGUF_KV_HEADS
    assert meta["tokenizer.ggml.tokens"] is None  # skipped, not kept in memory


def test_gguf_reader_refuses_other_files(tmp_path):
    path = tmp_path / "not.gguf"
    path.write_bytes(b"ONNX" + bytes(64))
    with pytest.raises(ValueError, match="not a GGUF file"):
        doctor.read_gguf_metadata(path)


def test_kv_cache_of_qwen3_vl_30b_a3b():
    """The figure docs/DEPLOY.md quotes: 48 layers x 4 KV heads x 128 x (K+V) x 4096 x 2 bytes."""
    meta = {
        "general.architecture": "qwen3vlmoe",
        "qwen3vlmoe.block_count": 48,
        "qwen3vlmoe.attention.head_count": 32,
        "qwen3vlmoe.attention.head_count_kv": 4,
        "qwen3vlmoe.attention.key_length": 128,
        "qwen3vlmoe.attention.value_length": 128,
        "qwen3vlmoe.embedding_length": 2048,
    }
    assert doctor.kv_cache_bytes(meta, 4096) == 384 * doctor.MIB


def test_load_measures_the_real_tiny_bundle(tiny_bundle):
    """`--load` goes through the runtime's own loaders: ONNX Runtime encodes a clip, llama.cpp loads
    the GGUF the runtime would pick (q4_k_m) and makes a context."""
    result = run_edge("doctor", "--bundle", str(tiny_bundle), "--load", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)["bundle"]
    assert report["runnable"] is True
    assert report["decoder_choice"].startswith("q4_k_m")
    steps = report["memory"]["measured"]
    assert [s["step"].split(":")[0] for s in steps] == ["baseline", "vision", "decoder"]
    assert "onnxruntime/cpu/fp32" in steps[1]["step"] and "[224, 1024]" in steps[1]["step"]
    assert "context n_ctx 4096" in steps[2]["step"]
    # Loading adds memory, and the peak never falls.
    assert steps[0]["VmRSS"] < steps[2]["VmRSS"]
    assert steps[0]["VmHWM"] <= steps[1]["VmHWM"] <= steps[2]["VmHWM"]


def test_load_failure_is_a_reason(tmp_path):
    """A bundle that passes the static checks but whose files are not real models fails to load:
    the doctor says so and exits non-zero instead of crashing."""
    bundle = make_bundle(tmp_path, onnx=True, plan_built_for=None)
    result = run_edge("doctor", "--bundle", str(bundle), "--load", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    (reason,) = json.loads(result.stdout)["bundle"]["reasons"]
    assert reason.startswith("loading failed:") and "vision_fp32.onnx" in reason


@pytest.mark.skipif(HAS_NVIDIA_DEVICE, reason="judges a plan against a machine without GPU")
@pytest.mark.parametrize(
    ("onnx", "backend", "reason"),
    [
        (True, "tensorrt", "no vision artifact can run here: TensorRT plan vision/vision_fp16.plan"),
        (False, "onnxruntime", "the bundle has no adopted vision artifact for vision.backend=onnxruntime"),
    ],
)
def test_configured_vision_backend_is_respected(tmp_path, onnx, backend, reason):
    """The verdict follows the runtime's selection rule for the configured backend: forcing TensorRT
    on a machine without a GPU cannot run, even though an ONNX model is in the bundle."""
    bundle = make_bundle(tmp_path, onnx=onnx, plan_built_for=A10G)
    result = run_edge("doctor", "--bundle", str(bundle), "--json", "--set", f"vision.backend={backend}")
    assert result.returncode == 1, result.stdout + result.stderr
    (got,) = json.loads(result.stdout)["bundle"]["reasons"]
    assert got.startswith(reason)
