"""LoRA adapters: PEFT folder -> GGUF adapter in the bundle, proven against transformers + PEFT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("peft")

from export.tiny_lora import make_random_adapter as make_peft_adapter


@pytest.fixture(scope="module")
def peft_adapter(tiny_checkpoint, tmp_path_factory) -> Path:
    return make_peft_adapter(tiny_checkpoint, tmp_path_factory.mktemp("peft") / "fog")


@pytest.fixture()
def bundle(tiny_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def test_export_writes_llama_cpp_adapter_listed_in_manifest(peft_adapter, bundle):
    import gguf

    from edge.manifest import load_bundle
    from export.lora_gguf import KEY_BASE, export_lora

    manifest_before, _ = load_bundle(bundle)
    art = export_lora(peft_adapter, bundle)
    manifest, _ = load_bundle(bundle)
    assert manifest.bundle_sha256() == manifest_before.bundle_sha256()  # an adapter leaves the identity alone
    listed = manifest.adapter("fog")
    assert listed == art and art.rank == 4 and art.alpha == 8.0 and art.domain == "fog"
    assert art.base_sha256 == manifest.decoder_identity() and art.n_tensors == 4 * 4 * 2
    reader = gguf.GGUFReader(bundle / art.path)
    fields = {k: reader.fields[k] for k in ("general.type", "adapter.type", "general.architecture", KEY_BASE)}
    assert [bytes(f.parts[f.data[0]]).decode() for f in fields.values()] == [
        "adapter", "lora", "qwen3vlmoe", art.base_sha256]
    shapes = {t.name: tuple(int(x) for x in reversed(t.shape)) for t in reader.tensors}
    assert shapes["blk.0.attn_q.weight.lora_a"] == (4, 256)  # (rank, in): numpy order
    assert shapes["blk.0.attn_k.weight.lora_b"] == (128, 4)  # (out, rank)
    assert shapes["blk.3.attn_output.weight.lora_b"] == (256, 4)


def test_adapted_llama_cpp_matches_transformers_with_peft(tiny_checkpoint, peft_adapter, bundle):
    from export.lora_gguf import export_lora
    from export.lora_verify import verify_lora

    export_lora(peft_adapter, bundle)
    report = verify_lora(bundle, tiny_checkpoint, peft_adapter, "fog", threads=2)
    f32 = report["decoder"]["f32"]
    assert report["passed"], report["failures"]
    assert f32["logits_cosine"] >= 0.999 and f32["greedy_match"] == report["greedy_len"]
    # The adapter really changed the model (else the comparison above proves nothing).
    assert f32["adapter_effect_cosine"] < 0.999


def test_export_refuses_vision_and_expert_targets(tiny_checkpoint, bundle, tmp_path):
    from export.lora_gguf import LoraExportError, export_lora

    adapter = make_peft_adapter(tiny_checkpoint, tmp_path / "vision", target=r".*visual\.blocks\.0\.attn\.qkv")
    with pytest.raises(LoraExportError, match="not a decoder attention projection"):
        export_lora(adapter, bundle)


def test_cli_refuses_an_unsupported_adapter_in_one_line(peft_adapter, bundle, tmp_path, capsys):
    from export.cli import main

    broken = Path(shutil.copytree(peft_adapter, tmp_path / "rslora"))
    config = json.loads((broken / "adapter_config.json").read_text())
    (broken / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    assert main(["export", "lora", "--adapter", str(broken), "--bundle", str(bundle), "--no-verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "use_rslora" in err[0]
    assert main(["export", "lora", "--adapter", str(peft_adapter), "--bundle", str(bundle), "--no-verify"]) == 0
    assert "adapter 'fog' (fog, rank 4" in capsys.readouterr().out
