"""A random LoRA adapter (PEFT folder) for a checkpoint's decoder attention: what tests and demos
adapt with when no trained adapter is at hand. A and B are both random: PEFT's own initialisation
(B = 0) leaves the model unchanged, which would make every check of the adapted path vacuous."""

from __future__ import annotations

import json
from pathlib import Path


def make_random_adapter(checkpoint: Path | str, out: Path | str, *, rank: int = 4, alpha: float = 8.0,
                        seed: int = 0, b_std: float = 0.05, name: str = "fog", domain: str = "fog",
                        target: str | None = None) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3VLMoeForConditionalGeneration

    from export.lora_gguf import LORA_TRAINING_JSON, TARGET_REGEX

    out = Path(out)
    torch.manual_seed(seed)
    model = Qwen3VLMoeForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=target or TARGET_REGEX,
                                                  init_lora_weights=False, lora_dropout=0.0))
    with torch.no_grad():
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                param.normal_(0.0, b_std)
    peft_model.save_pretrained(str(out))
    record = {"name": name, "domain": domain, "base": {"path": str(checkpoint)}, "random": {"seed": seed}}
    (out / LORA_TRAINING_JSON).write_text(json.dumps(record, indent=1) + "\n")
    return out
