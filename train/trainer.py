"""Teacher-forced training of the tiny Qwen3-VL-MoE on the runtime's prompt -> advice JSON.

The model keeps export.tiny's "tiny" dimensions and starts from `make_tiny_checkpoint(seed)`, so
the trained checkpoint goes through `edge export bundle` unchanged. Each step draws a batch of
clips (class-balanced: rare actions such as pull_over would otherwise be drowned by cruising),
runs transformers' own forward (its vision tower on the runtime's pixel_values, its M-RoPE for a
video with timestamps) and takes cross-entropy on the answer tokens only; the tokens that spell the
meta-action get a larger weight because the action is what the planner acts on.

Reproducible: torch.manual_seed + numpy Generator(seed) for the batch order,
torch.use_deterministic_algorithms(True) and a fixed thread count; a fixed --steps gives the same
weights on the same machine type (a --minutes cap is recorded when it cut the run short).

This module composes the steps: train.config (the options), train.batches (which clips each step
sees), train.inputs (tokens and video inputs), train.vision_phase and train.decoder_phase (the two
phases), train.speedups (cheaper steps, same function) and train.provenance (training.json).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from train.batches import batch_plan
from train.config import TrainConfig, TrainResult
from train.dataset import ClipDataset
from train.decoder_phase import freeze_vision, teacher_forcing
from train.inputs import encode_example
from train.progress import PhaseLog, chain
from train.provenance import (
    TRAINING_JSON,
    TRAINING_SCENES_JSON,
    scene_list,
    training_record,
    warm_start_record,
)
from train.speedups import MatmulPatchEmbed
from train.vision_phase import VisionCapture, make_aux_head, pretrain_vision


def set_determinism(seed: int, threads: int) -> None:
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)


def load_start_model(init_dir: Path, experts_implementation: str):
    import torch
    from transformers import AutoTokenizer, Qwen3VLMoeForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(init_dir)
    model = Qwen3VLMoeForConditionalGeneration.from_pretrained(
        init_dir, dtype=torch.float32, experts_implementation=experts_implementation)
    return tokenizer, model


def train_model(model, tokenizer, dataset: ClipDataset, config: TrainConfig,
                progress: bool = True, on_step: Callable[[int, float], None] | None = None,
                log: Callable[[str], None] | None = None) -> TrainResult:
    """Run the optimisation in place on `model`; returns the loss curve. `progress` draws bars;
    `log` (for logs, where bars are off) gets a plain line every tenth of each phase."""
    patch_embed = MatmulPatchEmbed(model.model.visual) if config.patch_embed_as_matmul else contextlib.nullcontext()
    with patch_embed:
        return _optimise(model, tokenizer, dataset, config, progress, on_step, log)


def _optimise(model, tokenizer, dataset: ClipDataset, config: TrainConfig, progress: bool,
              on_step: Callable[[int, float], None] | None, log: Callable[[str], None] | None) -> TrainResult:
    """Phase 1 (vision tower + auxiliary head), then phase 2 (teacher forcing)."""
    set_determinism(config.seed, config.threads)
    model.train()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.convert_tokens_to_ids(
        "<|endoftext|>")
    encoded = [encode_example(tokenizer, ex, config.action_weight) for ex in dataset.examples]
    plan = batch_plan(dataset, config)
    head = None
    if config.aux_weight > 0 or config.vision_steps > 0:
        head = make_aux_head(model.config.vision_config.out_hidden_size * (1 + len(
            model.config.vision_config.deepstack_visual_indexes)))
    started = time.monotonic()
    vision_losses: list[float] = []
    if config.vision_steps > 0:
        vision_log = PhaseLog("vision", config.vision_steps, log, started) if log else None
        vision_losses = pretrain_vision(model, head, dataset, config, progress, on_step=vision_log)
        model.train()
    on_step = chain(on_step, PhaseLog("decoder", config.steps, log, started) if log else None)
    frozen = freeze_vision(model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    aux = None
    if config.aux_weight > 0 and not frozen:  # the tower trains on in phase 2: so does its auxiliary head
        aux = (VisionCapture(model.model.visual), head)
        params = params + list(head.parameters())
    losses, stopped_early = teacher_forcing(model, dataset, config, plan, encoded, pad_id, aux, params, started,
                                            progress, on_step)
    if aux is not None:
        aux[0].close()
    for p in model.model.visual.parameters():
        p.requires_grad_(True)
    model.eval()
    return TrainResult(losses, len(losses), time.monotonic() - started, stopped_early, vision_losses=vision_losses)


def save_checkpoint(model, out_dir: Path, init_seed: int, training: dict) -> Path:
    """The trained weights as a bf16 checkpoint in export.tiny's file layout (+ training.json)."""
    import torch

    from export.tiny import _write_safetensors, make_tiny_checkpoint

    out_dir = Path(out_dir)
    # Config, tokenizer, generation and processor files exactly as the tiny preset writes them.
    make_tiny_checkpoint(out_dir, seed=init_seed, preset="tiny", dtype="bfloat16")
    (out_dir / "tiny_checkpoint.json").unlink(missing_ok=True)  # the weights are no longer the random init
    state = {name: t.detach().to(torch.bfloat16).contiguous() for name, t in model.state_dict().items()}
    bad = [name for name, t in state.items() if not torch.isfinite(t.float()).all()]
    if bad:
        raise RuntimeError(f"training produced non-finite weights in {bad[:5]}")
    _write_safetensors(out_dir, state, None)
    (out_dir / TRAINING_JSON).write_text(json.dumps(training, indent=2, sort_keys=True) + "\n")
    return out_dir


