"""`edge export verify` on the tiny bundle: ONNX encoder + llama.cpp decoder with injected visual rows
and M-RoPE positions against transformers, for one image and for a two-frame-pair clip with timestamps."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from edge.llm import ContextSettings, LlamaContext, LlamaModel
from edge.llm.positions import text_positions
from edge.manifest import load_bundle
from export.cli import main as export_main
from export.verify import OnnxEncoder, Reference, build_cases, cosine, patchify


@pytest.fixture(scope="module")
def verified(tiny_bundle, tiny_checkpoint, tmp_path_factory):
    """One `edge export verify` run (the CLI, in process) on a copy of the tiny bundle."""
    root = tmp_path_factory.mktemp("verify")
    bundle = shutil.copytree(tiny_bundle, root / "bundle")
    out = root / "report.json"
    code = export_main(["export", "verify", "--bundle", str(bundle), "--checkpoint", str(tiny_checkpoint),
                        "--out", str(out), "--threads", "1"])
    assert code == 0
    return json.loads(out.read_text()), bundle


def test_report_has_the_documented_shape(verified):
    report, _ = verified
    assert set(report["decoder"]) == {"f32", "q4_k_m"}  # every quant in the bundle
    assert set(report["cases"]) == {"image", "clip_2_pairs"}
    for quant, stats in report["decoder"].items():
        assert {"logits_cosine", "greedy_match", "greedy_len"} <= set(stats), quant
        assert stats["greedy_len"] == 16
        assert set(stats["cases"]) == {"image", "clip_2_pairs"}
    for stats in report["encoder"].values():
        assert set(stats) == {"cosine", "max_abs_diff"}


def test_onnx_encoder_matches_transformers_on_every_output(verified):
    report, _ = verified
    names = set(report["encoder"])
    assert names == {"vision_embeds", "vision_embeds.merger", "vision_embeds.deepstack_1",
                     "vision_embeds.deepstack_2", "vision_embeds.deepstack_3"}
    for name, stats in report["encoder"].items():
        assert stats["cosine"] >= 0.9999, (name, stats)
        assert stats["max_abs_diff"] < 1e-3, (name, stats)


@pytest.mark.parametrize("case", ["image", "clip_2_pairs"])
def test_unquantised_decoder_with_injected_rows_matches_transformers(verified, case):
    report, _ = verified
    entry = report["decoder"]["f32"]["cases"][case]
    assert entry["tokenizer_match"], "llama.cpp tokenized the prompt text differently from transformers"
    assert entry["logits_cosine"] >= 0.999, entry
    assert entry["greedy_match"] == 16, (entry["greedy_tokens"], report["cases"][case]["reference_greedy"])
    assert entry["greedy_tokens"] == report["cases"][case]["reference_greedy"]
    assert report["decoder"]["f32"]["logits_cosine"] >= 0.999


def test_clip_prompt_carries_timestamps_and_two_visual_chunks(verified, tiny_bundle):
    report, _ = verified
    manifest, _ = load_bundle(tiny_bundle, verify_hashes=False)
    clip = next(c for c in build_cases(manifest) if c.name == "clip_2_pairs")
    text = "".join(s.text or "[PAIR]" for s in clip.segments)
    assert "<0.2 seconds><|vision_start|>[PAIR]<|vision_end|><1.2 seconds><|vision_start|>[PAIR]<|vision_end|>" in text
    assert report["cases"]["clip_2_pairs"]["frame_pairs"] == 2
    p = manifest.profile
    assert clip.pixel_values.shape == (2 * p.patches_per_pair, p.patch_dim)


def test_q4_k_m_figures_are_present_and_sane(verified):
    report, _ = verified
    q4 = report["decoder"]["q4_k_m"]
    for entry in [q4, *q4["cases"].values()]:
        assert math.isfinite(entry["logits_cosine"]) and -1.0 <= entry["logits_cosine"] <= 1.0
        assert 0 <= entry["greedy_match"] <= 16
    # quantisation error is real but bounded: not a broken file
    assert q4["logits_cosine"] > 0.5


def test_report_is_stored_in_the_bundle_and_hashed(verified):
    report, bundle = verified
    manifest, bundle_dir = load_bundle(bundle, verify_hashes=True)
    assert manifest.reports["verify"] == "reports/verify.json"
    assert json.loads((bundle_dir / "reports/verify.json").read_text())["decoder"] == report["decoder"]


def test_wrong_positions_are_caught(tiny_bundle, tiny_checkpoint):
    """Negative control: the same rows at plain sequential positions (no M-RoPE grid) do not pass the
    0.999 bar against transformers, so the positions the check accepts are the right ones."""
    manifest, bundle_dir = load_bundle(tiny_bundle, verify_hashes=False)
    p = manifest.profile
    image = next(c for c in build_cases(manifest) if c.name == "image")
    encoder = OnnxEncoder(bundle_dir, manifest, threads=1)
    rows = encoder.encode(image.encoder_input(encoder.art), 1)
    ref = Reference(tiny_checkpoint)
    ids, types = ref.ids(image, p.tokens_per_pair)
    ref_logits, _ = ref.run(image, [1, p.grid_h, p.grid_w], ids, types, greedy_len=1)
    art = next(d for d in manifest.decoder if d.quant == "f32")
    settings = ContextSettings(n_ctx=512, n_threads=1, flash_attention=False, kv_type="f32")
    with LlamaModel(bundle_dir / art.path) as model, LlamaContext(model, settings) as ctx:
        for seg in image.segments:
            if seg.text is not None:
                ctx.eval_tokens(model.tokenize(seg.text))
            else:
                flat = np.zeros((4, rows.shape[0]), np.int32)
                flat[:3] = text_positions(ctx.next_pos, rows.shape[0])
                ctx.eval_embeddings(rows, flat, ctx.next_pos + rows.shape[0])
        assert cosine(ctx.logits(), ref_logits) < 0.99


def test_reference_release_frees_every_weight(tiny_bundle, tiny_checkpoint):
    """verify_bundle drops the fp32 reference before it loads the GGUF decoders (at the real widths
    both together do not fit in RAM): after the reference has run, release() leaves no weight alive."""
    import gc
    import weakref

    manifest, _ = load_bundle(tiny_bundle, verify_hashes=False)
    p = manifest.profile
    image = next(c for c in build_cases(manifest) if c.name == "image")
    grid = [1, p.grid_h, p.grid_w]
    ref = Reference(tiny_checkpoint)
    ids, types = ref.ids(image, p.tokens_per_pair)
    ref.visual_rows(image.pixel_values, grid)
    ref.run(image, grid, ids, types, greedy_len=2)
    weights = [weakref.ref(t) for t in ref.model.parameters()]
    assert weights and all(w() is not None for w in weights)
    ref.release()
    gc.collect()
    assert [w for w in weights if w() is not None] == []


def test_patchify_matches_the_transformers_processor():
    """The verify inputs use the processor's patch layout (so ONNX and transformers see one image)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    rng = np.random.default_rng(0)
    frame = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    processor = Qwen2VLImageProcessorPil(do_resize=False, patch_size=16, temporal_patch_size=2, merge_size=2,
                                         image_mean=[0.5] * 3, image_std=[0.5] * 3)
    want = processor(images=[frame], return_tensors="np")["pixel_values"]
    ours = patchify(np.repeat(frame.transpose(2, 0, 1)[None] / 255.0, 2, axis=0).astype(np.float32),
                    (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    np.testing.assert_allclose(ours, want, atol=1e-6)


def test_report_carries_the_gate_with_its_thresholds(verified):
    report, _ = verified
    gate = report["gate"]
    assert gate["passed"] is True and gate["failures"] == []
    assert gate["thresholds"] == {"encoder_cosine": 0.9999, "logits_cosine": 0.999, "greedy_match": None,
                                  "quantised_logits_cosine": None}


def test_gate_names_every_figure_under_its_threshold(verified):
    from export.verify_gate import Thresholds, gate_failures

    report, _ = verified
    f32 = report["decoder"]["f32"]
    strict = Thresholds(encoder_cosine=1.5, logits_cosine=1.5, greedy_match=17, quantised_logits_cosine=1.5)
    failures = gate_failures(report, strict)
    assert len(failures) == len(report["encoder"]) + 2 + 1
    assert f"decoder f32 logits cosine {f32['logits_cosine']:.7f} < 1.5" in failures
    assert f"decoder f32 greedy {f32['greedy_match']}/16 < 17" in failures
    assert any(f.startswith("decoder q4_k_m logits cosine") for f in failures)
    assert all(any(f.startswith(f"encoder {name} cosine") for f in failures) for name in report["encoder"])
    nan = json.loads(json.dumps(report))
    nan["decoder"]["f32"]["logits_cosine"] = float("nan")
    assert gate_failures(nan, Thresholds()) == ["decoder f32 logits cosine nan < 0.999"]
    quantised_only = json.loads(json.dumps(report))
    del quantised_only["decoder"]["f32"]
    assert gate_failures(quantised_only, Thresholds())[0].startswith("no unquantised decoder (f32/f16)")


def test_verify_exits_1_and_names_what_failed(tiny_bundle, tiny_checkpoint, tmp_path, capsys):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    out = tmp_path / "report.json"
    code = export_main(["export", "verify", "--bundle", str(bundle), "--checkpoint", str(tiny_checkpoint),
                        "--out", str(out), "--threads", "1", "--greedy-len", "4",
                        "--min-quantised-logits-cosine", "1.01"])
    assert code == 1
    err = capsys.readouterr().err
    assert "verify: FAIL decoder q4_k_m logits cosine" in err and "< 1.01" in err
    assert "FAIL encoder" not in err and "FAIL decoder f32" not in err  # the figures that pass are not named
    assert json.loads(out.read_text())["gate"]["passed"] is False


def test_bundle_verify_keeps_a_passing_bundle_without_the_reference_decoder(tiny_checkpoint, tmp_path):
    out = tmp_path / "bundle"
    code = export_main(["export", "bundle", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--width", "448",
                        "--height", "256", "--frames", "4", "--no-progress", "--verify", "--threads", "1"])
    assert code == 0
    manifest, bundle_dir = load_bundle(out, verify_hashes=True)
    assert [d.quant for d in manifest.decoder] == ["q4_k_m"]
    assert not (bundle_dir / "decoder" / "decoder-f16.gguf").exists()
    stored = json.loads((bundle_dir / "reports" / "verify.json").read_text())
    assert stored["gate"]["passed"] and stored["decoder"]["f16"]["greedy_match"] == 16


def test_bundle_verify_removes_a_failing_bundle(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bundle"
    code = export_main(["export", "bundle", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--width", "448",
                        "--height", "256", "--frames", "4", "--no-progress", "--quant", "f32", "--verify",
                        "--threads", "1", "--min-encoder-cosine", "1.01"])
    assert code == 1
    err = capsys.readouterr().err
    assert "verify FAIL encoder" in err and "< 1.01" in err
    assert f"{out} removed" in err
    assert not out.exists()
