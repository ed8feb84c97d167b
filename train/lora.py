"""`edge train --lora`: a LoRA adapter (PEFT) on the decoder's attention projections of a trained
base checkpoint, from labelled scenes, with the same samples, prompt and loss as `edge train`.

What is adapted, and why:
- the text decoder's q/k/v/o projections of every layer: llama.cpp's qwen3vlmoe graph applies a
  LoRA to exactly these (build_lora_mm), so what is trained is what the runtime runs;
- not the MoE experts: they are stacked (E, I, H) tensors in the GGUF, and llama.cpp has no LoRA
  pair for one expert's slice; an adapter on them could be trained but not shipped;
- not the vision tower or its mergers: the bundle runs them in ONNX Runtime/TensorRT, where an
  adapter would mean a new encoder export, not an adapter file.
The base weights stay frozen; only the adapter's A/B matrices are optimised (train.trainer's loop,
phase 2 only: no vision pretraining, no auxiliary head).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from export.lora_gguf import EXPORTABLE_MODULES as TARGET_MODULES
from export.lora_gguf import LORA_TRAINING_JSON, TARGET_REGEX


@dataclass(frozen=True)
class LoraTrainConfig:
    name: str = "adapter"
    domain: str = "unspecified"
    rank: int = 8
    alpha: float = 16.0
    steps: int = 60
    batch_size: int = 8
    lr: float = 2e-3
    seed: int = 0
    threads: int = 2
    max_minutes: float | None = None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def base_weights_sha256(base: Path) -> str:
    """The base checkpoint's identity: the hash of its safetensors files' hashes, by name."""
    table = sorted((p.name, _file_sha256(p)) for p in Path(base).glob("*.safetensors"))
    return hashlib.sha256(json.dumps(table).encode()).hexdigest()


def _trainer_config(config: LoraTrainConfig):
    from train.config import TrainConfig

    return TrainConfig(seed=config.seed, steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                       warmup_steps=max(1, min(20, config.steps // 5)), threads=config.threads,
                       max_minutes=config.max_minutes, vision_steps=0, aux_weight=0.0, train_mergers=False)


def train_lora(base: Path | str, data: Path | str, out: Path | str, config: LoraTrainConfig,
               cache_dir: Path | None = None, progress: bool = False, command: list[str] | None = None,
               log=None) -> tuple[Path, dict]:
    """Train the adapter and write it as a PEFT folder (+ lora_training.json). Returns (folder, record)."""
    from peft import LoraConfig, get_peft_model

    from train.dataset import load_dataset
    from train.trainer import load_start_model, set_determinism, train_model

    base, out = Path(base), Path(out)
    if not (base / "config.json").is_file():
        raise FileNotFoundError(f"{base} is not a checkpoint folder (no config.json)")
    if out.exists() and any(out.iterdir()) and not (out / LORA_TRAINING_JSON).is_file():
        raise FileExistsError(f"{out} is not empty and is not an `edge train --lora` adapter; refusing to replace it")
    set_determinism(config.seed, config.threads)
    dataset = load_dataset(Path(data), cache_dir)
    tokenizer, model = load_start_model(base, "eager")
    peft_model = get_peft_model(model, LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0,
                                                  target_modules=TARGET_REGEX, bias="none"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    started = time.monotonic()
    # The injected model itself (not the PEFT wrapper): train.trainer reaches model.model.visual.
    result = train_model(model, tokenizer, dataset, _trainer_config(config), progress=progress, log=log)
    record = {
        "name": config.name,
        "domain": config.domain,
        "command": command,
        "config": asdict(config),
        "target_modules": list(TARGET_MODULES),
        "base": {"path": str(base), "weights_sha256": base_weights_sha256(base)},
        "data": {"path": str(data), "scenes": len(dataset.scenes), "clips": len(dataset.examples),
                 "actions": dataset.action_counts()},
        "result": {"steps_done": result.steps_done, "stopped_early": result.stopped_early,
                   "seconds": round(time.monotonic() - started, 1), "trainable_parameters": trainable,
                   "loss_first": result.losses[0] if result.losses else None,
                   "loss_last_10_mean": (sum(result.losses[-10:]) / len(result.losses[-10:])) if result.losses
                   else None},
    }
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out))
    (out / LORA_TRAINING_JSON).write_text(json.dumps(record, indent=1) + "\n")
    return out, record
