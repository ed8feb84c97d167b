"""Vision tower ONNX export vs transformers' own vision tower on the same pixels."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

import export.vision_onnx as vision_onnx  # noqa: E402
from edge.manifest import CameraProfile  # noqa: E402
from export.checkpoint import CheckpointError, CheckpointReader  # noqa: E402

N_EMBD, N_DEEPSTACK = 256, 3


@pytest.fixture(scope="module")
def hf_visual(tiny_checkpoint):
    """transformers' vision tower loaded the ordinary way (from_pretrained of the whole model)."""
    model = transformers.Qwen3VLMoeForConditionalGeneration.from_pretrained(tiny_checkpoint, dtype=torch.float32)
    return model.model.visual.eval()


@pytest.fixture(scope="module")
def reader(tiny_checkpoint):
    return CheckpointReader(tiny_checkpoint)


def _run_onnx(path, pixels):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixel_values"]
    assert [o.name for o in session.get_outputs()] == ["vision_embeds"]
    (rows,) = session.run(["vision_embeds"], {"pixel_values": pixels})
    return rows


def _hf_outputs(visual, pixels, grid_thw):
    with torch.no_grad():
        out = visual(torch.from_numpy(pixels), grid_thw=torch.tensor([grid_thw]), return_dict=True)
    return [out.pooler_output.numpy(), *[f.numpy() for f in out.deepstack_features]]


def _image_pixels(profile):
    """An image through the HF image processor (torchvision-free class): the runtime's input layout."""
    processor_cls = getattr(transformers, "Qwen2VLImageProcessorPil", None)
    if processor_cls is None:
        pytest.skip("transformers has no Qwen2VLImageProcessorPil")
    from PIL import Image

    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 256, size=(profile.height, profile.width, 3), dtype=np.uint8))
    processor = processor_cls(patch_size=16, temporal_patch_size=2, merge_size=2,
                              image_mean=[0.5] * 3, image_std=[0.5] * 3)
    out = processor(images=[image], return_tensors="np")
    assert out["image_grid_thw"].tolist() == [profile.grid_thw()]
    return np.asarray(out["pixel_values"], dtype=np.float32)


@pytest.mark.parametrize("frames", [2, 4], ids=["image_1_pair", "clip_2_pairs"])
def test_onnx_matches_transformers_for_every_output(hf_visual, reader, tmp_path, frames):
    profile = CameraProfile(width=448, height=256, frames_per_clip=frames)
    result = vision_onnx.export_vision_onnx(reader, profile, tmp_path / "vision.onnx", progress=False, self_check=False)
    assert result.external_data is None
    assert result.input_shape == [profile.patches_per_clip, 1536]
    assert result.output_shape == [profile.tokens_per_clip, N_EMBD * (1 + N_DEEPSTACK)]
    assert profile.tokens_per_clip == 112 * (frames // 2)

    pixels = _image_pixels(profile) if frames == 2 else vision_onnx.random_pixel_values(profile, seed=frames)
    rows = _run_onnx(result.path, pixels)
    assert list(rows.shape) == result.output_shape
    report = vision_onnx.compare_outputs(vision_onnx.split_output(rows, N_EMBD),
                                         _hf_outputs(hf_visual, pixels, profile.grid_thw()))
    assert list(report) == ["merger", "deepstack_1", "deepstack_2", "deepstack_3"]
    for name, figures in report.items():
        assert figures["cosine"] >= 0.9999, (name, figures)
        assert figures["max_abs_diff"] < 1e-3, (name, figures)


def test_clip_rows_are_frame_pairs_in_time_order(hf_visual, reader, tmp_path):
    """Attention is per frame pair: the 2-pair clip equals two 1-pair runs stacked (raster order each)."""
    clip = CameraProfile(width=448, height=256, frames_per_clip=4)
    pair = CameraProfile(width=448, height=256, frames_per_clip=2)
    clip_path = vision_onnx.export_vision_onnx(reader, clip, tmp_path / "clip.onnx", progress=False,
                                               self_check=False).path
    pair_path = vision_onnx.export_vision_onnx(reader, pair, tmp_path / "pair.onnx", progress=False,
                                               self_check=False).path
    pixels = vision_onnx.random_pixel_values(clip, seed=11)
    clip_rows = _run_onnx(clip_path, pixels)
    half = pair.patches_per_clip
    pair_rows = np.concatenate([_run_onnx(pair_path, pixels[:half]), _run_onnx(pair_path, pixels[half:])])
    np.testing.assert_allclose(clip_rows, pair_rows, rtol=1e-4, atol=1e-5)
    assert not np.allclose(clip_rows[: pair.tokens_per_clip], clip_rows[pair.tokens_per_clip:], atol=1e-3)


@pytest.mark.parametrize("norm", [(0.5, 0.5), ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))],
                         ids=["qwen3vl", "clip"])
def test_levels_arithmetic_is_the_processors_within_an_ulp(norm):
    """The graph's level * scale + offset (float32, as ONNX computes it) against the processor's
    rescale-then-normalise for every level and channel: within 1e-6 (observed: < 2.4e-7)."""
    from edge.manifest import Normalization
    from edge.preprocess import levels_scale_offset, normalization_lut

    mean, std = norm
    normalization = Normalization(mean=mean if isinstance(mean, tuple) else (mean,) * 3,
                                  std=std if isinstance(std, tuple) else (std,) * 3)
    scale, offset = levels_scale_offset(normalization, 1536)
    levels = np.arange(256, dtype=np.float32)
    lut = normalization_lut(normalization)
    for channel in range(3):
        col = channel * 512
        got = levels * scale[col] + offset[col]  # float32 throughout
        assert np.abs(got - lut[channel]).max() < 1e-6
        assert scale[col + 511] == scale[col] and (channel == 2 or scale[col + 512] == scale[(channel + 1) * 512])


