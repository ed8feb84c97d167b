"""The decoder at the real Qwen3-VL-30B-A3B widths, end to end, in the smallest form that keeps them.

Every text tensor has its real width (hidden 2048, 32 query / 4 KV heads of 128, experts of 768,
8 active, the real vocabulary of 151936 rows, 3 DeepStack levels: visual rows 8192 wide); 4 layers
(the fewest llama.cpp takes with 3 DeepStack levels) and 8 experts instead of 128 keep it to a
1.6 GiB checkpoint. The full 128-expert figures are measured by `python -m export.bench_full_dims`
(docs/DEPLOY.md). Needs ~5.5 GiB of RAM at its peak (transformers' fp32 reference, freed before the
f32 GGUF is loaded), and skips on machines with less free memory than NEEDED_GIB.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from edge.manifest import load_bundle
from export.cli import main as export_main
from export.full_dims import FULL_TEXT, make_full_dims_checkpoint

NEEDED_GIB = 10.0


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_available_gib() < NEEDED_GIB, reason=f"needs {NEEDED_GIB} GiB of free memory"),
]


@pytest.fixture(scope="module")
def full_dims_bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("full_dims")
    checkpoint = make_full_dims_checkpoint(root / "ckpt", 4, experts=8, vision="tiny", shard_size_mb=512)
    out = root / "bundle"
    code = export_main(["export", "bundle", "--checkpoint", str(checkpoint), "--out", str(out), "--width", "448",
                        "--height", "256", "--frames", "4", "--quant", "f32", "--quant", "q4_k_m", "--verify",
                        "--no-progress"])
    assert code == 0  # --verify: encoder cosine >= 0.9999, f32 logits cosine >= 0.999, greedy 16/16
    return out


def test_checkpoint_tensors_have_the_real_shapes(tmp_path):
    from export.checkpoint import CheckpointReader

    reader = CheckpointReader(make_full_dims_checkpoint(tmp_path / "c", 4, experts=8, vision="tiny", shard_size_mb=512))
    t = "model.language_model."
    assert reader.shape(t + "embed_tokens.weight") == (151936, 2048)
    assert reader.shape("lm_head.weight") == (151936, 2048)
    assert reader.shape(t + "layers.3.self_attn.q_proj.weight") == (32 * 128, 2048)
    assert reader.shape(t + "layers.3.self_attn.k_proj.weight") == (4 * 128, 2048)
    assert reader.shape(t + "layers.0.mlp.experts.gate_up_proj") == (8, 2 * 768, 2048)
    assert reader.shape(t + "layers.0.mlp.experts.down_proj") == (8, 2048, 768)
    assert reader.shape("model.visual.merger.linear_fc2.weight") == (2048, 4 * 64)
    assert {reader.dtype(n) for n in reader.tensor_names()} == {"BF16"}
    assert len(reader.shard_files) > 1


def test_bundle_at_real_widths_verifies_against_transformers(full_dims_bundle):
    manifest, bundle_dir = load_bundle(full_dims_bundle, verify_hashes=True)
    for dec in manifest.decoder:
        assert (dec.n_embd, dec.n_embd_inp, dec.n_vocab, dec.n_layer) == (2048, 8192, FULL_TEXT["vocab_size"], 4)
    report = json.loads((bundle_dir / "reports" / "verify.json").read_text())
    assert report["gate"]["passed"]
    f32 = report["decoder"]["f32"]
    assert f32["logits_cosine"] >= 0.999 and f32["greedy_match"] == 16
    assert all(case["tokenizer_match"] for case in f32["cases"].values())
    assert report["decoder"]["q4_k_m"]["logits_cosine"] > 0.9  # quantised at real widths, not broken


def test_the_runtime_runs_cycles_on_it(full_dims_bundle, drive_videos):
    from sim.replay import ReplayOptions, replay_scene

    result = replay_scene(full_dims_bundle, drive_videos[0],
                          options=ReplayOptions(max_cycles=2, decoder_quant="q4_k_m", annotate=False))
    assert len(result.outcomes) == 2
    for outcome in result.outcomes:
        # Random weights write long grammar-valid strings that max_tokens cuts (no advice, said so);
        # what must hold at the real vocabulary is that the grammar steers the first token.
        assert outcome.raw_text.startswith("{")
        assert outcome.advice.verdict.value in ("ok", "degraded", "late", "no_advice")
