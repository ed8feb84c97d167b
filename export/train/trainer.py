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
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from export.train.dataset import ClipDataset, Example

TRAINING_JSON = "training.json"
VIDEO_TOKEN_TYPE = 2  # mm_token_type_ids: 0 text, 1 image, 2 video
IGNORE = -100


@dataclass
class TrainConfig:
    seed: int = 0  # batch order and torch RNG
    init_seed: int = 0  # make_tiny_checkpoint seed of the starting weights
    steps: int = 400
    batch_size: int = 8
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    action_weight: float = 4.0  # loss weight of the tokens that spell the meta-action
    balance: float = 0.5  # sample weight ~ count(action) ** -balance (0: uniform over clips)
    threads: int = 2
    max_minutes: float | None = None
    experts_implementation: str = "eager"


@dataclass
class TrainResult:
    losses: list[float]
    steps_done: int
    seconds: float
    stopped_early: bool
    state: dict = field(repr=False, default_factory=dict)


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------
def set_determinism(seed: int, threads: int) -> None:
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# tokenised examples
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    labels: list[int]
    weights: list[float]


def encode_example(tokenizer, example: Example, action_weight: float) -> Encoded:
    """Prompt and answer are tokenised separately (the runtime feeds the prompt and then generates
    the answer token by token); loss only on the answer."""
    prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    enc = tokenizer(example.target, add_special_tokens=False, return_offsets_mapping=True)
    answer, offsets = enc["input_ids"], enc["offset_mapping"]
    # Character span of the action's value: {"action":"<value>",...
    start = example.target.index('"action":"') + len('"action":"')
    end = example.target.index('"', start)
    weights = [action_weight if (a < end and b > start) else 1.0 for a, b in offsets]
    return Encoded(prompt + answer, [IGNORE] * len(prompt) + answer, [0.0] * len(prompt) + weights)


def collate(dataset: ClipDataset, batch: list[Example], encoded: list[Encoded], video_token_id: int,
            pad_token_id: int) -> dict:
    """Right-padded batch in transformers' inputs (video placeholders typed 2 in mm_token_type_ids)."""
    import torch

    length = max(len(e.ids) for e in encoded)
    n = len(batch)
    ids = torch.full((n, length), pad_token_id, dtype=torch.long)
    labels = torch.full((n, length), IGNORE, dtype=torch.long)
    weights = torch.zeros((n, length), dtype=torch.float32)
    mask = torch.zeros((n, length), dtype=torch.long)
    for row, enc in enumerate(encoded):
        k = len(enc.ids)
        ids[row, :k] = torch.tensor(enc.ids)
        labels[row, :k] = torch.tensor(enc.labels)
        weights[row, :k] = torch.tensor(enc.weights)
        mask[row, :k] = 1
    types = (ids == video_token_id).long() * VIDEO_TOKEN_TYPE
    profile = dataset.sampling.profile
    pixels = torch.from_numpy(np.concatenate([dataset.pixel_values(ex) for ex in batch]))
    grid = torch.tensor([[profile.frame_pairs, profile.grid_h, profile.grid_w]] * n)
    return {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": types, "pixel_values_videos": pixels,
            "video_grid_thw": grid, "labels": labels, "weights": weights}


def weighted_answer_loss(logits, labels, weights):
    """Weighted mean cross-entropy of next-token predictions on answer tokens."""
    import torch

    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    w = weights[:, 1:]
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                           ignore_index=IGNORE, reduction="none").view_as(w)
    return (ce * w).sum() / w.sum()


# ---------------------------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------------------------
def sample_weights(dataset: ClipDataset, balance: float) -> np.ndarray:
    counts = dataset.action_counts()
    w = np.array([counts[ex.action.value] ** -balance for ex in dataset.examples], dtype=np.float64)
    return w / w.sum()


def batch_plan(dataset: ClipDataset, config: TrainConfig) -> list[list[int]]:
    """Every step's example indices, fixed by the seed before training starts."""
    rng = np.random.default_rng(config.seed)
    p = sample_weights(dataset, config.balance)
    return [rng.choice(len(dataset.examples), size=config.batch_size, replace=False, p=p).tolist()
            for _ in range(config.steps)]


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    import math

    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
def load_start_model(init_dir: Path, experts_implementation: str):
    import torch
    from transformers import AutoTokenizer, Qwen3VLMoeForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(init_dir)
    model = Qwen3VLMoeForConditionalGeneration.from_pretrained(
        init_dir, dtype=torch.float32, experts_implementation=experts_implementation)
    return tokenizer, model


