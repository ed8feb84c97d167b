"""Check a whole checkpoint against its config before an export writes anything.

An export that fails half-way costs minutes to hours on the real model and may leave files behind;
a checkpoint with a wrong tensor is better refused up front, naming the tensor. Everything here
reads only config.json and the safetensors headers (shapes and dtypes), never the weights:
- the config describes Qwen3-VL-MoE and the decoder hyperparameters llama.cpp supports;
- every vision tensor the config implies is present at its shape (the tower is built on the meta
  device, so its parameter table is transformers' own), and nothing unexpected is;
- every text tensor is present at its shape (export.gguf_decoder's plan checks each one);
- every tensor the export reads is stored in a floating dtype it converts.
"""

from __future__ import annotations

import os

from export.checkpoint import CheckpointError, CheckpointReader

# Stored dtypes the exporters convert (to fp32 for the vision graph, to f16/f32 for the GGUF).
HANDLED_DTYPES = ("F32", "F16", "BF16", "F64")


def _check_dtype(reader: CheckpointReader, name: str) -> None:
    tag = reader.dtype(name)
    if tag not in HANDLED_DTYPES:
        raise CheckpointError(
            f"{reader.path}: tensor {name!r} is stored as {tag}; the exporter handles {', '.join(HANDLED_DTYPES)} "
            f"(dequantise the checkpoint first)"
        )


def expected_vision_shapes(reader: CheckpointReader) -> dict[str, tuple[int, ...]]:
    """Name (without the checkpoint's vision prefix) -> shape of every vision tower weight the config implies."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import Qwen3VLMoeVisionModel

    from export.vision_onnx import _vision_config

    try:
        config = _vision_config(reader)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{reader.path}/config.json: vision_config is not a Qwen3-VL-MoE vision config ({exc})") from exc
    with torch.device("meta"):
        visual = Qwen3VLMoeVisionModel(config)
    return {name: tuple(t.shape) for name, t in visual.state_dict().items()}


def check_vision(reader: CheckpointReader) -> list[str]:
    """Raise CheckpointError naming the first missing, unexpected, mis-shaped or mis-typed vision
    tensor; return the checkpoint names checked."""
    prefix = reader.vision_prefix()
    want = expected_vision_shapes(reader)
    stored = {n[len(prefix):]: n for n in reader.tensor_names() if n.startswith(prefix)}
    missing = sorted(set(want) - set(stored))
    if missing:
        raise CheckpointError(f"{reader.path}: vision tensor {prefix + missing[0]!r} is missing "
                              f"({len(missing)} missing in all)")
    unexpected = sorted(set(stored) - set(want))
    if unexpected:
        raise CheckpointError(f"{reader.path}: vision tensor {stored[unexpected[0]]!r} is not part of the "
                              f"Qwen3-VL-MoE vision tower the config describes")
    for short, full in stored.items():
        if tuple(reader.shape(full)) != want[short]:
            raise CheckpointError(f"{reader.path}: tensor {full!r} has shape {tuple(reader.shape(full))}, "
                                  f"the config implies {want[short]}")
        _check_dtype(reader, full)
    return list(stored.values())


def check_decoder(reader: CheckpointReader) -> list[str]:
    """Hyperparameters and every text tensor's presence, shape and dtype (the GGUF plan, no data read)."""
    from export.gguf_decoder import DecoderHparams, plan_decoder_tensors

    hp = DecoderHparams.from_config(reader.config)
    sources = [src for step in plan_decoder_tensors(reader, hp, "f16") for src in step.sources]
    for name in sources:
        _check_dtype(reader, name)
    return sources


def check_checkpoint(reader: CheckpointReader, include_decoder: bool = True) -> int:
    """Everything an export will read, checked from headers only; returns how many tensors were checked."""
    names = check_vision(reader)
    if include_decoder:
        names += check_decoder(reader)
    return len(names)
