"""`edge export bundle`: validation before work, a loadable bundle, hashes that catch tampering."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from edge.manifest import BundleError, load_bundle
from export.bundle import build_bundle
from export.checkpoint import CheckpointError
from export.cli import main as export_main

# The decoder half is helper X2's export.gguf_decoder; until it exists the bundle is built vision-only.
HAS_DECODER = importlib.util.find_spec("export.gguf_decoder") is not None


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "b"
    manifest = build_bundle(tiny_checkpoint, out, width=448, height=256, frames=4, quants=["q4_k_m"],
                            progress=False, include_decoder=HAS_DECODER)
    return out, manifest


def test_bundle_is_written_and_loads(bundle, tiny_checkpoint):
    out, written = bundle
    manifest, folder = load_bundle(out)
    assert folder == out
    assert manifest.model_dump() == written.model_dump()
    profile = manifest.profile
    assert (profile.width, profile.height, profile.frames_per_clip, profile.tokens_per_clip) == (448, 256, 4, 224)
    assert manifest.normalization.mean == (0.5, 0.5, 0.5) and manifest.normalization.std == (0.5, 0.5, 0.5)
    tokenizer = json.loads((tiny_checkpoint / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    assert manifest.special_tokens.image_pad == ids["<|image_pad|>"]
    assert manifest.special_tokens.im_end == ids["<|im_end|>"]
    assert manifest.special_tokens.video_pad == ids["<|video_pad|>"]
    (vision,) = manifest.vision
    assert (vision.format, vision.precision, vision.input_name, vision.output_name) == ("onnx", "fp32", "pixel_values", "vision_embeds")
    # The graph takes the clip's frames as uint8 RGB planes; it normalises and patchifies them itself.
    assert (vision.input_dtype, vision.input_layout, vision.pixel_format) == ("uint8", "frames", "frames")
    assert vision.input_shape == [4, 3, 256, 448] and vision.output_shape == [224, 1024]
    assert manifest.schema_version == 2
    assert vision.accuracy["cosine_min"] >= 0.9999
    assert "<|vision_start|><|video_pad|><|vision_end|>" in manifest.prompt["chat_template"]
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert sorted(manifest.files) == on_disk  # every file is hashed
    assert manifest.source["config_sha256"] and manifest.source["checkpoint_bytes"] > 0
    if HAS_DECODER:
        (decoder,) = manifest.decoder
        assert decoder.quant == "q4_k_m" and decoder.n_embd_inp == vision.output_shape[1]
    assert len(manifest.bundle_sha256()) == 64


def test_tampered_or_missing_file_is_refused(bundle, tmp_path):
    out = shutil.copytree(bundle[0], tmp_path / "copy")
    onnx_path = out / "vision" / "vision_fp32.onnx"
    data = bytearray(onnx_path.read_bytes())
    data[-10] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"sha256 of 'vision/vision_fp32.onnx'"):
        load_bundle(out)
    load_bundle(out, verify_hashes=False)  # the explicit opt-out still checks presence and shapes
    onnx_path.unlink()
    with pytest.raises(BundleError, match="'vision/vision_fp32.onnx' listed in the manifest is missing"):
        load_bundle(out, verify_hashes=False)


def test_manifest_shape_disagreeing_with_profile_is_refused(bundle, tmp_path):
    out = shutil.copytree(bundle[0], tmp_path / "copy")
    raw = json.loads((out / "manifest.json").read_text())
    raw["profile"]["width"] = 640
    (out / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="input_shape"):
        load_bundle(out)
    raw["schema_version"] = 99
    (out / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="schema_version 99"):
        load_bundle(out)
    # Whole frames are levels: a float32 frames graph is a contradiction, refused at load.
    raw["schema_version"], raw["profile"]["width"] = 2, 448
    raw["vision"][0]["input_dtype"] = "float32"
    (out / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="input_layout 'frames' takes uint8"):
        load_bundle(out)


@pytest.mark.parametrize(
    ("width", "height", "frames", "quants", "message"),
    [
        (450, 256, 4, ["q4_k_m"], "width=450 must be a positive multiple of 32"),
        (448, 250, 4, ["q4_k_m"], "height=250 must be a positive multiple of 32"),
        (448, 256, 3, ["q4_k_m"], "frames_per_clip=3"),
        (448, 256, 0, ["q4_k_m"], "frames_per_clip=0"),
        (448, 256, 4, ["q3_k"], "unknown quant"),
    ],
)
def test_bad_request_is_refused_before_any_work(tiny_checkpoint, tmp_path, width, height, frames, quants, message):
    out = tmp_path / "never"
    with pytest.raises(BundleError, match=message):
        build_bundle(tiny_checkpoint, out, width=width, height=height, frames=frames, quants=quants, progress=False)
    assert not out.exists()


def test_unknown_vision_input_is_refused_before_any_work(tiny_checkpoint, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(BundleError, match="vision_input must be 'frames' or 'patches', got 'nchw'"):
        build_bundle(tiny_checkpoint, out, 448, 256, 4, progress=False, vision_input="nchw")
    assert not out.exists()


def test_bad_checkpoint_is_refused_before_any_work(tiny_checkpoint, tmp_path):
    wrong = shutil.copytree(tiny_checkpoint, tmp_path / "wrong")
    config = json.loads((wrong / "config.json").read_text())
    config["architectures"] = ["Qwen3VLForConditionalGeneration"]
    config["model_type"] = "qwen3_vl"
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unsupported architecture"):
        build_bundle(wrong, tmp_path / "out", 448, 256, 4, progress=False)
    assert not (tmp_path / "out").exists()
    (wrong / "model.safetensors").unlink()
    config["architectures"] = ["Qwen3VLMoeForConditionalGeneration"]
    config["model_type"] = "qwen3_vl_moe"
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="no weights found"):
        build_bundle(wrong, tmp_path / "out", 448, 256, 4, progress=False)
    assert not (tmp_path / "out").exists()


def test_non_empty_output_is_not_overwritten(bundle, tiny_checkpoint, tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="not empty"):
        build_bundle(tiny_checkpoint, occupied, 448, 256, 4, progress=False, overwrite=True)
    assert (occupied / "notes.txt").read_text() == "mine"


def test_cli_reports_a_bad_profile_with_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    code = export_main(["export", "bundle", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "b"),
                        "--width", "448", "--height", "250", "--frames", "4"])
    assert code == 2
    assert "height=250 must be a positive multiple of 32" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_failure_during_export_leaves_no_half_bundle(tiny_checkpoint, tmp_path):
    """A decoder weight beyond float16's range passes every header check and fails only while the
    f16 GGUF is written, after the vision graph: nothing is left of the half-made bundle."""
    from safetensors.torch import load_file, save_file

    broken = shutil.copytree(tiny_checkpoint, tmp_path / "overflow")
    state = load_file(broken / "model.safetensors")
    state["model.language_model.layers.1.self_attn.o_proj.weight"][0, 0] = 1e6
    save_file(state, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"layers.1.self_attn.o_proj.weight: values overflow float16"):
        build_bundle(broken, tmp_path / "out", 448, 256, 4, quants=["f16"], progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not HAS_DECODER, reason="needs the decoder export")
@pytest.mark.parametrize("old_input", ["float32", "uint8"])
def test_patch_input_bundle_from_an_older_exporter_still_runs(bundle, tiny_checkpoint, tmp_path, old_input):
    """Bundles exported before the vision graph took whole frames (manifest schema 1, a graph
    taking the processor's patch rows: float32 normalised values, written without `input_dtype`,
    or uint8 levels, written without `input_layout`) load and run: the runtime preprocesses for
    the graph its manifest names, and every graph gives the same rows for the same frames."""
    import numpy as np

    from edge.config import load_config
    from edge.manifest import CameraProfile, add_file, write_manifest
    from edge.runtime import load_model_parts
    from export.checkpoint import CheckpointReader
    from export.vision_onnx import export_vision_onnx

    out = shutil.copytree(bundle[0], tmp_path / "old")
    manifest, _ = load_bundle(out)
    profile = CameraProfile(**manifest.profile.model_dump())
    old = export_vision_onnx(CheckpointReader(tiny_checkpoint), profile, out / manifest.vision[0].path,
                             progress=False, self_check=False,
                             normalization=manifest.normalization if old_input == "uint8" else None)
    manifest.vision[0].input_shape = old.input_shape
    add_file(manifest, out, manifest.vision[0].path)
    write_manifest(out, manifest)
    raw = json.loads((out / "manifest.json").read_text())
    raw["schema_version"] = 1  # what the older exporters wrote
    del raw["vision"][0]["input_layout"]
    if old_input == "float32":
        del raw["vision"][0]["input_dtype"]
    (out / "manifest.json").write_text(json.dumps(raw))

    frames = [np.random.default_rng(i).integers(0, 256, size=(540, 960, 3), dtype=np.uint8) for i in range(4)]
    rows = {}
    for name, folder in (("frames", bundle[0]), (old_input, out)):
        config = load_config(None, [f"bundle={str(folder)!r}", "vision.backend='onnxruntime'",
                                    "vision.precision='fp32'", "decoder.threads=1"])
        parts = load_model_parts(config)
        try:
            assert parts.vision.artifact.pixel_format == parts.preprocessor.pixel_format == name
            pixels = parts.preprocessor.preprocess_clip(frames)
            assert (pixels.dtype, pixels.shape) == (np.dtype(parts.vision.artifact.input_dtype),
                                                    tuple(parts.vision.artifact.input_shape))
            rows[name] = parts.vision.encode(pixels)
        finally:
            parts.close()
    a, b = rows["frames"].ravel().astype(np.float64), rows[old_input].ravel().astype(np.float64)
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.99999