def train_model(model, tokenizer, dataset: ClipDataset, config: TrainConfig,
                progress: bool = True, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Run the optimisation in place on `model`; returns the loss curve."""
    import torch
    from tqdm import tqdm

    set_determinism(config.seed, config.threads)
    model.train()
    video_id = model.config.video_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.convert_tokens_to_ids(
        "<|endoftext|>")
    encoded = [encode_example(tokenizer, ex, config.action_weight) for ex in dataset.examples]
    plan = batch_plan(dataset, config)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98))
    losses: list[float] = []
    started = time.monotonic()
    stopped_early = False
    bar = tqdm(total=config.steps, desc="train", unit="step", disable=not progress, dynamic_ncols=True)
    ema = None
    for step, indices in enumerate(plan):
        if config.max_minutes is not None and time.monotonic() - started > config.max_minutes * 60:
            stopped_early = True
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        batch = [dataset.examples[i] for i in indices]
        inputs = collate(dataset, batch, [encoded[i] for i in indices], video_id, pad_id)
        labels, weights = inputs.pop("labels"), inputs.pop("weights")
        out = model(**inputs)
        loss = weighted_answer_loss(out.logits, labels, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        value = float(loss.detach())
        losses.append(value)
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        bar.set_postfix(loss=f"{value:.3f}", ema=f"{ema:.3f}", lr=f"{lr_at(step, config):.1e}")
        bar.update(1)
        if on_step is not None:
            on_step(step, value)
    bar.close()
    model.eval()
    return TrainResult(losses, len(losses), time.monotonic() - started, stopped_early)


# ---------------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------------
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


def tool_versions() -> dict[str, str]:
    import importlib.metadata

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "numpy", "opencv-python-headless", "opencv-python", "tokenizers"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def train(scenes: Path, out: Path, config: TrainConfig, cache_dir: Path | None = None, progress: bool = True,
          command: list[str] | None = None, recipe: dict | None = None) -> tuple[Path, TrainResult]:
    """The whole `edge train`: dataset -> start weights -> optimisation -> bf16 checkpoint + training.json."""
    from export.tiny import make_tiny_checkpoint
    from export.train.dataset import load_dataset

    set_determinism(config.seed, config.threads)

    def show(i: int, n: int, name: str) -> None:
        if progress and name:
            print(f"\rcaching frames {i + 1}/{n}: {name:60s}", end="", file=sys.stderr, flush=True)
        elif progress:
            print(file=sys.stderr)

    dataset = load_dataset(scenes, cache_dir, progress=show)
    if progress:
        print(f"{len(dataset.examples)} clips from {len(dataset.scenes)} scenes; actions {dataset.action_counts()}",
              file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="edge-train-init-") as tmp:
        init = make_tiny_checkpoint(Path(tmp) / "init", seed=config.init_seed, preset="tiny")
        tokenizer, model = load_start_model(init, config.experts_implementation)
    result = train_model(model, tokenizer, dataset, config, progress=progress)
    training = {
        "command": command if command is not None else ["edge", "train", "--scenes", str(scenes), "--out", str(out),
                                                          "--seed", str(config.seed), "--steps", str(config.steps)],
        "seed": config.seed,
        "config": asdict(config),
        "init": {"preset": "tiny", "seed": config.init_seed, "maker": "export.tiny.make_tiny_checkpoint"},
        "data": {
            "recipe": recipe,
            "sampling": dataset.sampling.to_json(),
            "scenes": [{"folder": s.rel, "scenario": s.scenario, "seed": s.seed, "variant": s.variant,
                        "sha256": fp} for s, fp in zip(dataset.scenes, dataset.fingerprints, strict=True)],
            "clips": len(dataset.examples),
            "actions": dataset.action_counts(),
            "target": "edge.grammar.format_advice_json(label advice, short rationale) + <|im_end|>",
        },
        "result": {"steps_done": result.steps_done, "stopped_early": result.stopped_early,
                   "seconds": round(result.seconds, 1),
                   "loss_first": result.losses[0] if result.losses else None,
                   "loss_last_20_mean": float(np.mean(result.losses[-20:])) if result.losses else None},
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": config.threads},
        "tools": tool_versions(),
    }
    if out.exists() and any(out.iterdir()) and not (out / TRAINING_JSON).is_file() and not (out / "config.json").is_file():
        raise FileExistsError(f"{out} is not empty and is not a checkpoint; refusing to write into it")
    for stale in out.glob("*") if out.is_dir() else []:
        if stale.is_file():
            stale.unlink()
        else:
            shutil.rmtree(stale)
    save_checkpoint(model, out, config.init_seed, training)
    return out, result
