"""Alarm confirmation: an alarm reaches the planner once consecutive cycles agree on it.

A clip of ordinary road sometimes gets an alarm (stop, pull over, yield, turn) or a hazard that the
next clip, half a second later, does not repeat; a real event lasts for seconds and is decided
again on every cycle. So the first sighting of an alarm is published as `decelerate`: the car
starts slowing at once, and the alarm itself follows when `cycles` cycles in a row decide the same
action. A hazard is published once `cycles` cycles in a row name it. What was held back is named in
the advice's `verdict_reason` ("unconfirmed: stop (pedestrian)", or "unconfirmed hazard: cyclist"),
and the decoder's own text stays in the audit log; bad-case capture keeps the held-back alarms
(edge.drivelog.capture, trigger `unconfirmed`). `cycles = 1` publishes every decision as it is made.

A cycle without advice breaks the run: after a gap, an alarm counts from one again.
"""

from __future__ import annotations

from collections import deque

from edge.messages import Advice, Hazard, MetaAction

ALARM_ACTIONS = frozenset({MetaAction.STOP, MetaAction.PULL_OVER, MetaAction.YIELD,
                           MetaAction.TURN_LEFT, MetaAction.TURN_RIGHT})
# What a first sighting becomes: slowing down is right for every alarm above and harmless when the
# alarm was wrong.
FIRST_SIGHTING = MetaAction.DECELERATE
# How verdict_reason names a held-back alarm ("unconfirmed: stop (pedestrian)") and held-back
# hazards alone ("unconfirmed hazard: cyclist").
HELD_ALARM = "unconfirmed: "
HELD_HAZARD = "unconfirmed hazard: "


def held_alarm(verdict_reason: str) -> str:
    """The alarm a published advice held back ('stop (pedestrian)'), or '' when it held none."""
    for part in verdict_reason.split("; "):
        if part.startswith(HELD_ALARM):
            return part.removeprefix(HELD_ALARM)
    return ""


class AlarmConfirmation:
    """Per-loop state: the decisions of the last `cycles - 1` cycles (none for 1: all confirmed)."""

    def __init__(self, cycles: int = 2) -> None:
        if cycles < 1:
            raise ValueError(f"confirmation needs at least 1 cycle, got {cycles}")
        self._recent: deque[Advice] = deque(maxlen=cycles - 1)

    def _confirmed_action(self, action: MetaAction) -> bool:
        return len(self._recent) == self._recent.maxlen and all(a.action == action for a in self._recent)

    def _confirmed_hazard(self, hazard: Hazard) -> bool:
        return len(self._recent) == self._recent.maxlen and all(hazard in a.hazards for a in self._recent)

    def apply(self, advice: Advice | None) -> tuple[Advice | None, str]:
        """The advice to publish for this cycle's decision, and what was held back ('' when nothing)."""
        if advice is None:
            self._recent.clear()
            return None, ""
        held_action = advice.action in ALARM_ACTIONS and not self._confirmed_action(advice.action)
        hazards = [h for h in advice.hazards if self._confirmed_hazard(h)]
        held_hazards = [h for h in advice.hazards if h not in hazards]
        self._recent.append(advice)
        if not held_action and not held_hazards:
            return advice, ""
        published = advice.model_copy(update={"hazards": hazards})
        if held_action:
            published = published.model_copy(update={"action": FIRST_SIGHTING})
        named = ", ".join(h.value for h in held_hazards)
        if not held_action:
            return published, f"{HELD_HAZARD}{named}"
        return published, f"{HELD_ALARM}{advice.action.value}" + (f" ({named})" if named else "")
