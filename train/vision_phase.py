"""Phase 1: the vision tower trained alone through a training-only auxiliary head (pooled visual
rows -> action and hazard logits), so that the visual rows separate the situations before the
decoder starts reading them. The head is discarded; the saved model is the plain architecture."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.messages import Hazard, MetaAction
from train.batches import lr_at, sample_weights
from train.config import TrainConfig
from train.dataset import ClipDataset, Example
from train.inputs import video_inputs

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
