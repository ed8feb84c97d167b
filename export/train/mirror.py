"""Left-right mirrored training clips for the scenarios whose answer depends on where an obstacle is.

In the built-in scenes the cyclist always rides on the right (nudge_left) and the stalled car
always stands on the left (nudge_right), so a model can answer from *what* the obstacle is and
never learn *where* it is; every run that learnt to nudge nudged to one side at both obstacles
(docs/QUALITY.md). A mirrored clip shows the same scene with the sides swapped and asks for the
swapped answer, so only the obstacle's place tells nudge_left from nudge_right. The phase-1 head
pools over the whole frame, so the place has to end up in what the visual rows carry, which is
where the decoder can read it.

Each mirrored clip shares its original's sampling weight (export.train.trainer.sample_weights):
mirroring decides which way round a drawn clip is seen, not how often its scenario is drawn.
Off by default: it has not paid off yet (docs/QUALITY.md, runs AH, AI and AJ).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from edge.messages import MetaAction
from edge.nav import nav_sentence
from export.train.dataset import ClipDataset, DatasetError, Example

# The scenarios with something at the lane edge and no navigation instruction: the cyclist, the
# stalled car, the cones of a lane closure and the roadworks beside the lane.
LANE_EDGE = ("cones_change_left", "cyclist_nudge", "roadworks_keep_lane", "stalled_car_nudge_right")
# `--mirror lane_edge` names that group.
GROUPS = {"lane_edge": LANE_EDGE}

_SIDE = re.compile(r"left|right")


def swap_sides(text: str) -> str:
    """Every 'left' becomes 'right' and every 'right' becomes 'left' (in action names too)."""
    return _SIDE.sub(lambda m: "right" if m.group() == "left" else "left", text)


def expand_scenarios(names: Iterable[str]) -> tuple[str, ...]:
    """Scenario names with the groups in GROUPS spelled out, sorted and without repeats."""
    out: set[str] = set()
    for name in names:
        out.update(GROUPS.get(name, (name,)))
    return tuple(sorted(out))


def mirrored(example: Example, index: int) -> Example:
    """The mirror of dataset example `index`: same clip flipped, sides swapped in the answer."""
    return dataclasses.replace(
        example, target=swap_sides(example.target), action=MetaAction(swap_sides(example.action.value)),
        accepted=tuple(MetaAction(swap_sides(a.value)) for a in example.accepted), mirror_of=index)


def with_mirrored_clips(dataset: ClipDataset, scenarios: Iterable[str]) -> ClipDataset:
    """The dataset plus a mirrored copy of every clip of these scenarios (appended after the originals)."""
    wanted = set(scenarios)
    if not wanted:
        return dataset
    present = {scene.scenario for scene in dataset.scenes}
    missing = sorted(wanted - present)
    if missing:
        raise DatasetError(f"cannot mirror {', '.join(missing)}: no scenes of that scenario "
                           f"(scenarios present: {', '.join(sorted(present))})")
    no_instruction = nav_sentence(None)
    twins = []
    for index, example in enumerate(dataset.examples):
        if example.mirror_of is not None or dataset.scenes[example.scene].scenario not in wanted:
            continue
        # A navigation line names a side too ("turn left in 50 m"); mirroring the scene without it
        # would pair a left turn with a right-hand road.
        if no_instruction not in example.prompt:
            raise DatasetError(f"cannot mirror {dataset.scenes[example.scene].rel} at {example.newest_ms:.0f} ms: "
                               "its prompt has a navigation instruction, whose side mirroring would contradict")
        twins.append(mirrored(example, index))
    return dataclasses.replace(dataset, examples=[*dataset.examples, *twins])