def _start_model(config: TrainConfig) -> tuple[dict, object, object]:
    """(what training starts from, for training.json; tokenizer; model): a trained checkpoint to
    fine-tune, or export.tiny's random weights of `init_seed`."""
    from export.tiny import make_tiny_checkpoint

    if config.init_checkpoint is not None:
        init_record = warm_start_record(Path(config.init_checkpoint))
        tokenizer, model = load_start_model(Path(config.init_checkpoint), config.experts_implementation)
        return init_record, tokenizer, model
    init_record = {"preset": "tiny", "seed": config.init_seed, "maker": "export.tiny.make_tiny_checkpoint"}
    with tempfile.TemporaryDirectory(prefix="edge-train-init-") as tmp:
        init = make_tiny_checkpoint(Path(tmp) / "init", seed=config.init_seed, preset="tiny")
        tokenizer, model = load_start_model(init, config.experts_implementation)
    return init_record, tokenizer, model


def train(scenes: Path, out: Path, config: TrainConfig, cache_dir: Path | None = None, progress: bool = True,
          command: list[str] | None = None, recipe: dict | None = None,
          log: Callable[[str], None] | None = None) -> tuple[Path, TrainResult]:
    """The whole `edge train`: dataset -> start weights -> optimisation -> bf16 checkpoint + training.json."""
    from train.dataset import load_dataset
    from train.mirror import with_mirrored_clips

    out = Path(out)
    # Checked first: a refusal after a quarter of an hour of training would waste it.
    if out.exists() and any(out.iterdir()) and not (out / TRAINING_JSON).is_file():
        raise FileExistsError(f"{out} is not empty and is not an `edge train` checkpoint; refusing to replace it")
    set_determinism(config.seed, config.threads)

    def show(i: int, n: int, name: str) -> None:
        if progress and name:
            print(f"\rcaching frames {i + 1}/{n}: {name:60s}", end="", file=sys.stderr, flush=True)
        elif progress:
            print(file=sys.stderr)

    dataset = with_mirrored_clips(load_dataset(scenes, cache_dir, progress=show), config.mirror_scenarios)
    if progress:
        mirrors = sum(ex.mirror_of is not None for ex in dataset.examples)
        print(f"{len(dataset.examples)} clips ({mirrors} mirrored) from {len(dataset.scenes)} scenes; "
              f"actions {dataset.action_counts()}",
              file=sys.stderr)
    init_record, tokenizer, model = _start_model(config)
    result = train_model(model, tokenizer, dataset, config, progress=progress, log=log)
    if command is None:
        command = ["edge", "train", "--scenes", str(scenes), "--out", str(out), "--seed", str(config.seed),
                   "--steps", str(config.steps)]
    training = training_record(config, result, dataset, init_record, command, recipe)
    for stale in out.glob("*") if out.is_dir() else []:
        if stale.is_file():
            stale.unlink()
        else:
            shutil.rmtree(stale)
    save_checkpoint(model, out, config.init_seed, training)
    (out / TRAINING_SCENES_JSON).write_text(json.dumps(scene_list(dataset), indent=1, sort_keys=True) + "\n")
    return out, result
