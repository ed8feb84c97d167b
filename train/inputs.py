"""Examples -> the model's inputs: prompt and answer tokenised (loss on the answer only, the
action's tokens weighted up), right-padded batches, and the clips' video inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from train.dataset import ClipDataset, Example

VIDEO_TOKEN_TYPE = 2  # mm_token_type_ids: 0 text, 1 image, 2 video
IGNORE = -100


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
