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

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge.messages import Hazard, MetaAction
from train.dataset import ClipDataset, Example

TRAINING_JSON = "training.json"
TRAINING_SCENES_JSON = "training_scenes.json"
VIDEO_TOKEN_TYPE = 2  # mm_token_type_ids: 0 text, 1 image, 2 video
IGNORE = -100


@dataclass
class TrainConfig:
    seed: int = 0  # batch order and torch RNG
    # Phase 2's batch order when it should differ from `seed`'s: the outcome moves by several points
    # with it alone, so a model is chosen among a few on the validation scenes.
    decoder_seed: int | None = None
    init_seed: int = 0  # make_tiny_checkpoint seed of the starting weights
    # Warm start: begin from this trained checkpoint instead of random weights (a fine-tune); the
    # vision tower's blocks stay frozen from the start, as after phase 1 (vision_steps may be 0).
    init_checkpoint: str | None = None
    steps: int = 320  # phase 2; 250 + 320 steps take 13.5-14.7 min on 2 AVX-512 cores
    batch_size: int = 16  # clips per decoder step
    lr: float = 2e-3  # best over several batch orders on the validation scenes
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    action_weight: float = 8.0  # loss weight of the tokens that spell the meta-action
    # Sample weight ~ count(group) ** -balance (0: uniform over clips). Grouping by scenario AND target
    # action leaves only the scene's state (the light's colour, not the scene) to predict the answer.
    balance: float = 1.0
    balance_by: str = "scenario_action"  # or "action"
    # Scenarios whose clips are also trained left-right mirrored (train.mirror; `--mirror lane_edge`).
    mirror_scenarios: tuple[str, ...] = ()
    # "shared": a mirrored clip shares its original's sampling weight; "own": mirrored scenes are
    # drawn as scenarios of their own.
    mirror_draws: str = "shared"
    # Multiplies each clip's weight by (number of scenarios with its action) ** -action_balance.
    action_balance: float = 0.0
    threads: int = 2
    max_minutes: float | None = None
    # Phase 1: a training-only linear head on the tower's pooled output predicts the action and the
    # hazards; it is discarded, the saved model is the plain architecture.
    aux_weight: float = 1.0
    # The head's BCE weighs each label's positives by ((1 - f) / f) ** aux_balance (f: its frequency),
    # so rare labels shape the tower too. 0: unweighted.
    aux_balance: float = 0.5
    vision_lr_scale: float = 1.0
    # Phase 1 (before the full steps): vision tower + auxiliary head only.
    vision_steps: int = 250
    vision_batch_size: int = 16
    vision_lr: float = 3e-3
    # Phase 2 keeps the tower's blocks fixed: cheaper steps, and the decoder's early noisy gradients
    # cannot wash out features that already separate the scenes.
    freeze_vision: bool = True
    # Phase 2 also trains the tower's output mergers, so the decoder's gradient shapes what each
    # visual row carries.
    train_mergers: bool = True
    # Phase 2 also trains the tower's last N blocks (at lr * vision_lr_scale) while the rest stays frozen:
    # lets a fine-tune on recorded drives move what the tower sees on real frames, not only how it is read.
    unfreeze_vision_blocks: int = 0
    # MoE experts: "eager" loops over them, "grouped_mm" runs one grouped matmul (the same function,
    # faster); "eager" keeps the shipped model's recorded command reproducible.
    experts_implementation: str = "eager"
    # Cost-only options (the same function, float rounding aside; tests check it): phase 2 runs the
    # prompt prefix all clips share once per step and attends to its cache.
    shared_prefix: bool = True
    # The patch embedding (a Conv3d with kernel == stride) as the matmul it is: a cheaper backward.
    patch_embed_as_matmul: bool = True


@dataclass
class TrainResult:
    losses: list[float]
    steps_done: int
    seconds: float
    stopped_early: bool
    vision_losses: list[float] = field(default_factory=list)


