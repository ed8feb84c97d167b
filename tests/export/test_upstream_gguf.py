"""The decoder GGUF equals what llama.cpp's own converter writes for the same checkpoint.

tests/export/data/upstream_qwen3vlmoe_tiny_f16.json is the summary (tensor names, shapes, types and
data hashes; every metadata key and value, long arrays by length and hash) of the f16 GGUF that
`convert_hf_to_gguf.py` of the llama.cpp llama-cpp-python 0.3.36 vendors writes for the tiny
checkpoint; scripts/upstream_gguf_summary.py remakes it from a llama.cpp source tree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("gguf")

import gguf

from export.checkpoint import CheckpointReader
from export.gguf_compare import diff_summaries, summarize_gguf
from export.gguf_decoder import write_decoder_gguf

UPSTREAM = Path(__file__).parent / "data" / "upstream_qwen3vlmoe_tiny_f16.json"
ARCH = "qwen3vlmoe"
# What decides whether llama.cpp runs the model as transformers does; the summary must carry each.
KEYS_THAT_MATTER = (
    f"{ARCH}.rope.dimension_sections", f"{ARCH}.n_deepstack_layers", f"{ARCH}.expert_count",
    f"{ARCH}.expert_used_count", f"{ARCH}.expert_feed_forward_length", f"{ARCH}.attention.layer_norm_rms_epsilon",
    f"{ARCH}.attention.head_count", f"{ARCH}.attention.head_count_kv", f"{ARCH}.rope.freq_base",
    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.chat_template",
)


@pytest.fixture(scope="module")
def ours(tiny_checkpoint, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("upstream") / "decoder-f16.gguf"
    write_decoder_gguf(CheckpointReader(tiny_checkpoint), path, base="f16", progress=False)
    return summarize_gguf(path)


@pytest.fixture(scope="module")
def upstream() -> dict:
    return json.loads(UPSTREAM.read_text())


def test_decoder_gguf_equals_llama_cpp_converter_output(ours, upstream):
    """Same tensors (names, shapes, types, values) and the same metadata, key for key. The fixture
    stores its experts as transformers 5 saves them; upstream converted the original release layout
    of the same weights (it only converts that one), so equal hashes also prove the transposition."""
    differences = diff_summaries(ours, upstream)
    assert differences == [], "\n".join(differences) + (
        "\n(if the tiny checkpoint changed on purpose: scripts/upstream_gguf_summary.py remakes the summary)")


def test_the_upstream_summary_covers_what_matters(upstream):
    missing = [k for k in KEYS_THAT_MATTER if k not in upstream["metadata"]]
    assert missing == []
    meta = upstream["metadata"]
    assert meta[f"{ARCH}.rope.dimension_sections"] == [8, 12, 12, 0]
    assert meta[f"{ARCH}.n_deepstack_layers"] == 3
    assert meta["tokenizer.ggml.pre"] == "qwen2" and meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.merges"]["len"] > 300
    assert len(upstream["tensors"]) == 3 + 4 * 12


def test_every_tensor_name_is_one_llama_cpp_knows_for_the_architecture(ours):
    arch = gguf.MODEL_ARCH.QWEN3VLMOE
    n_layer = ours["metadata"][f"{ARCH}.block_count"]
    allowed = {gguf.TENSOR_NAMES[t].format(bid=b) + ".weight" for t in gguf.MODEL_TENSORS[arch] for b in range(n_layer)}
    assert set(ours["tensors"]) <= allowed


def test_metadata_keys_are_the_gguf_package_constants(ours):
    known = {v.replace("{arch}", ARCH) for group in vars(gguf.Keys).values() if isinstance(group, type)
             for v in vars(group).values() if isinstance(v, str)}
    assert set(ours["metadata"]) - known == set()


def test_a_difference_is_named():
    a = {"arch": ARCH, "metadata": {"x": 1, "y": [1, 2]}, "tensors": {"t": {"shape": [2, 3], "type": "F16", "sha256": "a"}}}
    b = {"arch": ARCH, "metadata": {"x": 2}, "tensors": {"t": {"shape": [2, 3], "type": "F16", "sha256": "b"},
                                                       "u": {"shape": [1], "type": "F32", "sha256": "c"}}}
    assert diff_summaries(a, b) == [
        "tensor u: only upstream writes it",
        "tensor t: same shape and type, other values (layout or conversion differs)",
        "metadata x: ours 1, upstream 2",
        "metadata y: ours [1, 2], upstream \"<absent>\"",
    ]
