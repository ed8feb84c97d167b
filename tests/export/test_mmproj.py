"""The vision tower as llama.cpp's mmproj GGUF: upstream's form, loaded and run by llama.cpp itself.

tests/export/data/upstream_qwen3vl_mmproj_tiny_{f16,q8_0}.json summarise what `convert_hf_to_gguf.py
--mmproj` of the llama.cpp that llama-cpp-python 0.3.36 vendors writes for the tiny checkpoint
(scripts/upstream_gguf_summary.py --mmproj remakes them). llama.cpp's own encoder (libmtmd, through
llama-cpp-python's bindings) then encodes the same frames as the bundle's ONNX graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gguf")

from edge.manifest import load_bundle
from edge.vision.base import VisionBackendError
from edge.vision.llama_cpp_mtmd import MtmdEncoder, mmproj_row_width
from export.checkpoint import CheckpointReader
from export.gguf_compare import diff_summaries, summarize_gguf
from export.mmproj import MmprojExportError, plan_mmproj_tensors, write_mmproj_gguf
from export.verify import OnnxEncoder, synthetic_frames

DATA = Path(__file__).parent / "data"
# llama.cpp vs the bundle's ONNX graph on the tiny tower, measured (448x256, 4 frames, synthetic
# road-like frames): f32 0.99999991, f16 0.99999984, q8_0 0.99993. The f32 gap is ggml's own kernels
# (tanh-GELU from a table, another summation order); the thresholds keep one decade of margin below
# each figure. The two frames of each pair swapped (each temporal kernel on the other's frame) give 0.915.
MIN_COSINE = {"f32": 0.99999, "f16": 0.9999, "q8_0": 0.999}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)))


@pytest.fixture(scope="module")
def mmprojs(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("mmproj")
    reader = CheckpointReader(tiny_checkpoint)
    return {kind: write_mmproj_gguf(reader, out / f"mmproj-{kind}.gguf", base=kind) for kind in MIN_COSINE}


@pytest.fixture(scope="module")
def clip_and_rows(tiny_bundle):
    """Four frames (two pairs) as uint8 RGB and the bundle's fp32 ONNX rows for them."""
    manifest, bundle_dir = load_bundle(tiny_bundle)
    p = manifest.profile
    frames = np.round(synthetic_frames(p.frames_per_clip, p.height, p.width) * 255).astype(np.uint8)
    rows = OnnxEncoder(bundle_dir, manifest, threads=2).encode(frames, p.frame_pairs)
    return frames, rows, manifest, bundle_dir


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_mmproj_equals_llama_cpp_converter_output(mmprojs, kind):
    """Same tensors (names, shapes, types, data hashes) and the same clip.* keys as upstream's file."""
    upstream = json.loads((DATA / f"upstream_qwen3vl_mmproj_tiny_{kind}.json").read_text())
    differences = diff_summaries(summarize_gguf(mmprojs[kind]), upstream)
    assert differences == [], "\n".join(differences)
    assert upstream["metadata"]["clip.projector_type"] == "qwen3vl_merger"
    assert upstream["metadata"]["clip.vision.is_deepstack_layers"] == [False, True, True, True]


def test_deepstack_mergers_are_named_by_the_vision_layer_they_tap(tiny_checkpoint):
    reader = CheckpointReader(tiny_checkpoint)
    indexes = reader.vision_config["deepstack_visual_indexes"]
    names = {t.name for t in plan_mmproj_tensors(reader, "f32")}
    for layer in indexes:
        assert {f"v.deepstack.{layer}.{part}.weight" for part in ("norm", "fc1", "fc2")} <= names
    assert {"v.patch_embd.weight", "v.patch_embd.weight.1", "mm.0.weight", "mm.2.weight", "v.post_ln.weight"} <= names


@pytest.mark.parametrize("kind", list(MIN_COSINE))
def test_llama_cpp_encodes_the_frames_as_the_bundle_does(mmprojs, clip_and_rows, kind):
    """llama.cpp loads the file (mtmd, CPU) and its rows for the two frame pairs match the bundle's
    ONNX graph slice by slice: merger output and each DeepStack level."""
    frames, rows, manifest, bundle_dir = clip_and_rows
    decoder = manifest.decoder[0]
    encoder = MtmdEncoder(mmprojs[kind], bundle_dir / decoder.path, threads=2, expected_width=decoder.n_embd_inp)
    try:
        got = encoder.encode(frames)
    finally:
        encoder.close()
    assert got.shape == rows.shape == (manifest.profile.tokens_per_clip, decoder.n_embd_inp)
    for k in range(1 + decoder.n_deepstack):
        cols = slice(k * decoder.n_embd, (k + 1) * decoder.n_embd)
        assert _cosine(got[:, cols], rows[:, cols]) >= MIN_COSINE[kind], f"slice {k}"


def test_a_swapped_frame_pair_is_seen(mmprojs, clip_and_rows):
    """The comparison is sensitive: frames given in another order (the two frames of each pair
    swapped, so the two temporal kernels see each other's frame) no longer match."""
    frames, rows, manifest, bundle_dir = clip_and_rows
    decoder = manifest.decoder[0]
    encoder = MtmdEncoder(mmprojs["f32"], bundle_dir / decoder.path, threads=2, expected_width=decoder.n_embd_inp)
    try:
        got = encoder.encode(frames[[1, 0, 3, 2]])
    finally:
        encoder.close()
    assert _cosine(got, rows) < MIN_COSINE["f32"]


def test_a_projector_of_another_width_is_refused(mmprojs, clip_and_rows):
    _, _, manifest, bundle_dir = clip_and_rows
    decoder = manifest.decoder[0]
    assert mmproj_row_width(mmprojs["f16"]) == decoder.n_embd_inp
    with pytest.raises(VisionBackendError, match="not the same model"):
        MtmdEncoder(mmprojs["f16"], bundle_dir / decoder.path, expected_width=decoder.n_embd_inp * 2)
    with pytest.raises(VisionBackendError, match="not an mmproj"):
        MtmdEncoder(bundle_dir / decoder.path, bundle_dir / decoder.path)


def test_unknown_type_is_refused(tiny_checkpoint, tmp_path):
    with pytest.raises(MmprojExportError, match="q4_k"):
        write_mmproj_gguf(CheckpointReader(tiny_checkpoint), tmp_path / "m.gguf", base="q4_k")
    assert not list(tmp_path.iterdir())
