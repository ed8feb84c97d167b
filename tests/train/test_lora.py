"""`edge train --lora` -> `edge export lora` -> `edge eval --lora` on rendered scenes and the tiny
checkpoint: the whole adapter loop with real parts (PEFT, gguf, llama.cpp, the replay loop)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("peft")
pytestmark = pytest.mark.slow

SCENE_SECONDS = 4.0


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    from sim.scene import render_scene

    root = tmp_path_factory.mktemp("lora_scenes")
    render_scene("red_light", 3, root / "red_light", duration_s=SCENE_SECONDS)
    render_scene("turn_right", 3, root / "turn_right_night", duration_s=SCENE_SECONDS, variant="night")
    return root


@pytest.fixture(scope="module")
def trained(tiny_checkpoint, scenes, tmp_path_factory) -> Path:
    import argparse

    from train.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path_factory.mktemp("adapter") / "night"
    args = parser.parse_args(["train", "--lora", "--base", str(tiny_checkpoint), "--data", str(scenes), "--out",
                              str(out), "--domain", "night", "--rank", "4", "--steps", "4", "--batch-size", "2",
                              "--lr", "0.01", "--no-progress", "--cache", str(tmp_path_factory.mktemp("cache"))])
    assert args.func(args) == 0
    return out


def test_training_writes_a_peft_adapter_with_its_record(trained, tiny_checkpoint):
    from safetensors.numpy import load_file

    record = json.loads((trained / "lora_training.json").read_text())
    assert record["name"] == "night" and record["domain"] == "night" and record["result"]["steps_done"] == 4
    assert record["base"]["path"] == str(tiny_checkpoint) and len(record["base"]["weights_sha256"]) == 64
    config = json.loads((trained / "adapter_config.json").read_text())
    assert config["r"] == 4 and "language_model" in config["target_modules"]
    tensors = load_file(str(trained / "adapter_model.safetensors"))
    assert not any("visual" in k or "experts" in k for k in tensors)  # attention of the decoder only
    # Trained: B starts at zero in PEFT and must have moved.
    assert max(abs(v).max() for k, v in tensors.items() if "lora_B" in k) > 0


def test_trained_adapter_exports_verifies_and_is_gated(trained, tiny_checkpoint, tiny_bundle, scenes, tmp_path):
    from export.lora_gguf import export_lora
    from export.lora_verify import verify_lora
    from train.lora_gate import compare, evaluate_lora

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    art = export_lora(trained, bundle)
    assert (art.name, art.domain, art.rank) == ("night", "night", 4)
    report = verify_lora(bundle, tiny_checkpoint, trained, "night", threads=2)
    assert report["passed"], report["failures"]

    gate = evaluate_lora(bundle, scenes, "night", progress=None, out=tmp_path / "gate.json")
    assert gate["precision"] == "fp32+q4_k_m"
    assert gate["domain"]["base"]["cycles"] > 0 and gate["elsewhere"]["base"]["cycles"] > 0
    assert set(gate["elsewhere"]["base"]["per_scenario"]) == {"red_light"}
    assert json.loads((tmp_path / "gate.json").read_text())["adapter"] == "night"

    # The flag itself, on the same scenes: an adapter that gets every other cycle wrong is flagged,
    # one that matches the base is not.
    from edge.runtime import load_model_parts
    from sim.replay import replay_config
    from train.dataset import find_scenes
    from train.eval import run_scene

    config = replay_config(bundle, overrides=["vision.backend='onnxruntime'"])
    models = load_model_parts(config)
    try:
        base = [run_scene(bundle, s, config, models) for s in find_scenes(scenes)]
    finally:
        models.close()
    def elsewhere(value: bool):
        return [dataclasses.replace(r, correct=[value if c is not None else None for c in r.correct])
                if r.scene.variant != "night" else r for r in base]

    assert not compare(base, base, "night")["flagged"]
    flagged = compare(elsewhere(True), elsewhere(False), "night")
    assert flagged["flagged"]
    assert flagged["flag_reasons"] == ["elsewhere 100.0% -> 0.0%", "red_light 100.0% -> 0.0%"]
    assert not compare(elsewhere(False), elsewhere(True), "night")["flagged"]  # a gain is not a cost
