"""A tiny random-initialised Qwen3-VL-MoE checkpoint of the real architecture (spec: helpers/TINY.md).

Every test and the demo build on it: nothing downloads weights. The dimensions are chosen so that
the exporters meet the same structural cases as the 30B-A3B model:
- 2 * moe_intermediate_size (1024) != hidden_size (256), so the two expert layouts (transformers 5's
  (E, 2I, H) and the original (E, H, 2I)) can be told apart from shapes alone;
- every expert row size is a multiple of 256, so Q4_K applies to the experts;
- 3 DeepStack layers < 4 decoder layers (llama.cpp asserts otherwise).

Determinism: the config, the tokenizer and the weights depend only on (seed, preset, options), and
the safetensors files are written by this module (sorted names, fixed metadata), so two runs with the
same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

PRESETS = ("tiny", "full-vision")
EXPERT_LAYOUTS = ("transformers", "original")

# Qwen's special tokens, in Qwen's id order (they follow the regular vocabulary).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2's pre-tokenizer split (llama.cpp pre-tokenizer "qwen2" uses the same expression).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Merges are learned from this corpus only; a few hundred are enough to make tokenisation non-trivial
# (multi-byte tokens, digits split one by one as Qwen does, JSON punctuation).
_CORPUS = """
The ego vehicle keeps its lane on the highway. A cyclist is entering the right lane ahead.
Decelerate: cyclist entering right lane; keep right for the exit in 300 m.
A pedestrian is crossing at the crosswalk. Stop and yield to the pedestrian.
The traffic light ahead is red. Slow down and stop before the stop line.
The traffic light turns green. Accelerate gently and keep the lane.
A truck is merging from the left lane. Keep distance and keep the lane.
Road works ahead: the right lane is closed. Change lane to the left.
Turn left at the next intersection in 150 m. Turn right at the roundabout, second exit.
A parked car blocks part of the lane. Nudge left to pass the parked car.
An ambulance approaches from behind with sirens. Pull over to the right and stop.
The car in front brakes hard. Decelerate now, urgency high.
Wet road, low visibility, fog. Reduce speed and increase the following distance.
A bus stops at the bus stop on the right. Watch for pedestrians near the bus.
Speed limit 50 km/h. Speed limit 30 km/h in the school zone. Speed limit 120 km/h.
Exit the motorway in 500 m, then keep left. Continue straight for 2 km.
{"action": "decelerate", "lateral": "keep_lane", "urgency": "high", "reason": "cyclist entering right lane"}
{"action": "keep", "lateral": "change_left", "urgency": "low", "reason": "road works ahead"}
{"action": "stop", "lateral": "keep_lane", "urgency": "medium", "reason": "red light"}
{"action": "accelerate", "lateral": "turn_right", "urgency": "low", "reason": "green light, exit in 300 m"}
{"speed": "yield", "lateral": "nudge_left", "urgency": "high", "valid_until_ms": 1500}
{"speed": "pull_over", "lateral": "change_right", "urgency": "high", "distance_m": 120}
0 1 2 3 4 5 6 7 8 9 10 20 30 50 100 150 200 250 300 400 500 750 1000 1500 2000 0.5 1.25
[ ] { } ( ) , . : ; " ' - _ / + = < > ! ? # % & * @
Navigation: in 200 m turn left onto Main Street. Navigation: keep right at the fork.
The frame shows a wet street at night with headlights, a motorcycle and two cars.
"""

# Qwen3-VL's (instruct) chat template: images and videos become
# <|vision_start|><|image_pad|><|vision_end|> (resp. <|video_pad|>) placeholders.
CHAT_TEMPLATE = (Path(__file__).resolve().parent / "templates" / "qwen3_vl_chat.jinja").read_text()
BPE_VOCAB_SIZE = 640  # bytes (256) + merges; the corpus decides how many merges are found

# Qwen3-VL's image processor settings (the runtime's preprocessing must reproduce them).
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)

_VISION_PRESETS = {
    "tiny": dict(
        depth=4,
        hidden_size=64,
        intermediate_size=128,
        num_heads=4,
        deepstack_visual_indexes=[1, 2, 3],
    ),
    "full-vision": dict(
        depth=27,
        hidden_size=1152,
        intermediate_size=4304,
        num_heads=16,
        deepstack_visual_indexes=[8, 16, 24],
    ),
}


def build_tokenizer():
    """Byte-level BPE with Qwen2's normaliser/pre-tokenizer/decoder and Qwen's special tokens.

    The pipeline is identical to the one transformers' Qwen2Tokenizer builds, so AutoTokenizer and
    the raw `tokenizers` object (and llama.cpp with pre-tokenizer "qwen2") split text the same way.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    # Lines in a fixed order; the trainer breaks count ties by pair ids, so the merges are stable.
    tok.train_from_iterator(_CORPUS.strip().splitlines(), trainer=trainer)
    # Special tokens go after the regular vocabulary, as in Qwen (<|endoftext|> is the first one).
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def _round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


