"""What a trained checkpoint records about how it was made (training.json, training_scenes.json):
the command, the configuration, the start weights, the data, the result, the machine and the tools."""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict
from pathlib import Path

import numpy as np

from train.config import TrainConfig, TrainResult
from train.dataset import ClipDataset

TRAINING_JSON = "training.json"
TRAINING_SCENES_JSON = "training_scenes.json"


def training_machine(threads: int) -> dict[str, object]:
    """What decides the float rounding, so whoever re-runs the command knows whether to expect the
    same bits: the same command on another CPU (or another kernel path of torch's: AVX2, AVX512) gives
    a model of the same recipe, not the same model (docs/QUALITY.md)."""
    import torch

    from edge.benchreport import cpu_name

    return {"cpu": cpu_name(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": threads}


def tool_versions() -> dict[str, str]:
    from edge.environment import installed_versions

    dists = ("torch", "transformers", "numpy", "opencv-python-headless", "opencv-python", "tokenizers")
    return {"python": platform.python_version(), **installed_versions(dists)}


def warm_start_record(checkpoint: Path) -> dict:
    """What a fine-tune started from: the checkpoint's weights hash and its own training record."""
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not weights or not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"--init-checkpoint {checkpoint} is not a checkpoint folder (config.json + safetensors)")
    digest = hashlib.sha256()
    for path in weights:
        digest.update(path.read_bytes())
    previous = checkpoint / TRAINING_JSON
    return {"checkpoint": str(checkpoint), "weights_sha256": digest.hexdigest(),
            "training": json.loads(previous.read_text()) if previous.is_file() else None}


def scene_list(dataset: ClipDataset) -> list[dict]:
    """training_scenes.json: each scene's folder, scenario, seed, variant and sha256."""
    return [{"folder": s.rel, "scenario": s.scenario, "seed": s.seed, "variant": s.variant, "sha256": fp}
            for s, fp in zip(dataset.scenes, dataset.fingerprints, strict=True)]


def training_record(config: TrainConfig, result: TrainResult, dataset: ClipDataset, init_record: dict,
                    command: list[str], recipe: dict | None) -> dict:
    """training.json: everything needed to run the training again and to judge its outcome."""
    mirrors = sum(ex.mirror_of is not None for ex in dataset.examples)
    return {
        "command": command,
        "seed": config.seed,
        "config": asdict(config),
        "init": init_record,
        "data": {
            "recipe": recipe,
            "sampling": dataset.sampling.to_json(),
            "scenes": len(dataset.scenes),
            # sha256 of training_scenes.json's list (each scene's folder, scenario, seed, variant, sha256).
            "scenes_sha256": hashlib.sha256(json.dumps(scene_list(dataset), sort_keys=True).encode()).hexdigest(),
            "clips": len(dataset.examples),
            "mirrored_clips": mirrors,
            "actions": dataset.action_counts(),
            "target": "edge.grammar.format_advice_json(label advice, short rationale) + <|im_end|>",
        },
        "result": {"vision_steps_done": len(result.vision_losses),
                   "vision_loss_first": result.vision_losses[0] if result.vision_losses else None,
                   "vision_loss_last_20_mean": float(np.mean(result.vision_losses[-20:])) if result.vision_losses
                   else None,
                   "steps_done": result.steps_done, "stopped_early": result.stopped_early,
                   "seconds": round(result.seconds, 1),
                   "loss_first": result.losses[0] if result.losses else None,
                   "loss_last_20_mean": float(np.mean(result.losses[-20:])) if result.losses else None},
        "machine": training_machine(config.threads),
        "tools": tool_versions(),
    }
