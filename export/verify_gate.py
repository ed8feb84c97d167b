"""Pass/fail thresholds for `edge export verify` and the clean-up of a bundle that misses them.

The figures of export.verify say how close the bundle is to transformers; these thresholds decide
whether it ships. Defaults: every encoder output slice cosine >= 0.9999; every unquantised decoder
(f32/f16: the conversion itself, no quantisation error) last-token logits cosine >= 0.999 and all
greedy tokens equal. Quantised decoders are only gated when a threshold for them is given: their
error is real and model-dependent (the driving gate of `edge eval --gate` is the meaningful one).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from edge.manifest import load_bundle, write_manifest

UNQUANTISED = ("f32", "f16")


@dataclass(frozen=True)
class Thresholds:
    encoder_cosine: float = 0.9999
    logits_cosine: float = 0.999
    greedy_match: int | None = None  # None: every compared token (greedy_len)
    quantised_logits_cosine: float | None = None  # None: quantised decoders are reported, not gated


class VerifyFailed(RuntimeError):
    """A bundle missed its thresholds; the message names every figure that did."""

    def __init__(self, failures: list[str]):
        super().__init__("; ".join(failures))
        self.failures = failures


def gate_failures(report: dict, thresholds: Thresholds) -> list[str]:
    """One line per figure under its threshold (empty when the bundle passes)."""
    failures = []
    for name, stats in report["encoder"].items():
        if not stats["cosine"] >= thresholds.encoder_cosine:  # `not >=` also catches NaN
            failures.append(f"encoder {name} cosine {stats['cosine']:.7f} < {thresholds.encoder_cosine}")
    unquantised = [q for q in report["decoder"] if q in UNQUANTISED]
    if not unquantised:
        failures.append("no unquantised decoder (f32/f16) in the bundle: the GGUF conversion is unchecked "
                        "(export with --quant f16 too, or use `edge export bundle --verify`)")
    for quant, stats in report["decoder"].items():
        if quant in UNQUANTISED:
            failures += _decoder_failures(quant, stats, thresholds.logits_cosine, thresholds.greedy_match)
        elif thresholds.quantised_logits_cosine is not None:
            failures += _decoder_failures(quant, stats, thresholds.quantised_logits_cosine, None, greedy=False)
    return failures


def _decoder_failures(quant: str, stats: dict, min_cosine: float, min_greedy: int | None,
                      greedy: bool = True) -> list[str]:
    out = []
    if not stats["logits_cosine"] >= min_cosine:
        out.append(f"decoder {quant} logits cosine {stats['logits_cosine']:.7f} < {min_cosine}")
    want = stats["greedy_len"] if min_greedy is None else min_greedy
    if greedy and stats["greedy_match"] < want:
        out.append(f"decoder {quant} greedy {stats['greedy_match']}/{stats['greedy_len']} < {want}")
    return out


def gate_report(report: dict, thresholds: Thresholds) -> dict:
    failures = gate_failures(report, thresholds)
    return {"thresholds": asdict(thresholds), "passed": not failures, "failures": failures}


def drop_decoders(bundle: Path, quants: list[str]) -> list[str]:
    """Remove decoder artifacts of `quants` (files and manifest entries); return the removed paths.

    `edge export bundle --verify` exports an f16 decoder only to check the conversion against
    transformers when no unquantised decoder was asked for; it does not ship."""
    manifest, bundle_dir = load_bundle(bundle, verify_hashes=False)
    removed = [d.path for d in manifest.decoder if d.quant in quants]
    manifest.decoder = [d for d in manifest.decoder if d.quant not in quants]
    for rel in removed:
        (bundle_dir / rel).unlink(missing_ok=True)
        manifest.files.pop(rel, None)
    write_manifest(bundle_dir, manifest)
    return removed


def verify_new_bundle(bundle: Path, checkpoint: Path, thresholds: Thresholds, *, reference_only: list[str],
                      threads: int | None = None, reference_dtype: str = "float32") -> dict:
    """Verify a bundle just exported; on failure remove it whole and raise VerifyFailed.

    `reference_only`: decoder quants exported for the check alone, removed once it passes."""
    from export.verify import verify_bundle

    try:
        report = verify_bundle(bundle, checkpoint, None, threads=threads, reference_dtype=reference_dtype,
                               thresholds=thresholds, verify_hashes=False)
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    if not report["gate"]["passed"]:
        shutil.rmtree(bundle, ignore_errors=True)
        raise VerifyFailed(report["gate"]["failures"])
    if reference_only:
        drop_decoders(bundle, reference_only)
    return report