def build_config(preset: str, token_ids: dict[str, int], vocab_size: int, text_overrides: dict | None = None):
    """The Qwen3VLMoeConfig of a preset (TINY.md dimensions); `text_overrides` replaces text_config keys."""
    from transformers import Qwen3VLMoeConfig

    if preset not in _VISION_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    text_config = dict(
        vocab_size=vocab_size,
        hidden_size=256,
        intermediate_size=512,
        moe_intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        num_experts=8,
        num_experts_per_tok=2,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        hidden_act="silu",
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        attention_bias=False,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [8, 12, 12],
            "mrope_interleaved": True,
        },
        bos_token_id=token_ids["<|endoftext|>"],
        eos_token_id=token_ids["<|im_end|>"],
        pad_token_id=token_ids["<|endoftext|>"],
    )
    text_config.update(text_overrides or {})
    vision_config = dict(
        patch_size=16,
        temporal_patch_size=2,
        spatial_merge_size=2,
        in_channels=3,
        hidden_act="gelu_pytorch_tanh",
        out_hidden_size=text_config["hidden_size"],
        num_position_embeddings=2304,
        **_VISION_PRESETS[preset],
    )
    config = Qwen3VLMoeConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.architectures = ["Qwen3VLMoeForConditionalGeneration"]
    return config


def _write_tokenizer_files(out_dir: Path, tok) -> dict[str, int]:
    token_ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    tok.save(str(out_dir / "tokenizer.json"))
    added = {
        str(token_ids[t]): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in SPECIAL_TOKENS
    }
    tokenizer_config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 8192,
        "chat_template": CHAT_TEMPLATE,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return token_ids


def _write_processor_config(out_dir: Path) -> None:
    # What Qwen3-VL ships (patch 16, merge 2, mean/std 0.5); the fast (torchvision) class name is
    # replaced by the PIL-free-of-torchvision one so the reference processor loads here.
    preprocessor = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen3VLProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": True,
        "image_mean": list(IMAGE_MEAN),
        "image_std": list(IMAGE_STD),
        "patch_size": 16,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")


def _to_original_expert_layout(state: dict) -> dict:
    """Transpose fused experts to the layout of the original Qwen checkpoints: (E, H, 2I)/(E, I, H)."""
    out = {}
    for name, tensor in state.items():
        if name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj"):
            tensor = tensor.transpose(1, 2).contiguous()
        out[name] = tensor
    return out


def _shard_plan(names: list[str], nbytes: dict[str, int], shard_size_mb: float | None) -> list[list[str]]:
    if not shard_size_mb:
        return [names]
    limit = int(shard_size_mb * 1024 * 1024)
    shards: list[list[str]] = [[]]
    size = 0
    for name in names:
        if shards[-1] and size + nbytes[name] > limit:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes[name]
    return shards


