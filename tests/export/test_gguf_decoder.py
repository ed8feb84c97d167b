"""Text decoder -> GGUF (qwen3vlmoe) -> quantised GGUFs, on the tiny checkpoint, checked in real llama.cpp."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from edge.llm import ContextSettings, LlamaContext, LlamaModel  # noqa: E402
from export.checkpoint import CheckpointReader  # noqa: E402
from export.gguf_decoder import DecoderExportError, write_decoder_artifacts, write_decoder_gguf  # noqa: E402
from export.quantize import QuantizeError, quantize_gguf  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
Q = gguf.GGMLQuantizationType
ONE_THREAD = ContextSettings(n_ctx=512, n_batch=256, n_threads=1, flash_attention=False, kv_type="f32")


def fields(path: Path) -> dict:
    """GGUF key/value metadata as Python values."""
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()}


def tensors(path: Path) -> dict:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


@pytest.fixture(scope="module")
def f16_gguf(tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "decoder-f16.gguf"
    return write_decoder_gguf(CheckpointReader(tiny_checkpoint), out, base="f16", progress=False)


def test_metadata_carries_hyperparameters_and_the_full_tokenizer(tiny_checkpoint, f16_gguf):
    meta = fields(f16_gguf)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    text = config["text_config"]
    assert meta["general.architecture"] == "qwen3vlmoe"
    assert meta["qwen3vlmoe.block_count"] == 4 and meta["qwen3vlmoe.embedding_length"] == 256
    assert meta["qwen3vlmoe.n_deepstack_layers"] == 3
    assert meta["qwen3vlmoe.rope.dimension_sections"] == [8, 12, 12, 0]
    assert meta["qwen3vlmoe.rope.freq_base"] == pytest.approx(5_000_000)
    assert meta["qwen3vlmoe.expert_count"] == 8 and meta["qwen3vlmoe.expert_used_count"] == 2
    assert meta["qwen3vlmoe.expert_feed_forward_length"] == 512
    assert (meta["qwen3vlmoe.attention.head_count"], meta["qwen3vlmoe.attention.head_count_kv"]) == (4, 2)
    assert meta["qwen3vlmoe.attention.key_length"] == 64

    tok = json.loads((tiny_checkpoint / "tokenizer.json").read_text())
    tok_config = json.loads((tiny_checkpoint / "tokenizer_config.json").read_text())
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "qwen2"
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == text["vocab_size"]
    for added in tok["added_tokens"]:
        assert tokens[added["id"]] == added["content"]
        assert types[added["id"]] == (gguf.TokenType.CONTROL if added["special"] else gguf.TokenType.USER_DEFINED)
    for piece, index in list(tok["model"]["vocab"].items())[:50]:
        assert tokens[index] == piece and types[index] == gguf.TokenType.NORMAL
    padding = [i for i in range(len(tokens)) if tokens[i].startswith("[PAD")]
    assert all(types[i] == gguf.TokenType.UNUSED for i in padding)
    assert len(meta["tokenizer.ggml.merges"]) == len(tok["model"]["merges"])
    im_end = next(a["id"] for a in tok["added_tokens"] if a["content"] == "<|im_end|>")
    assert meta["tokenizer.ggml.eos_token_id"] == im_end
    assert meta["tokenizer.chat_template"] == tok_config["chat_template"]


def test_tensor_types_and_stacked_expert_shapes(f16_gguf):
    got = tensors(f16_gguf)
    assert len(got) == 1 + 4 * 12 + 2  # embeddings, 12 per layer, output norm + head
    gate, up, down = (got[f"blk.0.ffn_{k}_exps.weight"] for k in ("gate", "up", "down"))
    # GGUF shapes are ggml's ne order: gate/up {H, I, E}, down {I, H, E}
    assert list(gate.shape) == [256, 512, 8] and list(up.shape) == [256, 512, 8] and list(down.shape) == [512, 256, 8]
    assert gate.tensor_type == Q.F16 and down.tensor_type == Q.F16
    # norms and the router stay F32: tiny, and the router's precision decides expert choice
    for name in ("blk.0.attn_norm.weight", "blk.0.attn_q_norm.weight", "output_norm.weight", "blk.0.ffn_gate_inp.weight"):
        assert got[name].tensor_type == Q.F32, name


def test_gguf_loads_in_llama_cpp_and_matches_transformers_on_text(tiny_checkpoint, f16_gguf):
    from transformers import AutoTokenizer, Qwen3VLMoeForConditionalGeneration

    text = '<|im_start|>user\nCyclist entering the right lane, exit in 300 m {"action": "keep"}<|im_end|>\n'
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    want = tokenizer(text, add_special_tokens=False)["input_ids"]
    with LlamaModel(f16_gguf, expected_n_embd_inp=1024) as model:
        assert (model.n_embd, model.n_embd_inp, model.n_layer) == (256, 1024, 4)
        ids = model.tokenize(text)
        assert ids == want  # same tokenizer, special tokens included
        assert model.detokenize(ids, special=True) == text
        with LlamaContext(model, ONE_THREAD) as ctx:
            ctx.eval_tokens(ids)
            logits = ctx.logits()
    hf = Qwen3VLMoeForConditionalGeneration.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor([want])).logits[0, -1].numpy()
    cosine = float(logits @ ref / np.linalg.norm(logits) / np.linalg.norm(ref))
    assert cosine >= 0.9999, cosine  # f16 weights


def _per_expert_checkpoint(src: Path, dst: Path) -> Path:
    """The tiny checkpoint re-saved with one tensor per expert (older Qwen MoE layout)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    state = load_file(src / "model.safetensors")
    out = {}
    for name, tensor in state.items():
        if name.endswith("mlp.experts.gate_up_proj"):  # (E, 2I, H)
            prefix, half = name[: -len("gate_up_proj")], tensor.shape[1] // 2
            for e in range(tensor.shape[0]):
                out[f"{prefix}{e}.gate_proj.weight"] = tensor[e, :half].clone()
                out[f"{prefix}{e}.up_proj.weight"] = tensor[e, half:].clone()
        elif name.endswith("mlp.experts.down_proj"):  # (E, H, I)
            prefix = name[: -len("down_proj")]
            for e in range(tensor.shape[0]):
                out[f"{prefix}{e}.down_proj.weight"] = tensor[e].clone()
        else:
            out[name] = tensor
    save_file(out, dst / "model.safetensors")
    return dst


