"""Left-right mirrored training clips for the scenarios whose answer depends on where an obstacle is.

A mirrored clip shows the scene with the sides swapped and asks for the swapped answer (and a
navigation side swapped too), so only the obstacle's place tells nudge_left from nudge_right.
Off by default (`--mirror`): it has not beaten the plain recipe on the validation scenes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from edge.messages import MetaAction
from edge.prompt import PromptTemplate
from train.dataset import ClipDataset, DatasetError, Example

# The scenarios with something at the lane edge and no navigation instruction: the cyclist, the
# stalled car, the cones of a lane closure and the roadworks beside the lane.
LANE_EDGE = ("cones_change_left", "cyclist_nudge", "roadworks_keep_lane", "stalled_car_nudge_right")
# The scenarios whose side the navigation instruction names; their mirror swaps it in the nav line.
NAV_SIDED = ("highway_exit", "turn_left_night", "turn_right")
# `--mirror lane_edge`, `nav_sided` or `sided` (both) name these groups.
GROUPS = {"lane_edge": LANE_EDGE, "nav_sided": NAV_SIDED, "sided": LANE_EDGE + NAV_SIDED}

# Inside words too: the answer spells sides as part of action names ("nudge_left").
_SIDE = re.compile(r"left|right")
# Whole words only: the navigation line says "turn left", and a road name may hold a side inside
# a word ("Wheelwright Road"), which the runtime admits and the mirror must leave alone.
_SIDE_WORD = re.compile(r"\b(?:left|right)\b")


def _other_side(match: re.Match) -> str:
    return "right" if match.group() == "left" else "left"


def swap_sides(text: str) -> str:
    """Every 'left' becomes 'right' and every 'right' becomes 'left' (in action names too)."""
    return _SIDE.sub(_other_side, text)


def expand_scenarios(names: Iterable[str]) -> tuple[str, ...]:
    """Scenario names with the groups in GROUPS spelled out, sorted and without repeats."""
    out: set[str] = set()
    for name in names:
        out.update(GROUPS.get(name, (name,)))
    return tuple(sorted(out))


def mirrored_prompt(prompt: str) -> str:
    """The prompt with the navigation line's sides swapped ("turn left" <-> "turn right"). The nav
    line is the text after the last frame pair, so the system prompt and the visual part stay as
    they are; every side word in it is swapped, and only whole words (a road name cannot say a
    side - the runtime refuses that - but "Wheelwright Road" holds one inside a word)."""
    head, sep, tail = prompt.rpartition(PromptTemplate.pair_close())
    if not sep:
        raise ValueError("a training prompt has at least one frame pair")
    return head + sep + _SIDE_WORD.sub(_other_side, tail)


def mirrored(example: Example, index: int) -> Example:
    """The mirror of dataset example `index`: same clip flipped, sides swapped in the answer and in
    the navigation line."""
    return dataclasses.replace(
        example, prompt=mirrored_prompt(example.prompt),
        target=swap_sides(example.target), action=MetaAction(swap_sides(example.action.value)),
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
    twins = [mirrored(example, index) for index, example in enumerate(dataset.examples)
             if example.mirror_of is None and dataset.scenes[example.scene].scenario in wanted]
    return dataclasses.replace(dataset, examples=[*dataset.examples, *twins])
