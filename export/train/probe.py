"""A quick in-training check of the decision: greedy action from transformers, no runtime.

The runtime's verdict needs a bundle and the replay (`edge eval`); during development a faster
proxy is useful: feed the prompt plus the answer's fixed opening `{"action":"`, decode greedily
until the closing quote, and compare with the label's accepted actions.
"""

from __future__ import annotations

from collections.abc import Sequence

from export.train.dataset import ClipDataset, Example
from export.train.trainer import VIDEO_TOKEN_TYPE

ANSWER_OPENING = '{"action":"'


def greedy_actions(model, tokenizer, dataset: ClipDataset, examples: Sequence[Example], max_new: int = 8,
                   batch_size: int = 8) -> list[str]:
    import numpy as np
    import torch

    profile = dataset.sampling.profile
    video_id = model.config.video_token_id
    quote = tokenizer('"', add_special_tokens=False)["input_ids"]
    out: list[str] = []
    model.eval()
    for start in range(0, len(examples), batch_size):
        batch = list(examples[start:start + batch_size])
        seqs = [tokenizer(ex.prompt + ANSWER_OPENING, add_special_tokens=False)["input_ids"] for ex in batch]
        # Left padding so every row's next token comes at the same position.
        length = max(len(s) for s in seqs)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (length - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (length - len(s)) + [1] * len(s) for s in seqs])
        types = (ids == video_id).long() * VIDEO_TOKEN_TYPE
        pixels = torch.from_numpy(np.concatenate([dataset.pixel_values(ex) for ex in batch]))
        grid = torch.tensor([[profile.frame_pairs, profile.grid_h, profile.grid_w]] * len(batch))
        model.generation_config.eos_token_id = None
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, mm_token_type_ids=types,
                                 pixel_values_videos=pixels, video_grid_thw=grid, max_new_tokens=max_new,
                                 do_sample=False, pad_token_id=pad)
        for row in gen[:, length:].tolist():
            text = tokenizer.decode(row)
            out.append(text.split('"', 1)[0] if quote else text)
    return out


def action_accuracy(model, tokenizer, dataset: ClipDataset, examples: Sequence[Example]) -> dict:
    predicted = greedy_actions(model, tokenizer, dataset, examples)
    hits = [p in {a.value for a in ex.accepted} for p, ex in zip(predicted, examples, strict=True)]
    primary = [p == ex.action.value for p, ex in zip(predicted, examples, strict=True)]
    return {"n": len(examples), "accuracy": sum(hits) / max(1, len(hits)),
            "primary_accuracy": sum(primary) / max(1, len(primary)), "predicted": predicted}