def test_all_expert_layouts_convert_to_identical_tensors(tiny_checkpoint, tmp_path):
    from export.tiny import make_tiny_checkpoint

    original = make_tiny_checkpoint(tmp_path / "original", seed=0, expert_layout="original")
    assert CheckpointReader(original).shape("model.language_model.layers.0.mlp.experts.gate_up_proj") == (8, 256, 1024)
    per_expert = _per_expert_checkpoint(tiny_checkpoint, tmp_path / "per_expert")
    outputs = {}
    for label, ckpt in (("transformers", tiny_checkpoint), ("original", original), ("per_expert", per_expert)):
        outputs[label] = write_decoder_gguf(CheckpointReader(ckpt), tmp_path / f"{label}.gguf", base="f32",
                                            progress=False)
    reference = tensors(outputs["transformers"])
    for label in ("original", "per_expert"):
        other = tensors(outputs[label])
        assert list(other) == list(reference), label
        for name, t in reference.items():
            assert np.array_equal(np.asarray(t.data), np.asarray(other[name].data)), f"{label}: {name}"
        meta_a, meta_b = fields(outputs["transformers"]), fields(outputs[label])
        meta_a.pop("general.name"), meta_b.pop("general.name")  # the folder name differs
        assert meta_a == meta_b
    # And the stacking is the right one, not merely a consistent one: expert 3's gate rows.
    stored = CheckpointReader(tiny_checkpoint).get("model.language_model.layers.1.mlp.experts.gate_up_proj").numpy()
    gate = np.asarray(reference["blk.1.ffn_gate_exps.weight"].data)
    up = np.asarray(reference["blk.1.ffn_up_exps.weight"].data)
    np.testing.assert_array_equal(gate[3], stored[3, :512])
    np.testing.assert_array_equal(up[3], stored[3, 512:])


def test_quantised_files_have_the_expected_types(tiny_bundle, tmp_path):
    from edge.manifest import load_bundle

    manifest, bundle = load_bundle(tiny_bundle, verify_hashes=False)
    paths = {d.quant: bundle / d.path for d in manifest.decoder}
    assert set(paths) == {"f32", "q4_k_m"}
    assert all(d.n_embd_inp == 1024 and d.n_deepstack == 3 for d in manifest.decoder)
    q4 = tensors(paths["q4_k_m"])
    assert fields(paths["q4_k_m"])["general.file_type"] == 15
    experts = [t for n, t in q4.items() if "_exps" in n]
    assert {t.tensor_type for t in experts} <= {Q.Q4_K, Q.Q6_K}
    assert sum(t.tensor_type == Q.Q4_K for t in experts) >= len(experts) // 2  # real K-quants, no fallback
    assert all(q4[n].tensor_type == Q.F32 for n in q4 if n.endswith("norm.weight") or "ffn_gate_inp" in n)
    assert paths["q4_k_m"].stat().st_size < paths["f32"].stat().st_size / 5

    for quant, expert_type in (("q8_0", Q.Q8_0), ("q4_0", Q.Q4_0)):
        out = quantize_gguf(paths["f32"], tmp_path / f"{quant}.gguf", quant, threads=1)
        assert {t.tensor_type for n, t in tensors(out).items() if "_exps" in n} == {expert_type}
        with LlamaModel(out, expected_n_embd_inp=1024) as model, LlamaContext(model, ONE_THREAD) as ctx:
            ctx.eval_tokens(model.tokenize("<|im_start|>user\nkeep lane<|im_end|>\n"))
            assert np.isfinite(ctx.logits()).all()
    with pytest.raises(QuantizeError, match="unknown quant"):
        quantize_gguf(paths["f32"], tmp_path / "x.gguf", "q3_k")