def test_levels_input_graph_matches_transformers_on_the_processors_values(hf_visual, reader, tmp_path):
    """With the bundle's normalisation the graph takes uint8 levels and normalises them itself:
    its rows match transformers fed the processor's float values of the same levels."""
    from edge.manifest import Normalization
    from edge.preprocess import normalize_levels

    norm = Normalization(mean=(0.5,) * 3, std=(0.5,) * 3)
    profile = CameraProfile(width=448, height=256, frames_per_clip=4)
    result = vision_onnx.export_vision_onnx(reader, profile, tmp_path / "v.onnx", progress=False, self_check=True,
                                            normalization=norm)
    assert result.input_dtype == "uint8"
    assert result.accuracy["cosine_min"] >= 0.9999
    levels = vision_onnx.random_pixel_levels(profile, seed=5)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    with pytest.raises(Exception, match="(?i)type"):  # float input is refused, not misread
        session.run(["vision_embeds"], {"pixel_values": levels.astype(np.float32)})
    (rows,) = session.run(["vision_embeds"], {"pixel_values": levels})
    want = _hf_outputs(hf_visual, normalize_levels(levels, norm), profile.grid_thw())
    for name, figures in vision_onnx.compare_outputs(vision_onnx.split_output(rows, N_EMBD), want).items():
        assert figures["cosine"] >= 0.9999, (name, figures)
        assert figures["max_abs_diff"] < 1e-3, (name, figures)


@pytest.mark.parametrize("norm", [((0.5,) * 3, (0.5,) * 3),
                                  ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))],
                         ids=["qwen3vl", "clip"])
@pytest.mark.parametrize("frames", [2, 4], ids=["1_pair", "2_pairs"])
def test_frames_input_graph_matches_transformers_on_the_processors_patches(hf_visual, reader, tmp_path, norm, frames):
    """The frames layout: uint8 RGB frames in, the graph normalises (per channel) and cuts the
    patches itself (a Conv2d over each frame pair). Its rows match transformers fed the
    processor's float patches of the same frames, and it refuses float or patch-shaped input."""
    from edge.manifest import Normalization
    from edge.preprocess import normalize_levels, patch_layout

    normalization = Normalization(mean=norm[0], std=norm[1])
    profile = CameraProfile(width=448, height=256, frames_per_clip=frames)
    result = vision_onnx.export_vision_onnx(reader, profile, tmp_path / "v.onnx", progress=False, self_check=True,
                                            normalization=normalization, input_layout="frames")
    assert (result.input_dtype, result.input_layout) == ("uint8", "frames")
    assert result.input_shape == [frames, 3, 256, 448]
    assert result.accuracy["cosine_min"] >= 0.9999
    clip = vision_onnx.random_pixel_levels(profile, seed=5, layout="frames")
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)" and session.get_inputs()[0].shape == [frames, 3, 256, 448]
    for wrong in (clip.astype(np.float32), patch_layout(clip, 16, 2, 2)):
        with pytest.raises(Exception, match="(?i)type|rank"):  # refused, not misread
            session.run(["vision_embeds"], {"pixel_values": wrong})
    (rows,) = session.run(["vision_embeds"], {"pixel_values": clip})
    pixels = normalize_levels(patch_layout(clip, 16, 2, 2), normalization)
    want = _hf_outputs(hf_visual, pixels, profile.grid_thw())
    for name, figures in vision_onnx.compare_outputs(vision_onnx.split_output(rows, N_EMBD), want).items():
        assert figures["cosine"] >= 0.9999, (name, figures)
        assert figures["max_abs_diff"] < 1e-3, (name, figures)


def test_frames_layout_needs_the_normalisation(reader, tmp_path):
    profile = CameraProfile(width=448, height=256, frames_per_clip=2)
    with pytest.raises(ValueError, match="normalisation"):
        vision_onnx.export_vision_onnx(reader, profile, tmp_path / "v.onnx", progress=False, input_layout="frames")
    with pytest.raises(ValueError, match="input_layout"):
        vision_onnx.export_vision_onnx(reader, profile, tmp_path / "v.onnx", progress=False, input_layout="nchw")


def test_self_check_and_external_data(reader, tmp_path, monkeypatch):
    """Over the size threshold the weights go to ONE external data file that ONNX Runtime loads."""
    monkeypatch.setattr(vision_onnx, "EXTERNAL_DATA_THRESHOLD_BYTES", 0)
    profile = CameraProfile(width=64, height=32, frames_per_clip=2)
    result = vision_onnx.export_vision_onnx(reader, profile, tmp_path / "v.onnx", progress=False, self_check=True)
    assert result.external_data == tmp_path / "v.onnx.data"
    assert result.external_data.stat().st_size > result.path.stat().st_size
    assert result.accuracy["cosine_min"] >= 0.9999
    assert set(result.accuracy["outputs"]) == {"merger", "deepstack_1", "deepstack_2", "deepstack_3"}
    rows = _run_onnx(result.path, vision_onnx.random_pixel_values(profile))
    assert rows.shape == (2, 1024)


def test_profile_must_match_the_tower_geometry(reader, tmp_path):
    profile = CameraProfile(width=448, height=224, frames_per_clip=2, patch_size=14)
    with pytest.raises(CheckpointError, match="patch_size=14"):
        vision_onnx.export_vision_onnx(reader, profile, tmp_path / "v.onnx", progress=False)
    assert not (tmp_path / "v.onnx").exists()
