"""`edge eval --lora NAME`: a bundle's LoRA adapter against its base on labelled scenes.

Every scene is replayed in lock-step twice through the runtime loop (edge eval's replay), once on the
base decoder and once with the adapter applied (`decoder.lora`). A scene is in the adapter's domain
when its scenario or its look (variant) is the domain the manifest gives the adapter. The report has
the domain's accuracy and every other scenario's, base and adapted; the adapter is flagged when it
costs more than `max_cost` (1 point by default) on the scenes outside its domain, overall or in any
one scenario.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from edge.manifest import load_bundle
from train.dataset import Scene, find_scenes
from train.eval import SceneRun, choose_combos, run_scene, summarize

MAX_COST = 0.01


def in_domain(scene: Scene, domain: str) -> bool:
    return domain in (scene.scenario, scene.variant)


def _replay_all(bundle_dir: Path, scenes: list[Scene], overrides: list[str], combo,
                progress: Callable[[str], None] | None, label: str) -> list[SceneRun]:
    from edge.runtime import load_model_parts
    from sim.replay import replay_config

    config = replay_config(bundle_dir, vision_precision=combo.vision, decoder_quant=combo.decoder,
                           overrides=["vision.backend='onnxruntime'", *overrides])
    models = load_model_parts(config, verify_hashes=False)
    try:
        runs = []
        for i, scene in enumerate(scenes):
            runs.append(run_scene(bundle_dir, scene, config, models))
            if progress is not None:
                ok = [c for c in runs[-1].correct if c is not None]
                progress(f"[{label}] {i + 1}/{len(scenes)} {scene.rel}: {sum(ok)}/{len(ok)} correct")
        return runs
    finally:
        models.close()


def _side(runs: list[SceneRun]) -> dict:
    summary = summarize(runs) if runs else {"accuracy": None, "cycles": 0, "per_scenario": {}}
    return {"accuracy": summary["accuracy"], "cycles": summary["cycles"], "per_scenario": summary["per_scenario"]}


def compare(base: list[SceneRun], adapted: list[SceneRun], domain: str, max_cost: float = MAX_COST) -> dict:
    """Domain and elsewhere, base against adapted; `flagged` with the reasons."""
    split = {True: ([], []), False: ([], [])}
    for b, a in zip(base, adapted, strict=True):
        split[in_domain(b.scene, domain)][0].append(b)
        split[in_domain(b.scene, domain)][1].append(a)
    report = {"domain": {"base": _side(split[True][0]), "adapted": _side(split[True][1])},
              "elsewhere": {"base": _side(split[False][0]), "adapted": _side(split[False][1])}}
    reasons = []
    other_base, other_adapted = report["elsewhere"]["base"], report["elsewhere"]["adapted"]
    if other_base["accuracy"] is not None and other_base["accuracy"] - other_adapted["accuracy"] > max_cost:
        reasons.append(f"elsewhere {other_base['accuracy']:.1%} -> {other_adapted['accuracy']:.1%}")
    for scenario, before in other_base["per_scenario"].items():
        after = other_adapted["per_scenario"].get(scenario)
        if before is not None and after is not None and before - after > max_cost:
            reasons.append(f"{scenario} {before:.1%} -> {after:.1%}")
    dom_base, dom_adapted = report["domain"]["base"]["accuracy"], report["domain"]["adapted"]["accuracy"]
    report["domain_gain"] = None if dom_base is None else dom_adapted - dom_base
    report["flagged"], report["flag_reasons"], report["max_cost"] = bool(reasons), reasons, max_cost
    return report


def evaluate_lora(bundle: Path | str, scenes_root: Path | str, name: str, *, scale: float = 1.0,
                  combos: list[str] | None = None, max_scenes: int | None = None, out: Path | str | None = None,
                  max_cost: float = MAX_COST, progress: Callable[[str], None] | None = print) -> dict:
    manifest, bundle_dir = load_bundle(bundle)
    adapter = manifest.adapter(name)
    chosen, _ = choose_combos(manifest, combos)
    combo = chosen[-1]  # the one asked for, else the bundle's least precise: what ships
    scenes = find_scenes(scenes_root)[:max_scenes]
    base = _replay_all(bundle_dir, scenes, [], combo, progress, "base")
    adapted = _replay_all(bundle_dir, scenes, [f"decoder.lora=[{{name={name!r}, scale={scale}}}]"], combo, progress,
                          name)
    report = {"bench": "eval_lora", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "bundle": str(bundle_dir), "adapter": name, "scale": scale, "adapter_domain": adapter.domain,
              "precision": combo.name, "scenes": [s.rel for s in scenes],
              **compare(base, adapted, adapter.domain, max_cost)}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
    return report
