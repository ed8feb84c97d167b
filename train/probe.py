"""Where a trained model's misses live: in the vision tower, or in the decoder reading it.

Two verdicts on the same clips, both from transformers (no bundle, no runtime; minutes, where the
runtime's `edge eval` takes a quarter of an hour):

- decoder: feed the prompt plus the answer's fixed opening `{"action":"`, decode greedily until the
  closing quote, and check the action against the label's accepted actions - what the whole model
  decides (a close proxy of `edge eval`'s fp32 + f16 figure);
- tower: a linear classifier (softmax regression) on the frozen tower's pooled visual rows (mean and
  max over the merger and DeepStack rows, what the training's auxiliary head sees), fitted on
  training clips and scored on the probed clips - what the tower's features make separable.

A scenario where the tower's probe is right and the decoder is not is a decoder that does not read
features the tower has; where both fail, the tower does not see it. The probe has no navigation
line, so it cannot tell the turns apart: compare the two per scenario, not overall.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from train.dataset import ClipDataset, Example
from train.inputs import VIDEO_TOKEN_TYPE, video_inputs
from train.vision_phase import ACTIONS, pool_clips, visual_rows

ANSWER_OPENING = '{"action":"'


def greedy_actions(model, tokenizer, dataset: ClipDataset, examples: Sequence[Example], max_new: int = 8,
                   batch_size: int = 8) -> list[str]:
    """The action each clip's greedy answer starts with."""
    import torch

    video_id = model.config.video_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model.generation_config.eos_token_id = None  # stop on max_new only; the action ends at its quote
    out: list[str] = []
    model.eval()
    for start in range(0, len(examples), batch_size):
        batch = list(examples[start:start + batch_size])
        seqs = [tokenizer(ex.prompt + ANSWER_OPENING, add_special_tokens=False)["input_ids"] for ex in batch]
        # Left padding so every row's next token comes at the same position.
        length = max(len(s) for s in seqs)
        ids = torch.tensor([[pad] * (length - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (length - len(s)) + [1] * len(s) for s in seqs])
        types = (ids == video_id).long() * VIDEO_TOKEN_TYPE
        pixels, grid = video_inputs(dataset, batch)
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, mm_token_type_ids=types,
                                 pixel_values_videos=pixels, video_grid_thw=grid, max_new_tokens=max_new,
                                 do_sample=False, pad_token_id=pad)
        out.extend(tokenizer.decode(row).split('"', 1)[0] for row in gen[:, length:].tolist())
    return out


def tower_features(model, dataset: ClipDataset, examples: Sequence[Example], batch_size: int = 16) -> np.ndarray:
    """[clips, 2 * width]: mean and max over each clip's visual rows (merger + DeepStack outputs)."""
    import torch

    visual = model.model.visual
    visual.eval()
    features = []
    for start in range(0, len(examples), batch_size):
        batch = list(examples[start:start + batch_size])
        pixels, grid = video_inputs(dataset, batch)
        with torch.no_grad():
            rows = visual_rows(visual(pixels, grid_thw=grid, return_dict=True))
        features.append(pool_clips(rows, len(batch), dataset.sampling.profile.tokens_per_clip).numpy())
    return np.concatenate(features) if features else np.zeros((0, 0), dtype=np.float32)


def fit_linear_probe(x: np.ndarray, y: np.ndarray, classes: int, steps: int = 400, weight_decay: float = 1e-3,
                     seed: int = 0):
    """Softmax regression on standardised features, classes weighted by inverse frequency (the
    rare manoeuvres count as much as keep_speed). Returns predict(x) -> class indices."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    mean, scale = xt.mean(dim=0), xt.std(dim=0) + 1e-5
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    counts = torch.bincount(yt, minlength=classes).float()
    weight = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
    w = torch.nn.Parameter(torch.randn(xt.shape[1], classes, generator=generator) * 0.01)
    b = torch.nn.Parameter(torch.zeros(classes))
    optimizer = torch.optim.Adam([w, b], lr=1e-2, weight_decay=weight_decay)
    xs = (xt - mean) / scale
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(xs @ w + b, yt, weight=weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def predict(features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = (torch.from_numpy(np.asarray(features, dtype=np.float32)) - mean) / scale
            return (z @ w + b).argmax(dim=1).numpy()

    return predict


def stratified_sample(dataset: ClipDataset, per_scenario: int, seed: int = 0) -> list[Example]:
    """Up to `per_scenario` clips of every scenario, drawn without replacement."""
    by_scenario: dict[str, list[Example]] = defaultdict(list)
    for ex in dataset.examples:
        by_scenario[dataset.scenes[ex.scene].scenario].append(ex)
    rng = np.random.default_rng(seed)
    chosen = []
    for name in sorted(by_scenario):
        group = by_scenario[name]
        chosen += [group[i] for i in sorted(rng.choice(len(group), size=min(per_scenario, len(group)),
                                                       replace=False))]
    return chosen


def _scores(dataset: ClipDataset, examples: Sequence[Example], predicted: Sequence[str]) -> dict:
    hits: dict[str, list[bool]] = defaultdict(list)
    misses: dict[str, int] = defaultdict(int)
    for ex, action in zip(examples, predicted, strict=True):
        ok = action in {a.value for a in ex.accepted}
        hits[dataset.scenes[ex.scene].scenario].append(ok)
        if not ok:
            misses[f"{ex.action.value} -> {action}"] += 1
    every = [h for group in hits.values() for h in group]
    return {"accuracy": sum(every) / len(every) if every else None,
            "per_scenario": {name: sum(group) / len(group) for name, group in sorted(hits.items())},
            "misses": dict(sorted(misses.items(), key=lambda kv: -kv[1]))}


def probe(model, tokenizer, train_set: ClipDataset, probe_set: ClipDataset, per_scenario: int = 40,
          train_stride: int = 3, seed: int = 0) -> dict:
    """The decoder's and the tower's verdicts on a stratified sample of `probe_set`; the tower's
    linear probe is fitted on every `train_stride`-th clip of `train_set`."""
    examples = stratified_sample(probe_set, per_scenario, seed)
    fit_examples = train_set.examples[::train_stride]
    predict = fit_linear_probe(tower_features(model, train_set, fit_examples),
                               np.array([ACTIONS.index(ex.action.value) for ex in fit_examples]),
                               len(ACTIONS), seed=seed)
    tower = [ACTIONS[i] for i in predict(tower_features(model, probe_set, examples))]
    return {"clips": len(examples), "fit_clips": len(fit_examples),
            "decoder": _scores(probe_set, examples, greedy_actions(model, tokenizer, probe_set, examples)),
            "tower_linear_probe": _scores(probe_set, examples, tower)}
