"""Alarm confirmation: a one-cycle alarm reaches the planner as decelerate, a repeated one as decided."""

from __future__ import annotations

import pytest

from edge.config import build_config
from edge.confirm import AlarmConfirmation, held_alarm
from edge.messages import Advice, Hazard, MetaAction, Urgency


def advice(action: str, *hazards: str) -> Advice:
    return Advice(action=MetaAction(action), urgency=Urgency.HIGH, hazards=[Hazard(h) for h in hazards],
                  rationale="r")


def decisions(confirm: AlarmConfirmation, sequence: list[Advice | None]) -> list[tuple[str | None, list[str], str]]:
    out = []
    for decided in sequence:
        published, held = confirm.apply(decided)
        out.append((published.action.value if published else None,
                    [h.value for h in published.hazards] if published else [], held))
    return out


def test_a_one_cycle_alarm_is_published_as_decelerate_and_a_repeated_one_as_decided():
    got = decisions(AlarmConfirmation(2), [advice("keep_speed"), advice("stop", "pedestrian"),
                                           advice("stop", "pedestrian"), advice("stop", "pedestrian")])
    assert got == [("keep_speed", [], ""),
                   ("decelerate", [], "unconfirmed: stop (pedestrian)"),
                   ("stop", ["pedestrian"], ""),
                   ("stop", ["pedestrian"], "")]


def test_a_flickering_alarm_never_reaches_the_planner():
    sequence = [advice("keep_speed"), advice("stop", "vehicle"), advice("keep_speed"), advice("pull_over"),
                advice("stop"), advice("keep_speed")]
    got = decisions(AlarmConfirmation(2), sequence)
    assert [a for a, _, _ in got] == ["keep_speed", "decelerate", "keep_speed", "decelerate", "decelerate",
                                      "keep_speed"]
    assert all(h == [] for _, h, _ in got)


def test_hazards_are_confirmed_one_by_one_and_calm_actions_pass_at_once():
    got = decisions(AlarmConfirmation(2), [advice("nudge_left", "cyclist"), advice("nudge_left", "cyclist", "cone"),
                                           advice("keep_speed", "cone")])
    assert got == [("nudge_left", [], "unconfirmed hazard: cyclist"),
                   ("nudge_left", ["cyclist"], "unconfirmed hazard: cone"),
                   ("keep_speed", ["cone"], "")]


def test_a_cycle_without_advice_breaks_the_run():
    got = decisions(AlarmConfirmation(2), [advice("stop"), None, advice("stop"), advice("stop")])
    assert [a for a, _, _ in got] == ["decelerate", None, "decelerate", "stop"]


def test_three_cycles_and_one_cycle():
    three = decisions(AlarmConfirmation(3), [advice("yield")] * 4)
    assert [a for a, _, _ in three] == ["decelerate", "decelerate", "yield", "yield"]
    one = decisions(AlarmConfirmation(1), [advice("turn_left", "pedestrian")])
    assert one == [("turn_left", ["pedestrian"], "")]
    with pytest.raises(ValueError):
        AlarmConfirmation(0)


def test_the_held_alarm_is_read_back_from_verdict_reason():
    assert held_alarm("unconfirmed: stop (pedestrian)") == "stop (pedestrian)"
    assert held_alarm("degrade level 1; unconfirmed: pull_over") == "pull_over"
    assert held_alarm("unconfirmed hazard: cyclist") == "" and held_alarm("") == ""


def test_the_config_key_sets_the_cycles_and_defaults_to_two():
    assert build_config({}).advice.confirm_cycles == 2
    assert build_config({}, ["advice.confirm_cycles=1"]).advice.confirm_cycles == 1
