"""What `edge train` is asked to do (TrainConfig, recorded whole in training.json) and what it
reports (TrainResult)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
