"""The tiny checkpoint: deterministic, TINY.md dimensions, loadable by transformers offline."""

from __future__ import annotations

import hashlib
import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from export.tiny import SPECIAL_TOKENS, build_config, make_tiny_checkpoint  # noqa: E402


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_byte_identical_files(tiny_checkpoint, tmp_path):
    again = make_tiny_checkpoint(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json"):
        assert _sha(again / name) == _sha(tiny_checkpoint / name), name
    other = make_tiny_checkpoint(tmp_path / "other", seed=1)
    assert _sha(other / "model.safetensors") != _sha(tiny_checkpoint / "model.safetensors")
    assert _sha(other / "tokenizer.json") == _sha(tiny_checkpoint / "tokenizer.json")  # seed is for weights only


def test_config_has_the_tiny_dimensions(tiny_checkpoint):
    config = transformers.AutoConfig.from_pretrained(tiny_checkpoint)
    assert config.model_type == "qwen3_vl_moe"
    assert config.architectures == ["Qwen3VLMoeForConditionalGeneration"]
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (256, 4, 4, 2)
    assert (text.head_dim, text.moe_intermediate_size, text.num_experts, text.num_experts_per_tok) == (64, 512, 8, 2)
    assert 2 * text.moe_intermediate_size != text.hidden_size  # expert layouts are told apart by shape
    assert text.moe_intermediate_size % 256 == 0 and text.hidden_size % 256 == 0  # K-quant rows
    assert text.rope_parameters["mrope_section"] == [8, 12, 12]
    assert sum(text.rope_parameters["mrope_section"]) == text.head_dim // 2
    assert text.rope_parameters["mrope_interleaved"] is True
    assert text.tie_word_embeddings is False and config.tie_word_embeddings is False
    assert text.vocab_size % 64 == 0
    assert (vision.depth, vision.hidden_size, vision.intermediate_size, vision.num_heads) == (4, 64, 128, 4)
    assert (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size) == (16, 2, 2)
    assert list(vision.deepstack_visual_indexes) == [1, 2, 3]
    assert len(vision.deepstack_visual_indexes) < text.num_hidden_layers  # llama.cpp's requirement
    assert vision.out_hidden_size == text.hidden_size
    assert vision.num_position_embeddings == 2304


def test_full_vision_preset_has_real_vision_dimensions():
    ids = {tok: 600 + i for i, tok in enumerate(SPECIAL_TOKENS)}
    config = build_config("full-vision", ids, vocab_size=640)
    vision = config.vision_config
    assert (vision.depth, vision.hidden_size, vision.intermediate_size, vision.num_heads) == (27, 1152, 4304, 16)
    assert list(vision.deepstack_visual_indexes) == [8, 16, 24]
    assert vision.out_hidden_size == config.text_config.hidden_size == 256
    with pytest.raises(ValueError, match="unknown preset"):
        build_config("huge", ids, vocab_size=640)


def test_tokenizer_loads_offline_with_qwen_special_tokens(tiny_checkpoint):
    from tokenizers import Tokenizer

    tok = transformers.AutoTokenizer.from_pretrained(tiny_checkpoint)
    raw = Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert ids == [raw.token_to_id(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(SPECIAL_TOKENS)))  # after the regular vocab, Qwen order
    assert max(ids) < config["text_config"]["vocab_size"]
    assert config["image_token_id"] == tok.convert_tokens_to_ids("<|image_pad|>")
    assert config["video_token_id"] == tok.convert_tokens_to_ids("<|video_pad|>")
    assert config["vision_start_token_id"] == tok.convert_tokens_to_ids("<|vision_start|>")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"

    text = 'Decelerate: cyclist entering right lane; {"urgency": "high", "distance_m": 300}\n<|im_end|>'
    encoded = tok(text, add_special_tokens=False)["input_ids"]
    assert encoded == raw.encode(text, add_special_tokens=False).ids  # AutoTokenizer == raw pipeline
    assert encoded[-1] == tok.convert_tokens_to_ids("<|im_end|>")  # special token stays one id
    assert len(encoded) < len(text.encode())  # merges were learned
    assert tok.decode(encoded) == text
    assert tok("300", add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(c) for c in "300"]


def test_chat_template_renders_qwen3_vl_placeholders(tiny_checkpoint):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_checkpoint)
    messages = [
        {"role": "system", "content": "You are a driving assistant."},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What next?"}]},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a driving assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>What next?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_sharded_bf16_original_layout_loads_to_the_same_model(tiny_checkpoint, tmp_path):
    from transformers import Qwen3VLMoeForConditionalGeneration

    sharded = make_tiny_checkpoint(tmp_path / "sharded", seed=0, shard_size_mb=8, dtype="bfloat16",
                                   expert_layout="original")
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    reference = Qwen3VLMoeForConditionalGeneration.from_pretrained(tiny_checkpoint).state_dict()
    loaded = Qwen3VLMoeForConditionalGeneration.from_pretrained(sharded, dtype=torch.float32).state_dict()
    assert loaded.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(loaded[name], tensor.to(torch.bfloat16).float()), name
