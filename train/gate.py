"""Record a bundle's driving agreement in its manifest, and check it against a gate.

    record_agreement(bundle, scenes)   # edge eval --record; the built-in bundle's build
    gate_failures(figures, 0.97)       # edge eval --gate 0.97

The agreement of a precision combination is the share of lock-step cycles on labelled scenes
whose action equals the reference combination's (train.eval). It is recorded for the
combination the runtime picks by default (the most quantised one) unless others are named, in
`manifest.quality["driving_agreement"]` with the eval report as reports/eval.json (hashed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from edge.manifest import add_file, load_bundle, write_manifest
from edge.quality import DEFAULT_MIN_AGREEMENT, QUALITY_KEY
from train.recipe import Recipe

REPORT_PATH = "reports/eval.json"
# A small set of labelled scenes for bundles built from a checkpoint trained on the built-in
# scenarios: two scenes of the validation seed, cut to 6 s (the held-out seeds stay unseen).
GATE_SCENES = Recipe("gate", seeds=(500,), variants=("dusk",), scenarios=("red_light", "cyclist_nudge"),
                     overrides={"duration_s": 6.0})


def shipped_combo(bundle: Path | str) -> str:
    """The least precise combination of the bundle: what the runtime runs when left to choose."""
    from train.eval import bundle_combos

    manifest, _ = load_bundle(bundle, verify_hashes=False)
    return bundle_combos(manifest)[-1].name


def record_agreement(bundle: Path | str, scenes_root: Path | str, *, combos: list[str] | None = None,
                     max_scenes: int | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Evaluate the bundle on the scenes and store the agreement figures in it; returns the record."""
    from train.eval import evaluate

    report = evaluate(bundle, scenes_root, None, combos=combos or [shipped_combo(bundle)], max_scenes=max_scenes,
                      progress=progress)
    manifest, bundle_dir = load_bundle(bundle, verify_hashes=False)
    record = {
        "reference": report["reference"],
        "agreement": {name.split(" vs ")[0]: value for name, value in report["agreement"].items()},
        "accuracy": {name: figures["accuracy"] for name, figures in report["precisions"].items()},
        "cycles": min((d["cycles"] for d in report["agreement_detail"].values()), default=0),
        "scenes": len(report["scenes"]),
        "report": REPORT_PATH,
    }
    target = bundle_dir / REPORT_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2) + "\n")
    manifest.reports["eval"] = REPORT_PATH
    manifest.quality[QUALITY_KEY] = record
    add_file(manifest, bundle_dir, REPORT_PATH)
    write_manifest(bundle_dir, manifest)
    return record


def gate_failures(agreement: dict[str, float | None], threshold: float = DEFAULT_MIN_AGREEMENT) -> list[str]:
    """One line per combination whose agreement is under the threshold (or was not measurable)."""
    out = []
    for combo, value in agreement.items():
        if value is None:
            out.append(f"{combo}: no cycles in common with the reference, agreement unknown")
        elif value < threshold:
            out.append(f"{combo}: agreement {value:.1%} < {threshold:.1%}")
    return out
