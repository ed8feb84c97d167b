"""A random checkpoint with the real Qwen3-VL-30B-A3B tensor shapes and only N decoder layers.

    edge export tiny --preset full-dims --layers 4 --out ckpt        # every tensor at its real shape
    edge export tiny --preset full-dims --layers 4 --experts 8 --vision tiny --out ckpt   # tests

Text: hidden 2048, 32 query / 4 KV heads of 128, 128 experts of 768 with 8 active, the real
vocabulary size (151936 rows; the tiny tokenizer fills the first few hundred, the rest are
placeholders as Qwen's padded rows are), M-RoPE sections [24, 20, 20], 3 DeepStack levels (so at
least 4 layers: llama.cpp needs more decoder layers than DeepStack levels). Vision: the full tower
(27 blocks of 1152) or the tiny one, projecting to 2048 either way.

The weights never exist as a model: transformers builds the module on the meta device for the
names and shapes, then each tensor is drawn (normal, std 0.02; norms 1, biases 0, as transformers
initialises them), cast to bf16 and written into size-limited shards, so memory stays near one
shard whatever the layer count. Deterministic: tensor k is drawn from seed * 1_000_003 + k.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FULL_TEXT = dict(
    hidden_size=2048,
    intermediate_size=6144,
    moe_intermediate_size=768,
    num_attention_heads=32,
    num_key_value_heads=4,
    head_dim=128,
    num_experts=128,
    num_experts_per_tok=8,
    vocab_size=151936,
    max_position_embeddings=262144,
    rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
                     "mrope_interleaved": True},
)
MIN_LAYERS = 4  # 3 DeepStack levels < n_layer
INIT_STD = 0.02


def _init_value(name: str, shape: tuple[int, ...], generator):
    import torch

    if name.endswith(("norm.weight", "layernorm.weight", "norm1.weight", "norm2.weight")):
        return torch.ones(shape)
    if name.endswith(".bias"):
        return torch.zeros(shape)
    return torch.randn(shape, generator=generator) * INIT_STD


def expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """Every weight name and shape of Qwen3VLMoeForConditionalGeneration for `config`, built on meta."""
    import torch
    from transformers import Qwen3VLMoeForConditionalGeneration

    with torch.device("meta"):
        model = Qwen3VLMoeForConditionalGeneration(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _write_shards(out_dir: Path, shapes: dict[str, tuple[int, ...]], seed: int, shard_bytes: int) -> int:
    import torch
    from safetensors.torch import save_file

    names = sorted(shapes)
    weight_map: dict[str, str] = {}
    pending: dict[str, object] = {}
    size = total = 0
    shard_files: list[list[str]] = []

    def flush() -> None:
        nonlocal pending, size
        if pending:
            index = len(shard_files) + 1
            tmp_name = f"model-{index:05d}.safetensors"
            save_file(pending, str(out_dir / tmp_name), metadata={"format": "pt"})
            shard_files.append(list(pending))
            pending, size = {}, 0

    for k, name in enumerate(names):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + k)
        tensor = _init_value(name, shapes[name], generator).to(torch.bfloat16).contiguous()
        nbytes = tensor.numel() * 2
        if pending and size + nbytes > shard_bytes:
            flush()
        pending[name] = tensor
        size += nbytes
        total += nbytes
    flush()
    count = len(shard_files)
    for index, members in enumerate(shard_files, 1):
        final = f"model-{index:05d}-of-{count:05d}.safetensors"
        (out_dir / f"model-{index:05d}.safetensors").rename(out_dir / final)
        weight_map.update({n: final for n in members})
    index_doc = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index_doc, indent=2, sort_keys=True) + "\n")
    return total


def make_full_dims_checkpoint(out_dir: Path | str, layers: int = MIN_LAYERS, *, experts: int = 128, seed: int = 0,
                              vision: str = "full", shard_size_mb: float = 2048) -> Path:
    """Write the checkpoint (bf16, sharded, with the tiny tokenizer and Qwen's processor config)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import GenerationConfig

    from export.tiny import _write_processor_config, _write_tokenizer_files, build_config, build_tokenizer

    if layers < MIN_LAYERS:
        raise ValueError(f"layers={layers}: the 3 DeepStack levels need at least {MIN_LAYERS} decoder layers")
    if not 8 <= experts <= 128:
        raise ValueError(f"experts={experts} must be between 8 (the active count) and 128")
    if vision not in ("full", "tiny"):
        raise ValueError(f"vision must be 'full' or 'tiny', not {vision!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob("model*.safetensors"), out_dir / "model.safetensors.index.json"]:
        stale.unlink(missing_ok=True)
    token_ids = _write_tokenizer_files(out_dir, build_tokenizer())
    text = {**FULL_TEXT, "num_hidden_layers": layers, "num_experts": experts}
    config = build_config("full-vision" if vision == "full" else "tiny", token_ids, FULL_TEXT["vocab_size"], text)
    _write_shards(out_dir, expected_shapes(config), seed, int(shard_size_mb * 2**20))
    config.dtype = "bfloat16"
    config.save_pretrained(out_dir)
    GenerationConfig(bos_token_id=token_ids["<|endoftext|>"],
                     eos_token_id=[token_ids["<|im_end|>"], token_ids["<|endoftext|>"]],
                     pad_token_id=token_ids["<|endoftext|>"], do_sample=False).save_pretrained(out_dir)
    _write_processor_config(out_dir)
    (out_dir / "tiny_checkpoint.json").write_text(json.dumps(
        {"seed": seed, "preset": "full-dims", "layers": layers, "experts": experts, "vision": vision,
         "dtype": "bfloat16", "shard_size_mb": shard_size_mb}, indent=2) + "\n")
    return out_dir
