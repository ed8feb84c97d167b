"""Latency budgets that change behaviour.

A cycle has a deadline (``total_ms`` from its start) and per-stage budgets. What enforcing means:

- a clip whose newest frame is older than ``max_frame_age_ms`` is dropped before encoding;
- a cycle that has no time left for decoding does not start it;
- decoding checks the clock per token and stops at its deadline;
- a cut generation that already holds its decision goes out ``late``, otherwise ``no_advice``;
- repeated misses raise the degrade level (fewer tokens, no rationale, then a longer
  interval); a run of successes lowers it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.config import BudgetConfig
from edge.messages import Verdict

STAGES = ("preprocess", "encode", "prefill", "decode", "publish")
MAX_DEGRADE_LEVEL = 2


@dataclass(frozen=True)
class DegradePolicy:
    """What each degrade level gives up to save time."""

    max_tokens: int
    with_rationale: bool
    interval_factor: float


def degrade_policy(level: int, max_tokens: int) -> DegradePolicy:
    if level <= 0:
        return DegradePolicy(max_tokens, True, 1.0)
    if level == 1:
        return DegradePolicy(max(16, max_tokens // 2), False, 1.0)
    return DegradePolicy(max(16, max_tokens // 2), False, 2.0)


def over_budget(stage_ms: dict[str, float | None], budgets: BudgetConfig) -> list[str]:
    """Stages that ran longer than their budget (``stage_ms`` keyed like StageTimings: ``encode_ms``)."""
    late = []
    for stage in STAGES:
        took = stage_ms.get(f"{stage}_ms")
        if took is not None and took > getattr(budgets, f"{stage}_ms"):
            late.append(stage)
    return late


@dataclass
class DegradeController:
    """Hysteresis on the degrade level: up after `degrade_after_misses` misses in a row, down
    after `recover_after_successes` clean cycles in a row."""

    degrade_after_misses: int
    recover_after_successes: int
    level: int = 0
    _misses: int = field(default=0, repr=False)
    _successes: int = field(default=0, repr=False)

    @classmethod
    def from_budgets(cls, budgets: BudgetConfig) -> DegradeController:
        return cls(budgets.degrade_after_misses, budgets.recover_after_successes)

    def record(self, verdict: Verdict, stages_over_budget: bool) -> int:
        missed = verdict in (Verdict.LATE, Verdict.NO_ADVICE) or stages_over_budget
        if missed:
            self._successes = 0
            self._misses += 1
            if self._misses >= self.degrade_after_misses and self.level < MAX_DEGRADE_LEVEL:
                self.level += 1
                self._misses = 0
        else:
            self._misses = 0
            self._successes += 1
            if self._successes >= self.recover_after_successes and self.level > 0:
                self.level -= 1
                self._successes = 0
        return self.level
