"""Which clips each step trains on: class-balanced sampling weights, the seeded batch plan, and
the learning-rate schedule."""

from __future__ import annotations

from collections import Counter

import numpy as np

from train.config import TrainConfig
from train.dataset import ClipDataset, Example

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