class PhaseLog:
    """Plain progress lines for logs, where bars are off: one line every tenth of a phase with the
    mean loss since the previous line and the time since training started."""

    def __init__(self, phase: str, total: int, write: Callable[[str], None], started: float):
        self.phase, self.total, self.write, self.started = phase, total, write, started
        self.every = max(1, total // 10)
        self.pending: list[float] = []

    def __call__(self, step: int, loss: float) -> None:
        self.pending.append(loss)
        if (step + 1) % self.every == 0 or step + 1 == self.total:
            minutes = (time.monotonic() - self.started) / 60
            self.write(f"{self.phase} step {step + 1}/{self.total}: loss {np.mean(self.pending):.3f} "
                       f"({minutes:.1f} min)")
            self.pending = []


def chain(*hooks: Callable[[int, float], None] | None) -> Callable[[int, float], None] | None:
    """One on_step hook that calls every given hook in turn (None when none is given)."""
    live = [h for h in hooks if h is not None]
    if not live:
        return None

    def call(step: int, loss: float) -> None:
        for hook in live:
            hook(step, loss)

    return call


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
    pixels, grid = video_inputs(dataset, batch)
    return {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": types, "pixel_values_videos": pixels,
            "video_grid_thw": grid, "labels": labels, "weights": weights}


def video_inputs(dataset: ClipDataset, batch: Sequence[Example]):
    """The clips' encoder input (pixel rows, as the runtime feeds its encoder) and their video_grid_thw."""
    import torch

    profile = dataset.sampling.profile
    pixels = torch.from_numpy(np.concatenate([dataset.pixel_values(ex) for ex in batch]))
    grid = torch.tensor([[profile.frame_pairs, profile.grid_h, profile.grid_w]] * len(batch))
    return pixels, grid


def shared_prompt_prefix(encoded: list[Encoded], video_token_id: int) -> int:
    """How many leading prompt tokens every example shares, stopping before the first video token
    (the visual rows differ per clip from there on)."""
    first = encoded[0].ids
    length = first.index(video_token_id) if video_token_id in first else len(first)
    for enc in encoded[1:]:
        k = 0
        while k < length and k < len(enc.ids) and enc.ids[k] == first[k]:
            k += 1
        length = k
    return length


def prefix_shared_forward(model, inputs: dict, prefix_len: int):
    """transformers' forward of a batch whose rows all start with the same `prefix_len` tokens,
    with that prefix computed once: a batch-1 pass fills a KV cache that every row then attends to
    (its gradient sums over the rows, as the per-row forward's would). Positions come from the
    full sequences' M-RoPE index, so the rest sees exactly the positions it would have had.
    Returns the logits of positions prefix_len.. (the prefix's own logits carry no loss)."""
    from transformers import DynamicCache

    ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["mm_token_type_ids"]
    positions, _ = model.model.get_rope_index(ids, mm_token_type_ids=types, video_grid_thw=inputs["video_grid_thw"],
                                              attention_mask=mask)
    cache = DynamicCache(config=model.config)
    model.model(input_ids=ids[:1, :prefix_len], attention_mask=mask[:1, :prefix_len],
                position_ids=positions[:, :1, :prefix_len], cache=cache, use_cache=True)
    rows = ids.shape[0]
    for layer in cache.layers:
        layer.keys = layer.keys.expand(rows, *layer.keys.shape[1:])
        layer.values = layer.values.expand(rows, *layer.values.shape[1:])
    out = model(input_ids=ids[:, prefix_len:], attention_mask=mask, position_ids=positions[:, :, prefix_len:],
                cache=cache, use_cache=False, pixel_values_videos=inputs["pixel_values_videos"],
                video_grid_thw=inputs["video_grid_thw"], mm_token_type_ids=types[:, prefix_len:])
    return out.logits


class MatmulPatchEmbed:
    """While active, the vision tower's patch embedding (Conv3d, kernel == stride) runs as the
    matmul it is: same weights, same function (float rounding aside), a far cheaper backward."""

    def __init__(self, visual):
        self.embed = visual.patch_embed

    def __enter__(self) -> MatmulPatchEmbed:
        import torch

        proj = self.embed.proj

        def forward(hidden_states):
            weight = proj.weight.view(proj.out_channels, -1)
            return torch.nn.functional.linear(hidden_states.to(weight.dtype).view(-1, weight.shape[1]), weight,
                                              proj.bias)

        self.embed.forward = forward  # an instance attribute shadows the class's forward
        return self

    def __exit__(self, *exc) -> None:
        del self.embed.forward


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
BALANCE_GROUPS = ("scenario_action", "action")


def balance_group(dataset: ClipDataset, example: Example, balance_by: str) -> tuple[str, ...]:
    if balance_by == "action":
        return (example.action.value,)
    if balance_by == "scenario_action":
        return (dataset.scenes[example.scene].scenario, example.action.value)
    raise ValueError(f"balance_by must be one of {BALANCE_GROUPS}, not {balance_by!r}")


MIRROR_DRAWS = ("shared", "own")


def sample_weights(dataset: ClipDataset, balance: float, balance_by: str = "scenario_action",
                   action_balance: float = 0.0, mirror_draws: str = "shared") -> np.ndarray:
    """Per-clip sampling probability: count(group) ** -balance * scenarios(action) ** -action_balance,
    normalised (scenarios(action): how many scenarios have clips with that target action); counts are
    over the clips as recorded, or with mirror_draws="own" over every clip, the mirrored ones in groups
    of their own."""
    # "shared": a mirrored clip (train.mirror) is weighed as its original and shares the
    # original's weight with it: mirroring changes which way round a clip is seen, not how often it is
    # drawn. "own": the mirrored clips are groups of their own, as if the mirrored scenes were more
    # scenarios, so every answer of a mirrored scenario gets a full group's draws and inside it the
    # answers stay even (nudge_right and keep_speed of the mirrored cyclist weigh the same).
    if mirror_draws not in MIRROR_DRAWS:
        raise ValueError(f"mirror_draws must be one of {MIRROR_DRAWS}, not {mirror_draws!r}")
    own = mirror_draws == "own"
    origin = [i if ex.mirror_of is None or own else ex.mirror_of for i, ex in enumerate(dataset.examples)]
    views = Counter(origin)
    groups = {i: balance_group(dataset, dataset.examples[i], balance_by)
              + (("mirrored",) if dataset.examples[i].mirror_of is not None else ()) for i in sorted(views)}
    counts = Counter(groups.values())
    scenarios: dict[str, set[str]] = {}
    for i in groups:
        ex = dataset.examples[i]
        scenarios.setdefault(ex.action.value, set()).add(dataset.scenes[ex.scene].scenario)
    share = {i: counts[g] ** -balance * len(scenarios[dataset.examples[i].action.value]) ** -action_balance / views[i]
             for i, g in groups.items()}
    w = np.array([share[i] for i in origin], dtype=np.float64)
    return w / w.sum()


def batch_plan(dataset: ClipDataset, config: TrainConfig) -> list[list[int]]:
    """Every step's example indices, fixed by the seed before training starts."""
    rng = np.random.default_rng(config.seed if config.decoder_seed is None else config.decoder_seed)
    p = sample_weights(dataset, config.balance, config.balance_by, config.action_balance, config.mirror_draws)
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
# auxiliary vision head (training only)
# ---------------------------------------------------------------------------------------------
ACTIONS = [a.value for a in MetaAction]
HAZARDS = [h.value for h in Hazard]


class VisionCapture:
    """Keeps the vision tower's last output (merger rows + DeepStack rows) during a forward."""

    def __init__(self, visual):
        self.rows = None
        self.handle = visual.register_forward_hook(self._hook)

    def _hook(self, _module, _inputs, output) -> None:
        self.rows = visual_rows(output)

    def close(self) -> None:
        self.handle.remove()


def visual_rows(output):
    """The vision tower's output rows: merger rows with every DeepStack level's rows beside them."""
    import torch

    return torch.cat([output.pooler_output, *output.deepstack_features], dim=-1)


def pool_clips(rows, clips: int, tokens_per_clip: int):
    """[clips, 2 * width]: the mean and the max over each clip's rows (what the auxiliary head reads)."""
    import torch

    per_clip = rows.view(clips, tokens_per_clip, -1)
    return torch.cat([per_clip.mean(dim=1), per_clip.amax(dim=1)], dim=-1)


def make_aux_head(width: int):
    """Mean- and max-pooled visual rows -> action logits and hazard logits."""
    import torch

    return torch.nn.Linear(2 * width, len(ACTIONS) + len(HAZARDS))


def aux_targets(batch: list[Example]):
    """Multi-hot: every action the label accepts, every hazard it names."""
    import torch

    target = torch.zeros(len(batch), len(ACTIONS) + len(HAZARDS))
    for row, ex in enumerate(batch):
        for action in ex.accepted:
            target[row, ACTIONS.index(action.value)] = 1.0
        for hazard in ex.hazards:
            target[row, len(ACTIONS) + HAZARDS.index(hazard)] = 1.0
    return target


def aux_pos_weight(dataset: ClipDataset, p: np.ndarray, balance: float, cap: float = 50.0):
    """Per-label positive weight ((1 - f) / f) ** balance (capped), f = the label's frequency under
    the sampling distribution `p`; None when balance is 0."""
    import torch

    if balance == 0:
        return None
    targets = aux_targets(dataset.examples).numpy()
    freq = np.clip(p @ targets, 1e-6, 1 - 1e-6)
    return torch.tensor(np.minimum(((1 - freq) / freq) ** balance, cap), dtype=torch.float32)


def aux_loss(head, rows, batch: list[Example], tokens_per_clip: int, pos_weight=None):
    import torch

    pooled = pool_clips(rows, len(batch), tokens_per_clip)
    return torch.nn.functional.binary_cross_entropy_with_logits(head(pooled), aux_targets(batch),
                                                                pos_weight=pos_weight)


def pretrain_vision(model, head, dataset: ClipDataset, config: TrainConfig, progress: bool,
                    on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Phase 1: the vision tower alone with the auxiliary head (a fraction of a full step's cost),
    so that the visual rows already separate the situations when the decoder starts reading them."""
    import torch
    from tqdm import tqdm

    visual = model.model.visual
    visual.train()
    profile = dataset.sampling.profile
    params = list(visual.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.vision_lr, weight_decay=config.weight_decay, betas=(0.9, 0.98))
    rng = np.random.default_rng([config.seed, 1])
    p = sample_weights(dataset, config.balance, config.balance_by, config.action_balance, config.mirror_draws)
    pos_weight = aux_pos_weight(dataset, p, config.aux_balance)
    schedule = TrainConfig(steps=config.vision_steps, lr=config.vision_lr, warmup_steps=config.warmup_steps,
                           min_lr_ratio=config.min_lr_ratio)
    losses = []
    bar = tqdm(total=config.vision_steps, desc="vision", unit="step", disable=not progress, dynamic_ncols=True)
    for step in range(config.vision_steps):
        indices = rng.choice(len(dataset.examples), size=config.vision_batch_size, replace=False, p=p)
        batch = [dataset.examples[i] for i in indices]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, schedule)
        pixels, grid = video_inputs(dataset, batch)
        rows = visual_rows(visual(pixels, grid_thw=grid, return_dict=True))
        loss = aux_loss(head, rows, batch, profile.tokens_per_clip, pos_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        bar.update(1)
        if on_step is not None:
            on_step(step, losses[-1])
    bar.close()
    return losses


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
    import torch
    from tqdm import tqdm

    set_determinism(config.seed, config.threads)
    model.train()
    video_id = model.config.video_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.convert_tokens_to_ids(
        "<|endoftext|>")
    encoded = [encode_example(tokenizer, ex, config.action_weight) for ex in dataset.examples]
    plan = batch_plan(dataset, config)
    vision_ids = {id(p) for p in model.model.visual.parameters()}
    capture = head = None
    vision_losses: list[float] = []
    if config.aux_weight > 0 or config.vision_steps > 0:
        head = make_aux_head(model.config.vision_config.out_hidden_size * (1 + len(
            model.config.vision_config.deepstack_visual_indexes)))
    started = time.monotonic()
    if config.vision_steps > 0:
        vision_log = PhaseLog("vision", config.vision_steps, log, started) if log else None
        vision_losses = pretrain_vision(model, head, dataset, config, progress, on_step=vision_log)
        model.train()
    on_step = chain(on_step, PhaseLog("decoder", config.steps, log, started) if log else None)
    frozen = config.freeze_vision and (config.vision_steps > 0 or config.init_checkpoint is not None)
    if frozen:
        for p in model.model.visual.parameters():
            p.requires_grad_(False)
        if config.train_mergers:
            for module in (model.model.visual.merger, *model.model.visual.deepstack_merger_list):
                module.requires_grad_(True)
        if config.unfreeze_vision_blocks > 0:
            for block in model.model.visual.blocks[-config.unfreeze_vision_blocks:]:
                block.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    if config.aux_weight > 0 and not frozen:
        capture = VisionCapture(model.model.visual)
        params = params + list(head.parameters())
    groups = []
    for is_vision in (False, True):
        for decays in (True, False):
            chosen = [p for p in params if (id(p) in vision_ids) == is_vision and (p.ndim >= 2) == decays]
            if chosen:
                groups.append({"params": chosen, "weight_decay": config.weight_decay if decays else 0.0,
                               "lr_scale": config.vision_lr_scale if is_vision else 1.0})
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98))
    prefix_len = shared_prompt_prefix(encoded, video_id) if config.shared_prefix else 0
    losses: list[float] = []
    stopped_early = False
    bar = tqdm(total=config.steps, desc="train", unit="step", disable=not progress, dynamic_ncols=True)
    ema = None
    for step, indices in enumerate(plan):
        if config.max_minutes is not None and time.monotonic() - started > config.max_minutes * 60:
            stopped_early = True
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config) * group["lr_scale"]
        batch = [dataset.examples[i] for i in indices]
        inputs = collate(dataset, batch, [encoded[i] for i in indices], video_id, pad_id)
        labels, weights = inputs.pop("labels"), inputs.pop("weights")
        if prefix_len:
            logits = prefix_shared_forward(model, inputs, prefix_len)
            loss = weighted_answer_loss(logits, labels[:, prefix_len:], weights[:, prefix_len:])
        else:
            loss = weighted_answer_loss(model(**inputs).logits, labels, weights)
        if capture is not None:
            loss = loss + config.aux_weight * aux_loss(head, capture.rows, batch,
                                                       dataset.sampling.profile.tokens_per_clip)
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
    if capture is not None:
        capture.close()
    for p in model.model.visual.parameters():
        p.requires_grad_(True)
    model.eval()
    return TrainResult(losses, len(losses), time.monotonic() - started, stopped_early, vision_losses=vision_losses)


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


def train(scenes: Path, out: Path, config: TrainConfig, cache_dir: Path | None = None, progress: bool = True,
          command: list[str] | None = None, recipe: dict | None = None,
          log: Callable[[str], None] | None = None) -> tuple[Path, TrainResult]:
    """The whole `edge train`: dataset -> start weights -> optimisation -> bf16 checkpoint + training.json."""
    from export.tiny import make_tiny_checkpoint
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
    mirrors = sum(ex.mirror_of is not None for ex in dataset.examples)
    if progress:
        print(f"{len(dataset.examples)} clips ({mirrors} mirrored) from {len(dataset.scenes)} scenes; "
              f"actions {dataset.action_counts()}",
              file=sys.stderr)
    if config.init_checkpoint is not None:
        init_record = warm_start_record(Path(config.init_checkpoint))
        tokenizer, model = load_start_model(Path(config.init_checkpoint), config.experts_implementation)
    else:
        init_record = {"preset": "tiny", "seed": config.init_seed, "maker": "export.tiny.make_tiny_checkpoint"}
        with tempfile.TemporaryDirectory(prefix="edge-train-init-") as tmp:
            init = make_tiny_checkpoint(Path(tmp) / "init", seed=config.init_seed, preset="tiny")
            tokenizer, model = load_start_model(init, config.experts_implementation)
    result = train_model(model, tokenizer, dataset, config, progress=progress, log=log)
    scene_list = [{"folder": s.rel, "scenario": s.scenario, "seed": s.seed, "variant": s.variant, "sha256": fp}
              for s, fp in zip(dataset.scenes, dataset.fingerprints, strict=True)]
    training = {
        "command": command if command is not None else ["edge", "train", "--scenes", str(scenes), "--out", str(out),
                                                          "--seed", str(config.seed), "--steps", str(config.steps)],
        "seed": config.seed,
        "config": asdict(config),
        "init": init_record,
        "data": {
            "recipe": recipe,
            "sampling": dataset.sampling.to_json(),
            "scenes": len(dataset.scenes),
            # sha256 of training_scenes.json's list (each scene's folder, scenario, seed, variant, sha256).
            "scenes_sha256": hashlib.sha256(json.dumps(scene_list, sort_keys=True).encode()).hexdigest(),
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
    for stale in out.glob("*") if out.is_dir() else []:
        if stale.is_file():
            stale.unlink()
        else:
            shutil.rmtree(stale)
    save_checkpoint(model, out, config.init_seed, training)
    (out / TRAINING_SCENES_JSON).write_text(json.dumps(scene_list, indent=1, sort_keys=True) + "\n")
    return out, result
