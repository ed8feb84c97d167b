"""Vision tower of Qwen3-VL-MoE -> ONNX fp32 for one fixed camera profile.

Input  `pixel_values`, in one of two layouts:
       - "frames" (what `edge export bundle` writes): the clip's resized frames as uint8 RGB planes
         [frames_per_clip, 3, H, W]. The graph normalises them (Cast, Mul, Add) and cuts the patches
         itself: HF's patch embedding is a Conv3d whose kernel equals its stride (temporal 2 x
         16 x 16), i.e. one matrix per patch; over a frame pair stacked as 6 channels it is exactly a
         Conv2d with a 16 x 16 kernel and stride (weights regrouped once at export), followed by a
         small reorder of the tokens into merge-block order. The host then only resizes; and on
         ONNX Runtime's CPU provider that Conv2d takes ~3 ms where the patch layout's Conv3d
         over 896 one-patch images took ~30 ms (tiny tower, 448x256 x 4).
       - "patches": flattened patches exactly as the HF image/video processor lays them out (frame
         pairs in time order; inside a pair, patches in 2x2 merge-block order) [patches_per_clip,
         3*2*16*16], i.e. what `Qwen3VLMoeVisionModel` consumes; given the bundle's normalisation
         as uint8 levels the graph normalises (Cast, Mul, Add in front), else float32 normalised.
Output `vision_embeds` [tokens_per_clip, n_embd * (1 + k)]: one row per visual token in raster order
       per frame pair, laid out as llama.cpp wants decoder input rows: [merger | deepstack 1 .. k].

Everything that depends only on the grid (interpolated learned position embeddings, rotary cos/sin,
the per-frame-pair attention segments) is computed once here in torch and baked into the graph as
constants, so the graph has static shapes and no data-dependent control flow. Only the vision weights
are read from the checkpoint (streamed), never the 60 GB decoder.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from edge.manifest import CameraProfile, Normalization, vision_input_shape
from edge.preprocess import channel_scale_offset, levels_scale_offset, normalize_levels, patch_layout
from export.checkpoint import CheckpointError, CheckpointReader

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "vision_embeds"
OPSET = 17
# Protobuf refuses messages over 2 GiB; stay well below it before switching to external data.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000


@dataclass
class VisionExport:
    path: Path
    external_data: Path | None
    input_shape: list[int]
    output_shape: list[int]
    n_embd: int
    n_deepstack: int
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    input_dtype: str = "float32"
    input_layout: str = "patches"
    accuracy: dict = field(default_factory=dict)


def _vision_config(reader: CheckpointReader):
    from transformers import Qwen3VLMoeConfig

    return Qwen3VLMoeConfig.from_dict(reader.config).vision_config


def check_profile_against_config(profile: CameraProfile, vision_config: dict) -> None:
    """The profile's patch geometry must be the tower's, else the exported graph means nothing."""
    want = {
        "patch_size": vision_config.get("patch_size", 16),
        "temporal_patch_size": vision_config.get("temporal_patch_size", 2),
        "merge_size": vision_config.get("spatial_merge_size", 2),
    }
    for key, value in want.items():
        if getattr(profile, key) != value:
            raise CheckpointError(f"camera profile {key}={getattr(profile, key)} but the checkpoint's vision tower uses {value}")


def load_vision_tower(reader: CheckpointReader, progress: bool = True):
    """Build Qwen3VLMoeVisionModel (fp32, eval, eager attention) from the checkpoint's vision weights only.

    The module is created on the meta device (no random init, no memory) and the streamed fp32
    tensors are assigned in place, so peak memory is one copy of the vision tower.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from tqdm import tqdm
    from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import (
        Qwen3VLMoeVisionModel,
        Qwen3VLMoeVisionRotaryEmbedding,
    )

    config = _vision_config(reader)
    with torch.device("meta"):
        visual = Qwen3VLMoeVisionModel(config)
    prefix = reader.vision_prefix()
    names = [n for n in reader.tensor_names() if n.startswith(prefix)]
    state = {}
    for name, tensor in tqdm(
        reader.iter_prefix(prefix), total=len(names), desc="vision weights", unit="tensor", disable=not progress
    ):
        state[name[len(prefix):]] = tensor
    missing, unexpected = visual.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise CheckpointError(
            f"{reader.path}: vision weights do not match the config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    # Non-persistent buffers (rotary inverse frequencies) are not in the checkpoint: rebuild on CPU.
    visual.rotary_pos_emb = Qwen3VLMoeVisionRotaryEmbedding(config)
    leftovers = [n for n, t in [*visual.named_parameters(), *visual.named_buffers()] if t.is_meta]
    if leftovers:
        raise CheckpointError(f"vision tower tensors not loaded: {leftovers[:5]}")
    # Eager attention is plain matmul/softmax: exports cleanly and matches sdpa to fp32 rounding.
    visual.config._attn_implementation = "eager"
    return visual.float().eval()


# Long because its two torch modules are defined inside it (importing this module needs no torch).
def build_static_encoder(visual, profile: CameraProfile, frames_normalization: Normalization | None = None):
    """The export wrapper: pixel_values -> [merger | deepstack 1..k] rows for the fixed profile.
    With `frames_normalization`, pixel_values are uint8 RGB frames [T, 3, H, W] (the "frames"
    layout, normalised with it); otherwise the processor's patch rows.
    (The torch.nn.Module class is defined inside so that importing this module needs no torch.)"""
    import torch
    from transformers.vision_utils import (
        get_vision_cu_seqlens,
        get_vision_interpolation_indices_and_weights,
        get_vision_position_ids,
    )

    class _PairPatchEmbed(torch.nn.Module):
        """HF's patch embedding over whole frames: uint8 [T, 3, H, W] -> [tokens, hidden] in the
        processor's row order. HF's Conv3d has kernel == stride (temporal x p x p), one matrix per
        patch; over a frame pair stacked as 6 channels that is a Conv2d with a p x p kernel and
        stride, weights regrouped as [o, slot * 3 + c] = [o, c, slot].

        The normalisation stays a separate Mul and Add rather than folded into the convolution:
        folded, the convolution's input would be 0..255, which symmetric INT8 activations cover
        at half the resolution of [-1, 1] (the calibrated graph's worst held-out cosine fell from
        0.9992 to 0.9962). TensorRT fuses the two into the convolution anyway."""

        def __init__(self, proj3d, profile: CameraProfile, normalization: Normalization):
            super().__init__()
            t, p = profile.temporal_patch_size, profile.patch_size
            self.profile = profile
            self.proj = torch.nn.Conv2d(3 * t, proj3d.out_channels, p, stride=p, bias=True)
            with torch.no_grad():
                self.proj.weight.copy_(proj3d.weight.permute(0, 2, 1, 3, 4).reshape(self.proj.weight.shape))
                self.proj.bias.copy_(proj3d.bias)
            self.proj.requires_grad_(False)
            scale, offset = channel_scale_offset(normalization)
            self.register_buffer("level_scale", torch.from_numpy(scale).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("level_offset", torch.from_numpy(offset).view(1, 3, 1, 1), persistent=False)

        def forward(self, frames):
            prof = self.profile
            m = prof.merge_size
            x = frames.to(torch.float32) * self.level_scale + self.level_offset
            x = x.reshape(prof.frame_pairs, 3 * prof.temporal_patch_size, prof.height, prof.width)
            y = self.proj(x)  # [pairs, hidden, grid_h, grid_w]
            y = y.reshape(prof.frame_pairs, -1, prof.grid_h // m, m, prof.grid_w // m, m)
            # (pair, hidden, h-block, h-in, w-block, w-in) -> rows (pair, h-block, w-block, h-in, w-in)
            return y.permute(0, 2, 4, 3, 5, 1).reshape(prof.patches_per_clip, -1)

    class _StaticVisionEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = visual
            grid = torch.tensor([profile.grid_thw()], dtype=torch.int64)
            with torch.no_grad():
                # The same helpers HF's forward uses, evaluated once for the fixed grid.
                indices, weights = get_vision_interpolation_indices_and_weights(
                    grid,
                    num_grid_per_side=visual.num_grid_per_side,
                    mode=visual.interpolation_mode,
                    align_corners=visual.interpolation_align_corners,
                    spatial_merge_size=visual.config.spatial_merge_size,
                )
                pos_embeds = (visual.pos_embed(indices) * weights[:, :, None]).sum(1)
                position_ids = get_vision_position_ids(grid, visual.spatial_merge_size)
                cos, sin = visual.rotary_pos_emb(pos_embeds, position_ids)
            self.register_buffer("pos_embeds", pos_embeds.float().contiguous(), persistent=False)
            self.register_buffer("rope_cos", cos.float().contiguous(), persistent=False)
            self.register_buffer("rope_sin", sin.float().contiguous(), persistent=False)
            # A plain tensor attribute: the attention's per-segment split reads it with .tolist(),
            # which the tracer records as constants (one segment per frame pair).
            self.cu_seqlens = get_vision_cu_seqlens(grid)
            self.deepstack_slot = {layer: k for k, layer in enumerate(visual.deepstack_visual_indexes)}
            # The frames layout gets its own patch embedding (same weights, named patch_embed too, so
            # calibration's --keep-float patch_embed finds it); the HF tower is left untouched.
            self.patch_embed = None if frames_normalization is None else _PairPatchEmbed(
                visual.patch_embed.proj, profile, frames_normalization)

        def forward(self, pixel_values):
            embed = self.patch_embed if self.patch_embed is not None else self.visual.patch_embed
            hidden = embed(pixel_values) + self.pos_embeds
            deepstack = [None] * len(self.deepstack_slot)
            for layer, block in enumerate(self.visual.blocks):
                hidden = block(hidden, cu_seqlens=self.cu_seqlens, position_embeddings=(self.rope_cos, self.rope_sin))
                if layer in self.deepstack_slot:
                    slot = self.deepstack_slot[layer]
                    deepstack[slot] = self.visual.deepstack_merger_list[slot](hidden)
            merged = self.visual.merger(hidden)
            return torch.cat([merged, *deepstack], dim=-1)

    return _StaticVisionEncoder().eval()


def reference_outputs(visual, pixel_values, profile: CameraProfile) -> list:
    """transformers' own forward on the same input: [merger, deepstack 1..k] as float32 numpy arrays."""
    import torch

    grid = torch.tensor([profile.grid_thw()], dtype=torch.int64)
    with torch.no_grad():
        out = visual(torch.as_tensor(pixel_values, dtype=torch.float32), grid_thw=grid, return_dict=True)
    return [out.pooler_output.float().numpy(), *[f.float().numpy() for f in out.deepstack_features]]


def split_output(rows, n_embd: int) -> list:
    """Split `vision_embeds` columns back into [merger, deepstack 1..k]."""
    width = rows.shape[-1]
    if width % n_embd:
        raise ValueError(f"vision output width {width} is not a multiple of n_embd {n_embd}")
    return [rows[..., i * n_embd:(i + 1) * n_embd] for i in range(width // n_embd)]


def compare_outputs(got: list, want: list) -> dict:
    """Per-output cosine and max-abs-diff (names: merger, deepstack_1..k)."""
    import numpy as np

    report = {}
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        a64 = np.asarray(a, dtype=np.float64).ravel()
        b64 = np.asarray(b, dtype=np.float64).ravel()
        cosine = float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64) + 1e-30))
        name = "merger" if i == 0 else f"deepstack_{i}"
        report[name] = {"cosine": cosine, "max_abs_diff": float(np.max(np.abs(a64 - b64)))}
    return report


def random_pixel_values(profile: CameraProfile, seed: int = 0):
    """Normalised-range pixels ([-1, 1] after mean/std 0.5) in the processor's layout."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(profile.patches_per_clip, profile.patch_dim)).astype(np.float32)


def random_pixel_levels(profile: CameraProfile, seed: int = 0, layout: str = "patches"):
    """uint8 levels in the layout's shape: the processor's patch rows (a graph with
    `add_levels_input`) or RGB frames [T, 3, H, W] (a frames-layout graph)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=vision_input_shape(profile, layout), dtype=np.uint8)


NORMALIZED_NAME = INPUT_NAME + "_normalized"


def levels_prelude(normalization: Normalization, patch_dim: int) -> tuple[list, list]:
    """(nodes, initializers) that turn uint8 levels (`INPUT_NAME`) into the processor's normalised
    float32 values (`NORMALIZED_NAME`): Cast -> Mul(scale) -> Add(offset). Within 1 float32 ulp of
    the processor's rescale-then-normalise (< 2.4e-7 on [-1, 1])."""
    from onnx import TensorProto, helper, numpy_helper

    scale, offset = levels_scale_offset(normalization, patch_dim)
    initializers = [numpy_helper.from_array(scale, "pixel_levels_scale"),
                    numpy_helper.from_array(offset, "pixel_levels_offset")]
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["pixel_levels_f32"], to=TensorProto.FLOAT, name="levels_cast"),
        helper.make_node("Mul", ["pixel_levels_f32", "pixel_levels_scale"], ["pixel_levels_scaled"], name="levels_scale"),
        helper.make_node("Add", ["pixel_levels_scaled", "pixel_levels_offset"], [NORMALIZED_NAME], name="levels_offset"),
    ]
    return nodes, initializers


