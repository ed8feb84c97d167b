"""The driving gate a bundle carries: how often its quantised precisions decide as its reference does.

`edge eval --record` (and the built-in bundle's build) stores, per precision combination
("int8+q4_k_m"), the share of cycles on labelled scenes whose action equals the reference
combination's (fp32 encoder + the widest decoder) in the manifest's `quality.driving_agreement`.
The runtime reads it at load and warns when the combination it runs is under a threshold: a
quantisation that changes the car's decision more often than that should not drive unnoticed.
"""

from __future__ import annotations

from edge.manifest import BundleManifest

DEFAULT_MIN_AGREEMENT = 0.97
QUALITY_KEY = "driving_agreement"


def combo_name(vision_precision: str, decoder_quant: str) -> str:
    return f"{vision_precision}+{decoder_quant}"


def recorded_agreement(manifest: BundleManifest) -> dict[str, float]:
    """combination -> agreement with the reference, as recorded (empty when never measured)."""
    record = manifest.quality.get(QUALITY_KEY) or {}
    return {k: float(v) for k, v in (record.get("agreement") or {}).items() if v is not None}


def agreement_warning(manifest: BundleManifest, vision_precision: str, decoder_quant: str,
                      threshold: float = DEFAULT_MIN_AGREEMENT) -> str | None:
    """One line when the combination's recorded agreement is under `threshold`, else None."""
    combo = combo_name(vision_precision, decoder_quant)
    value = recorded_agreement(manifest).get(combo)
    if value is None or value >= threshold:
        return None
    record = manifest.quality[QUALITY_KEY]
    return (f"{combo} agrees with {record.get('reference', 'the reference')} on {value:.1%} of "
            f"{record.get('cycles', '?')} labelled cycles, under the {threshold:.0%} gate: "
            f"quantisation changes this bundle's decisions")