def _write_safetensors(out_dir: Path, state: dict, shard_size_mb: float | None) -> list[Path]:
    from safetensors.torch import save_file

    names = sorted(state)
    nbytes = {n: state[n].numel() * state[n].element_size() for n in names}
    plan = _shard_plan(names, nbytes, shard_size_mb)
    metadata = {"format": "pt"}
    if len(plan) == 1:
        path = out_dir / "model.safetensors"
        save_file({n: state[n] for n in names}, str(path), metadata=metadata)
        return [path]
    paths = []
    weight_map = {}
    total = len(plan)
    for i, shard_names in enumerate(plan, start=1):
        filename = f"model-{i:05d}-of-{total:05d}.safetensors"
        save_file({n: state[n] for n in shard_names}, str(out_dir / filename), metadata=metadata)
        paths.append(out_dir / filename)
        weight_map.update({n: filename for n in shard_names})
    index = {"metadata": {"total_size": sum(nbytes.values())}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return paths


def make_tiny_checkpoint(
    out_dir: Path | str,
    seed: int = 0,
    preset: str = "tiny",
    shard_size_mb: float | None = None,
    dtype: Literal["float32", "bfloat16"] = "float32",
    expert_layout: Literal["transformers", "original"] = "transformers",
    text_overrides: dict | None = None,
) -> Path:
    """Write a random-initialised Qwen3VLMoeForConditionalGeneration checkpoint to `out_dir`.

    shard_size_mb: split the weights into several `model-0000i-of-0000n.safetensors` files plus
        `model.safetensors.index.json` (as the real checkpoint is laid out).
    dtype: "bfloat16" stores the weights as the real checkpoint does (streaming/convert tests).
    expert_layout: "original" stores fused experts transposed, as the original Qwen release does.
    text_overrides: replace text_config entries (e.g. {"num_experts": 64, "num_hidden_layers": 16} for a
        checkpoint big enough to measure streaming); not part of the "tiny" preset contract.
    Returns the checkpoint folder.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import GenerationConfig, Qwen3VLMoeForConditionalGeneration

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', not {dtype!r}")
    if expert_layout not in EXPERT_LAYOUTS:
        raise ValueError(f"expert_layout must be one of {EXPERT_LAYOUTS}, not {expert_layout!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob("model*.safetensors"), out_dir / "model.safetensors.index.json"]:
        stale.unlink(missing_ok=True)  # a previous, differently sharded run must not leave shards behind

    tok = build_tokenizer()
    token_ids = _write_tokenizer_files(out_dir, tok)
    vocab_size = _round_up(tok.get_vocab_size(with_added_tokens=True), 64)
    config = build_config(preset, token_ids, vocab_size, text_overrides)

    torch.manual_seed(seed)
    model = Qwen3VLMoeForConditionalGeneration(config).eval()
    target = torch.float32 if dtype == "float32" else torch.bfloat16
    state = {name: t.detach().to(target).contiguous() for name, t in model.state_dict().items()}
    del model
    bad = [name for name, t in state.items() if not torch.isfinite(t.float()).all()]
    if bad:
        raise RuntimeError(f"random initialisation left non-finite values in {bad[:5]}")
    if expert_layout == "original":
        state = _to_original_expert_layout(state)
    _write_safetensors(out_dir, state, shard_size_mb)

    config.dtype = dtype
    config.save_pretrained(out_dir)
    GenerationConfig(
        bos_token_id=token_ids["<|endoftext|>"],
        eos_token_id=[token_ids["<|im_end|>"], token_ids["<|endoftext|>"]],
        pad_token_id=token_ids["<|endoftext|>"],
        do_sample=False,
    ).save_pretrained(out_dir)
    _write_processor_config(out_dir)
    (out_dir / "tiny_checkpoint.json").write_text(
        json.dumps(
            {"seed": seed, "preset": preset, "dtype": dtype, "expert_layout": expert_layout,
             "shard_size_mb": shard_size_mb, "text_overrides": text_overrides or {}},
            indent=2,
        )
        + "\n"
    )
    return out_dir
