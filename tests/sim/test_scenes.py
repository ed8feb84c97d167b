"""Every built-in scenario renders, and its labels line up with what the frames show."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest

from edge.messages import Hazard, MetaAction, NavInstruction
from edge.nav import check_road_name
from sim.drive import simulate
from sim.labels import label_windows, load_labels, load_nav, window_at
from sim.render import SceneRenderer
from sim.scenario import builtin_names, load_scenario
from sim.scene import iter_frames, render_scene

# Small frames keep the suite fast; cues must still be visible at this size.
SMALL = {"width": 320, "height": 180, "fps": 5}

# The meta-action each built-in exists to teach: its windows must use it as the primary.
SIGNATURE = {
    "arrive_pull_over": MetaAction.PULL_OVER,
    "cones_change_left": MetaAction.CHANGE_LANE_LEFT,
    "cyclist_nudge": MetaAction.NUDGE_LEFT,
    "emergency_pull_over": MetaAction.PULL_OVER,
    "highway_exit": MetaAction.CHANGE_LANE_RIGHT,
    "lead_brake": MetaAction.DECELERATE,
    "pedestrian_crossing": MetaAction.STOP,
    "red_light": MetaAction.STOP,
    "roadworks_keep_lane": MetaAction.KEEP_LANE,
    "speed_limit": MetaAction.ACCELERATE,
    "stalled_car_nudge_right": MetaAction.NUDGE_RIGHT,
    "turn_left_night": MetaAction.TURN_LEFT,
    "turn_right": MetaAction.TURN_RIGHT,
    "yield_cross_traffic": MetaAction.YIELD,
}

# Which actor kinds show each hazard.
HAZARD_ACTORS = {
    Hazard.PEDESTRIAN: {"pedestrian"},
    Hazard.CYCLIST: {"cyclist"},
    Hazard.VEHICLE: {"car", "emergency"},
    Hazard.RED_LIGHT: {"traffic_light"},
    Hazard.YELLOW_LIGHT: {"traffic_light"},
    Hazard.CONE: {"cone", "arrow_board"},
    Hazard.JUNCTION: None,  # the junction itself is road paint; checked through geometry below
}


def red_lamp_pixels(img: np.ndarray) -> int:
    b, g, r = (img[:, :, i].astype(int) for i in range(3))
    return int(((r > 170) & (r - np.maximum(g, b) > 90)).sum())


def green_lamp_pixels(img: np.ndarray) -> int:
    b, g, r = (img[:, :, i].astype(int) for i in range(3))
    return int(((g > 170) & (g - r > 90) & (b > 60)).sum())


@pytest.fixture(scope="module")
def rendered():
    """Each built-in, simulated and rendered once at the small size: name -> (drive, frames)."""
    out = {}
    for name in builtin_names():
        sc = load_scenario(name).with_overrides(**SMALL)
        drive = simulate(sc, seed=1)
        frames = list(SceneRenderer(drive).frames())
        out[name] = (drive, frames)
    return out


def test_signature_list_matches_builtins():
    assert set(SIGNATURE) == set(builtin_names())


def test_builtins_cover_the_whole_vocabulary(rendered):
    primaries = {w.primary for drive, _ in rendered.values() for w in label_windows(drive)}
    assert primaries == set(MetaAction), f"missing primaries: {set(MetaAction) - primaries}"


@pytest.mark.parametrize("name", sorted(SIGNATURE))
def test_labels_cover_the_video_and_follow_the_timeline(rendered, name):
    drive, frames = rendered[name]
    sc = drive.scenario
    windows = label_windows(drive)
    assert windows[0].start_ms == 0
    assert windows[-1].end_ms == round(sc.duration_s * 1000)
    for a, b in itertools.pairwise(windows):
        assert a.end_ms == b.start_ms and a.start_ms < a.end_ms
    assert SIGNATURE[name] in {w.primary for w in windows}
    # Nothing happens before the first event: the drive starts in plain cruise.
    first_event = min(e.at_s for e in sc.events if e.kind != "nav" or e.maneuver != "continue") if any(
        e.kind != "nav" or e.maneuver != "continue" for e in sc.events) else sc.duration_s
    for state, _, _ in frames:
        if state.t < first_event - 1e-6:
            assert state.situation.primary == MetaAction.KEEP_SPEED, (name, state.t)
    # The first event changes the answer within a second of its start (turns and exits wait
    # until the junction is near, so only immediate events are checked).
    immediate = [e for e in sc.events if e.kind not in ("nav", "speed_limit")]
    for e in immediate:
        changed = [s for s, _, _ in frames if e.at_s <= s.t < e.at_s + 1.0 and s.situation.source == e.kind]
        assert changed, f"{name}: event {e.kind} at {e.at_s} s changes no label"


@pytest.mark.parametrize("name", sorted(SIGNATURE))
def test_labelled_hazards_are_visible(rendered, name):
    """Every frame whose label names a hazard shows an actor of that kind, big enough to see."""
    drive, frames = rendered[name]
    checked = 0
    for state, _, notes in frames:
        for hazard in state.situation.hazards:
            kinds = HAZARD_ACTORS[hazard]
            if kinds is None:
                # A junction is road paint: one must be close ahead (or under the turning ego).
                assert any(-15 < j.z - state.ego.s < 80 for j in drive.junctions), (name, state.t)
                checked += 1
                continue
            boxes = [n.bbox for n in notes if n.kind in kinds and n.hazard == hazard]
            assert boxes, f"{name} t={state.t:.1f}: label says {hazard.value} but none is on screen"
            biggest = max((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
            assert biggest >= 4, f"{name} t={state.t:.1f}: {hazard.value} is only {biggest:.1f} px^2"
            checked += 1
    if any(state.situation.hazards for state, _, _ in frames):
        assert checked


def test_red_light_windows_show_a_red_lamp_and_green_windows_do_not(rendered):
    drive, frames = rendered["red_light"]
    windows = label_windows(drive)
    red_seen = 0
    for state, img, _ in frames:
        w = window_at(windows, state.t * 1000)
        if Hazard.RED_LIGHT in w.hazards:
            assert w.primary == MetaAction.STOP
            assert set(w.actions) <= {MetaAction.STOP, MetaAction.DECELERATE}
            assert red_lamp_pixels(img) >= 3, f"t={state.t}: red-light window without a red lamp on screen"
            red_seen += 1
        elif w.source == "cruise" and state.t < 2.0:
            # Before the light changes it is green: no red lamp anywhere.
            assert red_lamp_pixels(img) == 0, f"t={state.t}: red pixels while the light is green"
    assert red_seen >= 10
    after_green = [img for state, img, _ in frames if window_at(windows, state.t * 1000).primary == MetaAction.ACCELERATE]
    assert after_green and all(green_lamp_pixels(img) >= 3 for img in after_green[:5])


def test_brake_lights_come_on_with_the_decelerate_window(rendered):
    _, frames = rendered["lead_brake"]
    before = [img for s, img, _ in frames if s.t < 3.5]
    braking = [img for s, img, _ in frames if s.situation.source == "lead_brake" and s.situation.primary == MetaAction.DECELERATE]
    assert braking
    assert max(red_lamp_pixels(img) for img in before) < min(red_lamp_pixels(img) for img in braking)


def test_ego_motion_agrees_with_the_labels(rendered):
    """The ego does what the label says, so a clip shows the reaction as well as the cue."""
    for name, (_, frames) in rendered.items():
        states = [s for s, _, _ in frames]
        for prev, cur in itertools.pairwise(states):
            primary = prev.situation.primary
            if primary == MetaAction.STOP == cur.situation.primary and prev.situation.source != "emergency_vehicle":
                assert cur.ego.v <= prev.ego.v + 0.05, (name, prev.t)
            if primary == MetaAction.ACCELERATE:
                assert prev.ego.a > 0, (name, prev.t)
        yaws = [s.ego.yaw for s in states if s.situation.primary in (MetaAction.TURN_LEFT, MetaAction.TURN_RIGHT)]
        if name.startswith("turn_"):
            final = states[-1].ego.yaw
            assert abs(abs(final) - math.pi / 2) < 1e-6, f"{name}: the ego did not complete the turn"
            assert math.copysign(1, final) == (1 if name == "turn_right" else -1)
            assert yaws
        changes = [s for s in states if s.situation.primary == MetaAction.CHANGE_LANE_LEFT and s.situation.source == "cones"]
        if changes:
            assert states[-1].ego.x_lat < changes[0].ego.x_lat - 2.5, f"{name}: no lane change to the left"


def test_stopped_means_stopped(rendered):
    _, frames = rendered["red_light"]
    waiting = [s for s, _, _ in frames if s.situation.rationale == "waiting at the red light"]
    assert waiting and all(s.ego.v < 0.6 for s in waiting)


def test_nav_timelines_validate_and_count_down(rendered):
    drive, _ = rendered["turn_right"]
    from sim.labels import nav_lines

    lines = nav_lines(drive)
    assert len(lines) >= 3
    for line in lines:
        message = NavInstruction(**{k: v for k, v in line.items() if k != "at_ms"})
        # The text is the road's name, the same at every update, and the runtime admits it: the
        # distance and the side travel only in the structured fields.
        assert check_road_name(message.text) == "Harbor Road"
    turn = [line for line in lines if line["maneuver"] == "turn_right"]
    distances = [line["distance_m"] for line in turn]
    assert distances == sorted(distances, reverse=True) and distances[-1] == 0.0
    assert lines[0]["at_ms"] == 1000 and lines[0]["maneuver"] == "turn_right"
    # Once the turn is done the unit moves on to the route's next leg, along the road turned onto.
    after = lines[len(turn):]
    assert after and all(line["maneuver"] == "continue" for line in after)
    assert len({line["nav_id"] for line in lines}) == len(lines)


def _instruction_held_at(lines: list[dict], t_ms: float) -> str | None:
    """The manoeuvre a runtime would hold at t_ms: the newest message not past its time to live."""
    held = [line for line in lines if line["at_ms"] <= t_ms < line["at_ms"] + line["ttl_ms"]]
    return held[-1]["maneuver"] if held else None


@pytest.mark.parametrize("name, manoeuvre, instruction", [
    ("turn_right", MetaAction.TURN_RIGHT, "turn_right"),
    ("turn_left_night", MetaAction.TURN_LEFT, "turn_left"),
    ("highway_exit", MetaAction.TURN_RIGHT, "exit_right"),
])
def test_the_instruction_stays_current_through_the_manoeuvre_and_not_after_it(rendered, name, manoeuvre,
                                                                               instruction):
    # The label asks for the manoeuvre until it is complete (the turn's arc driven, the exit taken),
    # so the navigation line must say it that long: an instruction that lapsed mid-turn would leave
    # only the picture to tell, and one that outlived the turn would contradict the cruise after it.
    drive, frames = rendered[name]
    lines = drive.nav
    states = [s for s, _, _ in frames]
    during = [s for s in states if s.situation.primary is manoeuvre]
    assert during
    assert all(_instruction_held_at(lines, s.t * 1000) == instruction for s in during)
    after = [s for s in states if s.t > during[-1].t]
    assert after
    assert all(_instruction_held_at(lines, s.t * 1000) == "continue" for s in after)


@pytest.mark.parametrize("name", ["turn_right", "highway_exit"])
def test_route_changes_start_near_the_announced_point(rendered, name):
    drive, frames = rendered[name]
    nav = drive.nav
    turn = [s for s, _, _ in frames if s.situation.primary in (MetaAction.TURN_RIGHT, MetaAction.TURN_LEFT)]
    assert turn
    # The turn label starts when the junction is near, never at the first announcement.
    assert turn[0].t * 1000 > nav[0]["at_ms"] + 2000


def test_render_scene_writes_all_files(tmp_path):
    files = render_scene("pedestrian_crossing", seed=4, out_dir=tmp_path / "scene", duration_s=4.0, **SMALL)
    for path in (files.video, files.labels, files.scenario, files.meta):
        assert path.is_file() and path.stat().st_size > 0
    assert files.nav.is_file()  # empty: this scenario has no navigation instruction
    cap = cv2.VideoCapture(str(files.video))
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (180, 320, 3)
        count += 1
    cap.release()
    assert count == files.n_frames == 20
    windows = load_labels(files.labels)
    assert windows[-1].end_ms == 4000
    assert any(w.primary == MetaAction.STOP and Hazard.PEDESTRIAN in w.hazards for w in windows)
    # The copied scenario renders the same labels again.
    again = render_scene(files.scenario, seed=4, out_dir=tmp_path / "again")
    assert load_labels(again.labels) == windows


def test_nav_file_loads_as_instructions(tmp_path):
    files = render_scene("highway_exit", seed=0, out_dir=tmp_path, duration_s=6.0, width=160, height=90, fps=2)
    pairs = load_nav(files.nav)
    assert pairs and all(isinstance(n, NavInstruction) for _, n in pairs)
    assert pairs[0][1].maneuver.value == "exit_right" and pairs[0][0] == 1000


def test_same_seed_same_frames_other_seed_other_frames():
    kwargs = {"duration_s": 3.0, "width": 192, "height": 108, "fps": 4, "variant": "rain"}
    a = [img for _, img, _ in iter_frames("cyclist_nudge", seed=7, **kwargs)]
    b = [img for _, img, _ in iter_frames("cyclist_nudge", seed=7, **kwargs)]
    c = [img for _, img, _ in iter_frames("cyclist_nudge", seed=8, **kwargs)]
    assert len(a) == len(b) == len(c) == 12
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("variant", ["day", "dusk", "night", "rain"])
def test_variants_look_different_and_night_is_dark(variant):
    _, img, _ = next(iter_frames("lead_brake", seed=0, variant=variant, duration_s=1.0, width=160, height=90))
    mean = float(img.mean())
    if variant == "night":
        assert mean < 60
    elif variant == "day":
        assert mean > 110
    else:
        assert 50 < mean < 200
