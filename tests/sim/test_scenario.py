"""The scenario format: built-ins parse, bad files fail with messages that say where and why."""

from __future__ import annotations

import pytest

from sim.scenario import EVENT_KINDS, ScenarioError, builtin_names, load_scenario, parse_scenario
from sim.scene import scenario_toml

GOOD = """
duration_s = 10
[[events]]
kind = "traffic_light"
at_s = 2
"""


def test_builtins_parse_and_are_enough():
    names = builtin_names()
    assert len(names) >= 8
    for name in names:
        sc = load_scenario(name)
        assert sc.name == name
        assert sc.description, f"{name} needs a description for `edge scene --list`"
        assert sc.events, f"{name} has no events"


def test_minimal_scenario_gets_defaults():
    sc = parse_scenario(GOOD)
    assert (sc.width, sc.height, sc.fps, sc.variant) == (640, 360, 10.0, "day")
    assert sc.n_frames == 100
    assert sc.ego_lane == sc.road.lanes - 1  # "right" by default


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('duration_s = 10\n[[events]]\nkind = "meteor"\nat_s = 1\n', "unknown event kind 'meteor'"),
        ('duration_s = 10\n[[events]]\nkind = "traffic_light"\nat_s = 12\n', "at_s 12.0 is outside the scenario"),
        ('duration_s = 10\n[[events]]\nkind = "traffic_light"\nat_s = 1\ncolour = "red"\n', "events[0] (kind 'traffic_light'): colour"),
        ('duration_s = 10\n[[events]]\nkind = "cyclist"\nat_s = 1\ndistance_m = -3\n', "events[0] (kind 'cyclist'): distance_m"),
        ('duration_s = 10\nvariant = "fog"\n', "variant"),
        ("duration_s = 10\n[[events]]\nat_s = 1\n", "has no 'kind'"),
        ("duration_s = \n", "not valid TOML"),
        ("fps = 10\n", "duration_s"),
        ('duration_s = 10\n[ego]\nlane = 5\n', "ego.lane 5 does not exist"),
        ('duration_s = 10\n[ego]\nlane = "left"\n[[events]]\nkind = "cones"\nat_s = 1\nside = "left"\n',
         "no lane there"),
        ('duration_s = 10\n[[events]]\nkind = "nav"\nat_s = 1\nmaneuver = "u_turn"\n', "maneuver"),
        ('duration_s = 20\n[[events]]\nkind = "nav"\nat_s = 1\nmaneuver = "turn_right"\n'
         '[[events]]\nkind = "cyclist"\nat_s = 5\n', "after the route left the main road"),
        ('duration_s = 10\n[road]\noncoming_lanes = 0\n[[events]]\nkind = "emergency_vehicle"\nat_s = 1\n',
         "oncoming lane"),
    ],
)
def test_bad_scenarios_say_what_is_wrong(text, needle):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, origin="bad.toml")
    message = str(info.value)
    assert "bad.toml" in message
    assert needle in message


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ScenarioError) as info:
        parse_scenario('duration_s = 5\n[[events]]\nkind = "x"\nat_s = 1\n')
    for kind in EVENT_KINDS:
        assert kind in str(info.value)


def test_unknown_builtin_and_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'; built-ins: "):
        load_scenario("nope")
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "missing.toml")


def test_impossible_stop_is_reported_when_simulating():
    from sim.drive import simulate

    sc = parse_scenario('duration_s = 10\n[ego]\nspeed_kmh = 100\n[[events]]\nkind = "traffic_light"\nat_s = 1\n'
                        'distance_m = 10\n')
    with pytest.raises(ScenarioError, match="needs .* m/s\\^2"):
        simulate(sc, 0)


def test_overrides_drop_late_events_and_check_values():
    sc = load_scenario("red_light")
    short = sc.with_overrides(duration_s=2.0, variant="night", fps=5, width=320, height=180)
    assert short.duration_s == 2.0 and short.variant == "night" and short.n_frames == 10
    assert all(e.at_s < 2.0 for e in short.events)
    assert len(short.events) < len(sc.events)
    with pytest.raises(ScenarioError, match="unknown variant"):
        sc.with_overrides(variant="fog")


def test_effective_scenario_round_trips_through_toml():
    for name in builtin_names():
        sc = load_scenario(name).with_overrides(variant="rain", duration_s=7.5)
        again = parse_scenario(scenario_toml(sc), default_name="x")
        assert again.name == sc.name
        assert (again.duration_s, again.variant, again.fps) == (sc.duration_s, sc.variant, sc.fps)
        assert again.road == sc.road and again.ego == sc.ego
        assert again.events == sc.events
