"""The vision tower of a Qwen3-VL-MoE checkpoint -> an mmproj GGUF in llama.cpp's own form.

llama.cpp runs Qwen3-VL images and video itself (its `mtmd` library, projector type
`qwen3vl_merger`) from a separate "mmproj" file. This writes that file the way upstream's
`convert_hf_to_gguf.py --mmproj` does (the converter vendored by llama-cpp-python 0.3.36,
`conversion/qwen3vl.py`), so the bundle's encoder can be compared with llama.cpp's on one checkpoint:
- blocks by `gguf`'s TensorNameMap for MODEL_ARCH.MMPROJ (`v.blk.N.attn_qkv`, `ffn_up`, `ln1`, ...);
- the Conv3D patch embedding split along time into two Conv2D kernels `v.patch_embd.weight` and
  `v.patch_embd.weight.1` (temporal patch 2), its bias `v.patch_embd.bias`;
- the merger: its LayerNorm (over one patch's hidden size) as `v.post_ln`, `linear_fc1/2` as
  `mm.0` / `mm.2`;
- DeepStack mergers as `v.deepstack.{vision layer}.{norm,fc1,fc2}`, indexed by the vision layer they
  tap (`deepstack_visual_indexes`), not by list position;
- keys `clip.vision.*`, `clip.projector_type`, `clip.vision.is_deepstack_layers`, with the text
  config's rms_norm_eps as the vision LayerNorm epsilon (upstream's choice; both are 1e-6 in
  the Qwen3-VL releases).
Types as upstream decides them: 1-D tensors, the position embedding and (except at f16) the patch
kernels stay F32; other weights take the file type (F32, F16 or Q8_0; Q8_0 falls back to F16 for
rows that are not a multiple of 32).

Streaming: tensor infos come from the safetensors headers, then each tensor is read, converted and
written before the next, so peak memory is one source tensor and its converted copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.commandline import add_command
from export.checkpoint import CheckpointError, CheckpointReader

PROJECTOR_TYPE = "qwen3vl_merger"
MMPROJ_TYPES = ("f32", "f16", "q8_0")
Q8_0_BLOCK = 32


class MmprojExportError(CheckpointError):
    """The vision tower cannot be written as an mmproj GGUF; the message says which tensor/key."""


@dataclass(frozen=True)
class MmprojTensor:
    name: str  # GGUF name
    source: str  # checkpoint name
    shape: tuple[int, ...]  # numpy shape of the float data written
    qtype: str  # "F32" | "F16" | "Q8_0"
    pick: Callable[[np.ndarray], np.ndarray] | None = None  # part of the source tensor, if not all

    @property
    def nbytes(self) -> int:
        n = math.prod(self.shape)
        if self.qtype == "Q8_0":
            return n // Q8_0_BLOCK * 34
        return n * (2 if self.qtype == "F16" else 4)


def _file_type(base: str) -> int:
    import gguf

    return {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
            "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[base]


def _qtype(name: str, shape: tuple[int, ...], base: str) -> str:
    if len(shape) <= 1 or not name.endswith((".weight", ".weight.1")) or name == "v.position_embd.weight":
        return "F32"
    if ".patch_embd.weight" in name:
        return "F16" if base == "f16" else "F32"
    if base == "q8_0":
        return "Q8_0" if shape[-1] % Q8_0_BLOCK == 0 else "F16"
    return base.upper()


def _gguf_name(rest: str, vision: dict, block_map) -> str:
    """Checkpoint name after the vision prefix -> GGUF name (upstream's Qwen3VLVisionModel rules)."""
    if rest.startswith("deepstack_merger_list."):
        _, pos, part, suffix = rest.split(".", 3)
        indexes = vision.get("deepstack_visual_indexes", [])
        if int(pos) >= len(indexes):
            raise MmprojExportError(f"{rest}: no deepstack_visual_indexes entry {pos} in the vision config")
        kind = {"norm": "norm", "linear_fc1": "fc1", "linear_fc2": "fc2"}.get(part)
        if kind is None:
            raise MmprojExportError(f"unexpected DeepStack tensor {rest!r}")
        return f"v.deepstack.{indexes[int(pos)]}.{kind}.{suffix}"
    if rest.startswith("merger."):
        part, suffix = rest[len("merger."):].split(".", 1)
        named = {"norm": "v.post_ln", "linear_fc1": "mm.0", "linear_fc2": "mm.2"}.get(part)
        if named is None:
            raise MmprojExportError(f"unexpected merger tensor {rest!r}")
        return f"{named}.{suffix}"
    mapped = block_map.get_name("visual." + rest, try_suffixes=(".weight", ".bias"))
    if mapped is None:
        raise MmprojExportError(f"llama.cpp's mmproj tensor map has no name for vision tensor {rest!r}")
    return mapped


def plan_mmproj_tensors(reader: CheckpointReader, base: str = "f16") -> list[MmprojTensor]:
    """Every tensor of the mmproj file, in upstream's order of appearance, from the headers only."""
    import gguf

    if base not in MMPROJ_TYPES:
        raise MmprojExportError(f"mmproj type must be one of {', '.join(MMPROJ_TYPES)}, got {base!r}")
    vision = reader.vision_config
    block_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, int(vision["depth"]))
    prefix = reader.vision_prefix()
    plan: list[MmprojTensor] = []
    for source in sorted(n for n in reader.tensor_names() if n.startswith(prefix)):
        rest, shape = source[len(prefix):], tuple(reader.shape(source))
        if rest == "patch_embed.proj.weight":
            if len(shape) != 5 or shape[2] != 2:
                raise MmprojExportError(f"{source}: llama.cpp takes a Conv3D kernel with temporal size 2, got {shape}")
            kernel = (shape[0], shape[1], shape[3], shape[4])
            for t, name in enumerate(("v.patch_embd.weight", "v.patch_embd.weight.1")):
                plan.append(MmprojTensor(name, source, kernel, _qtype(name, kernel, base),
                                         pick=lambda a, t=t: a[:, :, t]))
            continue
        name = _gguf_name(rest, vision, block_map)
        plan.append(MmprojTensor(name, source, shape, _qtype(name, shape, base)))
    return plan