def add_levels_input(model, normalization: Normalization, patch_dim: int) -> None:
    """Turn the float32 `pixel_values` input of `model` (onnx ModelProto, in place) into uint8
    levels normalised inside the graph by `levels_prelude`, which feeds the old consumers."""
    import onnx
    from onnx import TensorProto

    graph = model.graph
    (inp,) = [i for i in graph.input if i.name == INPUT_NAME]
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"{INPUT_NAME} is not float32: the graph already takes another input type")
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == INPUT_NAME:
                node.input[k] = NORMALIZED_NAME
    nodes, initializers = levels_prelude(normalization, patch_dim)
    graph.initializer.extend(initializers)
    for k, node in enumerate(nodes):  # topological order: the prelude goes first
        graph.node.insert(k, node)
    inp.type.tensor_type.elem_type = TensorProto.UINT8
    onnx.checker.check_model(model)


def _save_onnx(tmp_path: Path, out_path: Path, normalization: Normalization | None = None,
               patch_dim: int = 0) -> Path | None:
    """Re-save the exported graph next to `out_path` (with the uint8 levels input when
    `normalization` is given); one external data file when it is too big."""
    import onnx

    model = onnx.load(str(tmp_path), load_external_data=True)
    if normalization is not None:
        add_levels_input(model, normalization, patch_dim)
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    external = out_path.with_name(out_path.name + ".data")
    external.unlink(missing_ok=True)  # onnx appends to an existing data file
    if weight_bytes > EXTERNAL_DATA_THRESHOLD_BYTES:
        onnx.save_model(
            model,
            str(out_path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=external.name,
            size_threshold=1024,
        )
        return external
    onnx.save_model(model, str(out_path))
    return None


def export_vision_onnx(
    reader: CheckpointReader,
    profile: CameraProfile,
    out_path: Path | str,
    progress: bool = True,
    self_check: bool = True,
    visual=None,
    normalization: Normalization | None = None,
    input_layout: str = "patches",
) -> VisionExport:
    """Export the vision tower for `profile` to `out_path` (ONNX fp32, opset 17, static shapes).

    normalization: when given, the graph's input is uint8 levels and it normalises them with these
    values; otherwise float32 normalised pixel values (patches layout only).
    input_layout: "patches" (the processor's rows) or "frames" (uint8 RGB frames; needs
    `normalization`). See the module docstring.

    self_check: run ONNX Runtime and transformers on the same random pixels and record per-output
    cosine / max-abs-diff in the result's `accuracy` (and fail loudly if the export is not faithful).
    """
    import torch
    from tqdm import tqdm

    if input_layout not in ("patches", "frames"):
        raise ValueError(f"input_layout must be 'patches' or 'frames', got {input_layout!r}")
    frames = input_layout == "frames"
    if frames and normalization is None:
        raise ValueError("the frames layout takes uint8 levels: pass the normalisation")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    check_profile_against_config(profile, reader.vision_config)
    steps = tqdm(total=3 if self_check else 2, desc="vision onnx", unit="step", disable=not progress)
    if visual is None:
        visual = load_vision_tower(reader, progress=progress)
    n_embd = int(visual.config.out_hidden_size)
    n_deepstack = len(visual.deepstack_visual_indexes)
    encoder = build_static_encoder(visual, profile, frames_normalization=normalization if frames else None)
    input_shape = vision_input_shape(profile, input_layout)
    dummy = torch.zeros(*input_shape, dtype=torch.uint8 if frames else torch.float32)

    steps.set_postfix_str("tracing")
    # The frames graph normalises in its own forward; a patches graph gets the levels prelude.
    external = _trace(encoder, dummy, out_path, None if frames else normalization, profile.patch_dim, steps)
    result = VisionExport(
        path=out_path,
        external_data=external,
        input_shape=input_shape,
        output_shape=[profile.tokens_per_clip, n_embd * (1 + n_deepstack)],
        n_embd=n_embd,
        n_deepstack=n_deepstack,
        input_dtype="float32" if normalization is None else "uint8",
        input_layout=input_layout,
    )
    if self_check:
        steps.set_postfix_str("self-check")
        result.accuracy = _self_check(result, visual, profile, normalization)
        steps.update()
    steps.close()
    return result


def _trace(encoder, dummy, out_path: Path, normalization: Normalization | None, patch_dim: int, steps) -> Path | None:
    """Trace `encoder` on `dummy` into `out_path` (with the levels prelude when `normalization` is
    given); returns the external data file, if any. Advances `steps` twice (traced, saved)."""
    import torch

    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp, torch.no_grad(), warnings.catch_warnings():
        # Expected: the per-frame-pair split sizes become constants, which is what a fixed profile wants.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        tmp_path = Path(tmp) / "vision.onnx"
        torch.onnx.export(
            encoder,
            (dummy,),
            str(tmp_path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter handles the per-segment attention split
        )
        steps.update()
        steps.set_postfix_str("saving")
        external = _save_onnx(tmp_path, out_path, normalization, patch_dim)
        steps.update()
    return external


def _self_check(result: VisionExport, visual, profile: CameraProfile, normalization: Normalization | None) -> dict:
    """ONNX Runtime on the exported graph vs transformers on the same random input: per-output
    cosine and max |diff|; raises when the export is not faithful."""
    import numpy as np
    import onnxruntime as ort

    frames = result.input_layout == "frames"
    if normalization is None:
        feed = pixels = random_pixel_values(profile, seed=0)
        what = "random pixels seed 0"
    else:
        feed = random_pixel_levels(profile, seed=0, layout=result.input_layout)
        levels = patch_layout(feed, profile.patch_size, profile.temporal_patch_size,
                              profile.merge_size) if frames else feed
        pixels = normalize_levels(levels, normalization)  # what the processor would give
        what = (f"random uint8 {result.input_layout} seed 0 (the graph normalises"
                + (" and patchifies" if frames else "") + "; the reference gets the processor's values)")
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: feed})
    if list(got.shape) != result.output_shape:
        raise RuntimeError(f"exported vision graph gives {list(got.shape)}, expected {result.output_shape}")
    report = compare_outputs(split_output(got, result.n_embd), reference_outputs(visual, pixels, profile))
    worst = min(r["cosine"] for r in report.values())
    if not np.isfinite(worst) or worst < 0.9999:
        raise RuntimeError(f"vision ONNX export diverges from transformers: {report}")
    return {
        "reference": f"transformers Qwen3VLMoeVisionModel, fp32, {what}",
        "cosine_min": worst,
        "max_abs_diff": max(r["max_abs_diff"] for r in report.values()),
        "outputs": report,
    }
