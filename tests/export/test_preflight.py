"""Bad checkpoints are refused before an export writes any file, with the tensor or key named."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from export.bundle import build_bundle
from export.checkpoint import CheckpointError
from export.cli import main as export_main
from export.tiny import make_tiny_checkpoint


def _rewrite(checkpoint, tmp_path, change):
    """A copy of the checkpoint whose single safetensors file went through `change(state)`."""
    from safetensors.torch import load_file, save_file

    copy = shutil.copytree(checkpoint, tmp_path / "variant")
    state = load_file(copy / "model.safetensors")
    change(state)
    save_file(state, str(copy / "model.safetensors"), metadata={"format": "pt"})
    return copy


def _refused(checkpoint, tmp_path, message, **kwargs):
    out = tmp_path / "never"
    with pytest.raises(CheckpointError, match=message):
        build_bundle(checkpoint, out, 448, 256, 4, progress=False, **kwargs)
    assert not out.exists()


def _reshape(name, shape):
    import torch

    def change(state):
        state[name] = torch.zeros(shape)

    return change


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("model.language_model.layers.2.self_attn.k_proj.weight", (64, 256),
         r"tensor 'model.language_model.layers.2.self_attn.k_proj.weight' has shape \(64, 256\), the config implies \(128, 256\)"),
        ("model.language_model.embed_tokens.weight", (700, 256),
         r"'model.language_model.embed_tokens.weight' has shape \(700, 256\)"),
        ("model.language_model.layers.0.mlp.gate.weight", (7, 256), r"layers.0.mlp.gate.weight' has shape \(7, 256\)"),
        ("model.language_model.layers.3.mlp.experts.down_proj", (8, 256, 256),
         r"expert layout of model.language_model.layers.3.mlp.experts.gate_up_proj"),
        ("model.visual.blocks.1.mlp.linear_fc1.weight", (129, 64),
         r"tensor 'model.visual.blocks.1.mlp.linear_fc1.weight' has shape \(129, 64\), the config implies \(128, 64\)"),
    ],
)
def test_a_tensor_of_the_wrong_shape_is_named(tiny_checkpoint, tmp_path, name, shape, message):
    _refused(_rewrite(tiny_checkpoint, tmp_path, _reshape(name, shape)), tmp_path, message)


def test_a_vision_only_export_checks_the_vision_tower_only(tiny_checkpoint, tmp_path):
    name = "model.language_model.layers.2.self_attn.k_proj.weight"
    broken = _rewrite(tiny_checkpoint, tmp_path, _reshape(name, (64, 256)))
    build_bundle(broken, tmp_path / "vision", 448, 256, 4, progress=False, include_decoder=False, self_check=False)
    _refused(broken, tmp_path, "k_proj.weight' has shape")


def test_missing_and_unexpected_vision_tensors_are_named(tiny_checkpoint, tmp_path):
    import torch

    def add(state):
        state["model.visual.blocks.0.extra.weight"] = torch.zeros(4)

    _refused(_rewrite(tiny_checkpoint, tmp_path, add), tmp_path,
             r"tensor 'model.visual.blocks.0.extra.weight' is not part of the Qwen3-VL-MoE vision tower")

    def drop(state):
        del state["model.visual.merger.linear_fc2.bias"]

    shutil.rmtree(tmp_path / "variant")
    _refused(_rewrite(tiny_checkpoint, tmp_path, drop), tmp_path,
             r"vision tensor 'model.visual.merger.linear_fc2.bias' is missing")


def test_a_missing_text_tensor_is_named(tiny_checkpoint, tmp_path):
    def drop(state):
        del state["model.language_model.layers.3.post_attention_layernorm.weight"]

    _refused(_rewrite(tiny_checkpoint, tmp_path, drop), tmp_path,
             r"tensor model.language_model.layers.3.post_attention_layernorm.weight is missing")


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32"])
def test_an_unhandled_dtype_is_named(tiny_checkpoint, tmp_path, dtype):
    import torch

    name = "model.language_model.layers.1.self_attn.q_proj.weight"

    def quantised(state):
        state[name] = state[name].to(getattr(torch, dtype))

    stored = {"int8": "I8", "uint8": "U8", "int32": "I32"}[dtype]
    _refused(_rewrite(tiny_checkpoint, tmp_path, quantised), tmp_path,
             rf"tensor '{name}' is stored as {stored}; the exporter handles F32, F16, BF16")


def test_a_dtype_safetensors_knows_but_the_reader_does_not_is_named(tiny_checkpoint, tmp_path):
    import torch

    name = "model.visual.blocks.0.attn.qkv.weight"

    def fp8(state):
        state[name] = state[name].to(torch.float8_e4m3fn)

    _refused(_rewrite(tiny_checkpoint, tmp_path, fp8), tmp_path, rf"tensor '{name}' has unsupported dtype 'F8_E4M3'")


def test_a_missing_shard_is_named_before_anything_is_written(tmp_path):
    sharded = make_tiny_checkpoint(tmp_path / "sharded", seed=0, shard_size_mb=2)
    victim = sorted(sharded.glob("model-*.safetensors"))[1]
    victim.unlink()
    _refused(sharded, tmp_path, f"shards listed in model.safetensors.index.json are missing: {victim.name}")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "qwen3_vl", "architectures": ["Qwen3VLForConditionalGeneration"]}, "unsupported architecture"),
        ({"model_type": "llava"}, r"model_type='llava'"),
        ({"text_config": None}, "text_config is missing"),
    ],
)
def test_a_config_that_is_not_qwen3_vl_moe_is_refused(tiny_checkpoint, tmp_path, change, message):
    copy = shutil.copytree(tiny_checkpoint, tmp_path / "other")
    config = json.loads((copy / "config.json").read_text())
    config.update(change)
    (copy / "config.json").write_text(json.dumps(config))
    _refused(copy, tmp_path, message)


def test_a_config_key_llama_cpp_cannot_take_is_named(tiny_checkpoint, tmp_path):
    copy = shutil.copytree(tiny_checkpoint, tmp_path / "dense")
    config = json.loads((copy / "config.json").read_text())
    config["text_config"]["mlp_only_layers"] = [0]
    (copy / "config.json").write_text(json.dumps(config))
    _refused(copy, tmp_path, r"text_config.mlp_only_layers=\[0\]")


def test_the_cli_prints_one_line_and_writes_nothing(tiny_checkpoint, tmp_path, capsys):
    broken = _rewrite(tiny_checkpoint, tmp_path, _reshape("model.language_model.norm.weight", (255,)))
    code = export_main(["export", "bundle", "--checkpoint", str(broken), "--out", str(tmp_path / "b"),
                        "--width", "448", "--height", "256", "--frames", "4", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "tensor 'model.language_model.norm.weight' has shape (255,), the config implies (256,)" in err
    assert not (tmp_path / "b").exists()