def _encode(array: np.ndarray, qtype: str, name: str) -> np.ndarray:
    if qtype == "F32":
        return np.ascontiguousarray(array, dtype=np.float32)
    if qtype == "F16":
        out = np.ascontiguousarray(array, dtype=np.float16)
        if not np.isfinite(out).all():
            raise MmprojExportError(f"{name}: values overflow float16 (or are NaN); write the mmproj as f32")
        return out
    import gguf

    return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)


def _add_keys(writer, reader: CheckpointReader, base: str) -> None:
    import gguf

    vision = reader.vision_config
    pre = reader.read_json("preprocessor_config.json") or {}
    for key in ("image_mean", "image_std"):
        if key not in pre:
            raise MmprojExportError(f"{reader.path}/preprocessor_config.json has no {key!r} (llama.cpp needs it)")
    depth = int(vision["depth"])
    deepstack = [False] * depth
    for idx in vision.get("deepstack_visual_indexes", []):
        deepstack[int(idx)] = True
    writer.add_type(gguf.GGUFType.MMPROJ)
    writer.add_name(reader.name)
    writer.add_file_type(_file_type(base))
    writer.add_clip_has_vision_encoder(True)
    writer.add_vision_projection_dim(int(reader.text_config["hidden_size"]))
    patch = int(vision.get("patch_size", 16))
    writer.add_vision_image_size(int(vision.get("num_position_embeddings", 2304) ** 0.5 * patch))
    writer.add_vision_patch_size(patch)
    writer.add_vision_embedding_length(int(vision["hidden_size"]))
    writer.add_vision_feed_forward_length(int(vision["intermediate_size"]))
    writer.add_vision_block_count(depth)
    writer.add_vision_head_count(int(vision["num_heads"]))
    writer.add_vision_image_mean(list(pre["image_mean"]))
    writer.add_vision_image_std(list(pre["image_std"]))
    writer.add_clip_projector_type(PROJECTOR_TYPE)
    writer.add_vision_use_gelu(True)
    if vision.get("spatial_merge_size") is not None:
        writer.add_vision_spatial_merge_size(int(vision["spatial_merge_size"]))
    writer.add_vision_attention_layernorm_eps(float(reader.text_config.get("rms_norm_eps", 1e-6)))
    if any(deepstack):
        writer.add_vision_is_deepstack_layers(deepstack)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def write_mmproj_gguf(reader: CheckpointReader, out_path: Path | str, base: str = "f16") -> Path:
    """Write the mmproj GGUF (atomically: a `.partial` file renamed at the end)."""
    import gguf

    plan = plan_mmproj_tensors(reader, base)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    writer = gguf.GGUFWriter(tmp, "clip")
    try:
        _add_keys(writer, reader, base)
        for t in plan:
            dtype = {"F32": np.float32, "F16": np.float16, "Q8_0": np.uint8}[t.qtype]
            shape = t.shape if t.qtype != "Q8_0" else (*t.shape[:-1], t.shape[-1] // Q8_0_BLOCK * 34)
            raw = gguf.GGMLQuantizationType.Q8_0 if t.qtype == "Q8_0" else None
            writer.add_tensor_info(t.name, shape, np.dtype(dtype), t.nbytes, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        cache: tuple[str, np.ndarray] | None = None
        for t in plan:
            if cache is None or cache[0] != t.source:  # the two patch kernels share one source
                cache = (t.source, reader.get(t.source).numpy())
            data = cache[1] if t.pick is None else t.pick(cache[1])
            writer.write_tensor_data(_encode(data, t.qtype, t.name))
        writer.close()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out_path)
    return out_path


def _cmd_mmproj(args) -> int:
    import time

    from export.cli import peak_rss_bytes

    start = time.perf_counter()
    # a CheckpointError is printed by the edge command (exit 2)
    path = write_mmproj_gguf(CheckpointReader(args.checkpoint), args.out, base=args.type)
    print(f"mmproj ({args.type}, projector {PROJECTOR_TYPE}) written to {path} "
          f"({path.stat().st_size / 2**20:.1f} MiB, {time.perf_counter() - start:.1f} s, "
          f"peak RSS {peak_rss_bytes() / 2**30:.2f} GiB)")
    return 0


def register_mmproj(commands) -> None:
    """`edge export mmproj`: the vision tower as llama.cpp's mmproj GGUF (for llama.cpp's own vision path)."""
    parser = add_command(commands, "mmproj", _cmd_mmproj,
                         help="write the vision tower as an mmproj GGUF in llama.cpp's form "
                              "(for `edge bench encoder-vs-llama-cpp`, or llama.cpp's own tools)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="HF checkpoint folder (Qwen3-VL-MoE)")
    parser.add_argument("--out", type=Path, required=True, help="GGUF file to write")
    parser.add_argument("--type", choices=MMPROJ_TYPES, default="f16",
                        help="weight type, as upstream's --outtype (default %(default)s)")
