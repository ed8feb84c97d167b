"""The navigation line: only the structured fields say where and when; the text names a road."""

from __future__ import annotations

import pytest

from edge.messages import NavInstruction
from edge.nav import NavRefused, NavState, check_road_name, nav_sentence


def instruction(maneuver="turn_right", distance_m=137.0, text=""):
    return NavInstruction(nav_id="n1", maneuver=maneuver, distance_m=distance_m, text=text)


@pytest.mark.parametrize("name", ["Harbor Road", "St. Mary's Rd", "A-9/B 12", "Exit 12B", "Turnpike Ave",
                                  "Rightmire Blvd", "Route 66", ""])
def test_road_names_pass_as_they_are(name):
    assert check_road_name(name) == name


@pytest.mark.parametrize("text", [
    "Turn right in 110 m",  # what a unit that sends its spoken sentence as the name would send
    "Turn left now",
    "Continue for 2000 m",
    "Take the exit on the left",
    "Keep right",
    "Main St 300 m",
    "Main St in 0.5 km",
    "Elm St 200 ft",
    "Destination on the right",
    "make a U-turn",
])
def test_a_name_that_says_where_or_when_is_refused(text):
    with pytest.raises(NavRefused) as refused:
        check_road_name(text)
    assert refused.value.kind == "nav_text_conflict"
    assert repr(text) in str(refused.value)


def test_the_line_carries_one_side_and_a_bucketed_distance():
    assert nav_sentence(instruction(text="Harbor Road")) == "Navigation: turn right onto Harbor Road in 150 m."
    assert nav_sentence(instruction()) == "Navigation: turn right in 150 m."
    assert nav_sentence(instruction("continue", 2000, "Main Street")) == "Navigation: continue straight on Main Street."
    assert nav_sentence(instruction("arrive", 40, "Harbor Road")) == "Navigation: arrive at the destination in 50 m."
    assert nav_sentence(None) == "Navigation: no instruction."


def test_a_contradicting_text_loses_nothing_already_held():
    state = NavState()
    assert state.offer(instruction(text="Harbor Road"), now_mono_ns=0)
    assert not state.offer(instruction("turn_right", 90, "Turn left in 80 m"), now_mono_ns=1)
    # The held instruction stays; the refusal is counted and says why.
    assert state.current(2).text == "Harbor Road"
    assert state.refused == {"nav_text_conflict": 1}
    assert state.last_refusal.kind == "nav_text_conflict" and "Turn left in 80 m" in str(state.last_refusal)
