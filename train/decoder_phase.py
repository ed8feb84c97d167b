"""Phase 2: teacher forcing of the whole model on prompt -> advice JSON, cross-entropy on the answer
tokens only. The tower's blocks stay frozen after phase 1 (its output mergers may train on)."""

from __future__ import annotations

import time
from collections.abc import Callable

from train.batches import lr_at
from train.config import TrainConfig
from train.dataset import ClipDataset
from train.inputs import IGNORE, Encoded, collate
from train.speedups import prefix_shared_forward, shared_prompt_prefix
from train.vision_phase import VisionCapture, aux_loss


def weighted_answer_loss(logits, labels, weights):
    """Weighted mean cross-entropy of next-token predictions on answer tokens."""
    import torch

    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    w = weights[:, 1:]
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                           ignore_index=IGNORE, reduction="none").view_as(w)
    return (ce * w).sum() / w.sum()


def freeze_vision(model, config: TrainConfig) -> bool:
    """Freeze the tower's blocks when phase 1 trained them or a warm start brings them (the mergers
    stay trainable with `train_mergers`); True when frozen."""
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
    return frozen


def make_optimizer(model, params: list, config: TrainConfig):
    """AdamW over `params`: no weight decay on biases and norms, the tower's at vision_lr_scale."""
    import torch

    vision_ids = {id(p) for p in model.model.visual.parameters()}
    groups = []
    for is_vision in (False, True):
        for decays in (True, False):
            chosen = [p for p in params if (id(p) in vision_ids) == is_vision and (p.ndim >= 2) == decays]
            if chosen:
                groups.append({"params": chosen, "weight_decay": config.weight_decay if decays else 0.0,
                               "lr_scale": config.vision_lr_scale if is_vision else 1.0})
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98))


def teacher_forcing(model, dataset: ClipDataset, config: TrainConfig, plan: list[list[int]], encoded: list[Encoded],
                    pad_id: int, aux: tuple[VisionCapture, object] | None, params: list, started: float,
                    progress: bool, on_step: Callable[[int, float], None] | None) -> tuple[list[float], bool]:
    """Run `plan`'s steps (fewer when the max_minutes cap, counted from `started`, cuts in); `aux`:
    the captured tower output and the auxiliary head when the tower trains too. Returns the losses
    and whether the cap stopped it."""
    import torch
    from tqdm import tqdm

    video_id = model.config.video_token_id
    optimizer = make_optimizer(model, params, config)
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
        if aux is not None:
            capture, head = aux
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
    return losses, stopped_early