def test_bad_requests_fail_with_a_clear_error(tiny_checkpoint, tmp_path):
    with pytest.raises(DecoderExportError, match="not supported"):
        write_decoder_artifacts(CheckpointReader(tiny_checkpoint), tmp_path, ["q2_k"], progress=False)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["rope_parameters"]["mrope_section"] = [8, 8, 8]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(DecoderExportError, match="mrope_section"):
        write_decoder_gguf(CheckpointReader(broken), tmp_path / "x.gguf", progress=False)
    assert not (tmp_path / "x.gguf").exists()


def test_float16_overflow_is_refused_not_written_as_inf():
    from export.gguf_decoder import _to_numpy

    weights = torch.zeros(4, 256, dtype=torch.bfloat16)
    assert _to_numpy(weights, np.float16, "ok").dtype == np.float16
    weights[1, 7] = 1e6  # fine in bf16, inf in f16
    with pytest.raises(DecoderExportError, match="overflow float16"):
        _to_numpy(weights, np.float16, "blk.0.attn_q.weight")
    assert np.isfinite(_to_numpy(weights, np.float32, "ok")).all()  # an f32 base keeps it


# ---- streaming: peak memory ----------------------------------------------------------------------
_MEASURE = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import numpy, torch, gguf, tqdm  # heavy imports before the baseline
    from export.checkpoint import CheckpointReader
    from export.gguf_decoder import write_decoder_gguf

    def status(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024

    reader = CheckpointReader(sys.argv[1])
    baseline = status("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    write_decoder_gguf(reader, Path(sys.argv[2]), "f16", progress=False)
    print(json.dumps({"baseline": baseline, "peak": status("VmHWM:"), "largest": reader.largest_tensor_bytes}))
''')


def _deep_checkpoint(src: Path, dst: Path, n_layer: int) -> tuple[Path, int]:
    """The tiny checkpoint with `n_layer` decoder layers (copies of the 4 real ones), bf16, one shard per
    layer block: a decoder big enough that holding it in memory would show clearly in the RSS."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    config = json.loads((dst / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = n_layer
    (dst / "config.json").write_text(json.dumps(config))
    state = {k: v.to(torch.bfloat16) for k, v in load_file(src / "model.safetensors").items()}
    marker = "model.language_model.layers."
    shared = {k: v for k, v in state.items() if not k.startswith(marker)}
    weight_map, decoder_bytes = {}, 0
    shards = [("model-shared.safetensors", shared)]
    for il in range(n_layer):
        prefix = f"{marker}{il % 4}."
        shards.append((f"model-layer{il:03d}.safetensors",
                       {f"{marker}{il}." + k[len(prefix):]: v.clone() for k, v in state.items() if k.startswith(prefix)}))
    for filename, part in shards:
        save_file(part, dst / filename, metadata={"format": "pt"})
        for name, tensor in part.items():
            weight_map[name] = filename
            if not name.startswith("model.visual."):
                decoder_bytes += tensor.numel() * tensor.element_size()
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dst, decoder_bytes


def test_peak_memory_stays_near_one_tensor_not_the_model(tiny_checkpoint, tmp_path):
    checkpoint, decoder_bytes = _deep_checkpoint(tiny_checkpoint, tmp_path / "deep", n_layer=24)
    assert decoder_bytes > 140 * 2**20
    run = subprocess.run([sys.executable, "-c", _MEASURE, str(checkpoint), str(tmp_path / "deep.gguf")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    growth = figures["peak"] - figures["baseline"]
    # Holding the decoder would add >= decoder_bytes (bf16 in, f16 out). Streaming adds about one source
    # tensor and its converted copy, plus allocator noise (~20 MiB measured).
    assert growth < 48 * 2**20, figures
    assert growth < decoder_bytes / 3, (growth, decoder_bytes)
    assert (tmp_path / "deep.gguf").stat().st_size >= decoder_bytes  # everything was written
