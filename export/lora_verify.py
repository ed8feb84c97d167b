"""Prove an exported LoRA adapter: llama.cpp (unquantised decoder + the adapter GGUF) against
transformers with the PEFT adapter applied, on the same pixels and prompts as `edge export verify`.

Per unquantised decoder of the bundle: the last-token logits cosine and the greedy tokens, worst of
the two prompts; plus how far the adapter moves llama.cpp's own logits (`adapter_effect_cosine`, a
check that the adapter was applied at all). The gate: cosine >= 0.999 and every greedy token equal.
"""

from __future__ import annotations

from pathlib import Path

from edge.manifest import load_bundle, write_manifest
from export.verify import (
    GREEDY_LEN,
    OnnxEncoder,
    Reference,
    build_cases,
    cosine,
    leading_matches,
    run_bundle_decoder,
)

MIN_COSINE = 0.999
UNQUANTISED = ("f32", "f16")


def _adapted_reference(checkpoint: Path, adapter_dir: Path) -> Reference:
    from peft import PeftModel

    ref = Reference(checkpoint, "float32")
    # Injects the LoRA layers into ref.model in place (unmerged: W x + s B A x, as llama.cpp computes).
    PeftModel.from_pretrained(ref.model, str(adapter_dir)).eval()
    return ref


def verify_lora(bundle: Path | str, checkpoint: Path | str, adapter_dir: Path | str, name: str, *,
                greedy_len: int = GREEDY_LEN, threads: int | None = None, record: bool = True) -> dict:
    from edge.llm import LlamaModel
    from edge.llm.adapters import load_adapter

    manifest, bundle_dir = load_bundle(bundle)
    art = manifest.adapter(name)
    decoders = [d for d in manifest.decoder if d.quant in UNQUANTISED]
    if not decoders:
        raise ValueError(f"bundle {bundle_dir} has no f32/f16 decoder to verify the adapter on")
    p = manifest.profile
    ref = _adapted_reference(Path(checkpoint), Path(adapter_dir))
    encoder = OnnxEncoder(bundle_dir, manifest, threads)
    prepared = []
    for case in build_cases(manifest):
        grid = [case.n_pairs, p.grid_h, p.grid_w]
        rows = encoder.encode(case.encoder_input(encoder.art), case.n_pairs)
        ids, types = ref.ids(case, p.tokens_per_pair)
        prepared.append((case, rows, *ref.run(case, grid, ids, types, greedy_len)))

    report: dict = {"adapter": name, "greedy_len": greedy_len, "min_cosine": MIN_COSINE, "decoder": {}}
    failures = []
    for dec in decoders:
        model = LlamaModel(bundle_dir / dec.path, expected_n_embd_inp=dec.n_embd_inp)
        try:
            adapter = load_adapter(model, bundle_dir, art, manifest.decoder_identity())
            worst: dict = {"logits_cosine": 1.0, "greedy_match": greedy_len, "adapter_effect_cosine": 1.0}
            for case, rows, ref_logits, ref_tokens in prepared:
                logits, tokens, _ = run_bundle_decoder(model, case, rows, p.merged_h, p.merged_w, greedy_len,
                                                       threads, adapters=[(adapter, 1.0)])
                base_logits, _, _ = run_bundle_decoder(model, case, rows, p.merged_h, p.merged_w, 1, threads)
                worst["logits_cosine"] = min(worst["logits_cosine"], cosine(logits, ref_logits))
                worst["greedy_match"] = min(worst["greedy_match"], leading_matches(tokens, ref_tokens))
                worst["adapter_effect_cosine"] = min(worst["adapter_effect_cosine"], cosine(logits, base_logits))
        finally:
            model.close()
        report["decoder"][dec.quant] = worst
        if not worst["logits_cosine"] >= MIN_COSINE:
            failures.append(f"{dec.quant}: logits cosine {worst['logits_cosine']:.6f} < {MIN_COSINE}")
        if worst["greedy_match"] < greedy_len:
            failures.append(f"{dec.quant}: greedy tokens agree for {worst['greedy_match']} of {greedy_len}")
    report["passed"], report["failures"] = not failures, failures
    if record:
        manifest.adapter(name).verify = report
        write_manifest(bundle_dir, manifest)
    return report

