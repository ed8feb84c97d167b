"""edge train --mirror: lane-edge clips are also trained left-right mirrored, with the answer's
sides swapped, and a mirrored clip is drawn in its original's place, not on top of it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from edge.grammar import parse_advice
from edge.messages import MetaAction
from train.batches import balance_group, sample_weights
from train.dataset import DatasetError, load_dataset
from train.mirror import LANE_EDGE, expand_scenarios, mirrored_prompt, swap_sides, with_mirrored_clips
from train.targets import END_OF_TURN


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A cyclist scene (no navigation instruction; nudge_left from 2 s) and a turn_right scene (with one)."""
    from sim.scene import render_scene

    root = tmp_path_factory.mktemp("mirror_scenes")
    render_scene("cyclist_nudge", 7, root / "cyclist_nudge", duration_s=6)
    render_scene("turn_right", 7, root / "turn_right", duration_s=5)
    return load_dataset(root, tmp_path_factory.mktemp("frame_cache"))


def test_swap_sides_swaps_every_side_word():
    assert swap_sides('{"action":"nudge_left","lateral":"change_lane_right"}') == \
        '{"action":"nudge_right","lateral":"change_lane_left"}'
    assert swap_sides("cones") == "cones"
    assert expand_scenarios(["lane_edge", "red_light", "cyclist_nudge"]) == tuple(sorted({*LANE_EDGE, "red_light"}))


def test_mirrored_clip_shows_the_flipped_frames_and_asks_for_the_other_side(dataset):
    mirrored = with_mirrored_clips(dataset, ["cyclist_nudge"])
    n = len(dataset.examples)
    assert mirrored.examples[:n] == dataset.examples  # the clips as recorded come first, unchanged
    cyclist = [i for i, ex in enumerate(dataset.examples) if dataset.scenes[ex.scene].scenario == "cyclist_nudge"]
    twins = mirrored.examples[n:]
    assert [twin.mirror_of for twin in twins] == cyclist

    nudges = [twin for twin in twins if dataset.examples[twin.mirror_of].action is MetaAction.NUDGE_LEFT]
    assert nudges, "the cyclist scene must have nudge windows"
    for twin in nudges:
        original = dataset.examples[twin.mirror_of]
        assert twin.action is MetaAction.NUDGE_RIGHT
        assert MetaAction.CHANGE_LANE_RIGHT in twin.accepted and MetaAction.NUDGE_LEFT not in twin.accepted
        advice = parse_advice(twin.target.removesuffix(END_OF_TURN))
        assert advice.action is MetaAction.NUDGE_RIGHT and advice.action in twin.accepted
        assert (twin.prompt, twin.frames, twin.hazards) == (original.prompt, original.frames, original.hazards)

    twin = nudges[-1]
    frames = dataset.frames_of(twin.scene)
    flipped = [cv2.flip(np.asarray(frames[i]), 1) for i in twin.frames]
    expected = dataset.preprocessor.normalize_patchify(flipped).copy()
    assert np.array_equal(mirrored.pixel_values(twin), expected)
    assert not np.array_equal(mirrored.pixel_values(twin), dataset.pixel_values(dataset.examples[twin.mirror_of]))


def test_a_mirrored_clip_shares_its_originals_sampling_weight(dataset):
    plain = sample_weights(dataset, 1.0)
    mirrored = with_mirrored_clips(dataset, ["cyclist_nudge"])
    p = sample_weights(mirrored, 1.0)
    n = len(dataset.examples)
    per_original = p[:n].copy()
    for twin, weight in zip(mirrored.examples[n:], p[n:], strict=True):
        assert weight == pytest.approx(p[twin.mirror_of])  # each way round is drawn half the time
        per_original[twin.mirror_of] += weight
    # Every clip as recorded, with its mirror, weighs what it weighed without mirroring: the groups'
    # shares (and so the other scenarios') are unchanged.
    assert per_original == pytest.approx(plain)
    groups = {balance_group(mirrored, ex, "scenario_action") for ex in mirrored.examples[n:]}
    assert ("cyclist_nudge", "nudge_right") in groups


def test_with_own_draws_a_mirrored_answer_is_a_group_of_its_own(dataset):
    mirrored = with_mirrored_clips(dataset, ["cyclist_nudge"])
    p = sample_weights(mirrored, 1.0, mirror_draws="own")
    mass: dict[tuple[str, ...], float] = {}
    for ex, weight in zip(mirrored.examples, p, strict=True):
        group = (*balance_group(mirrored, ex, "scenario_action"), ex.mirror_of is not None)
        mass[group] = mass.get(group, 0.0) + weight
    # The mirrored cyclist is a scenario of its own: its nudge_right and its keep_speed each weigh as
    # much as the recorded nudge_left and keep_speed, and as every other (scenario, answer) group.
    assert {("cyclist_nudge", "nudge_right", True), ("cyclist_nudge", "keep_speed", True),
            ("cyclist_nudge", "nudge_left", False), ("cyclist_nudge", "keep_speed", False)} <= set(mass)
    assert list(mass.values()) == pytest.approx([1 / len(mass)] * len(mass))
    with pytest.raises(ValueError, match="mirror_draws"):
        sample_weights(mirrored, 1.0, mirror_draws="half")


def test_a_mirrored_turn_swaps_the_navigation_line_too(dataset):
    mirrored = with_mirrored_clips(dataset, ["turn_right"])
    n = len(dataset.examples)
    instructed = [twin for twin in mirrored.examples[n:]
                  if "Navigation: turn right" in dataset.examples[twin.mirror_of].prompt]
    assert instructed, "the turn_right scene must have clips with its instruction"
    for twin in instructed:
        original = dataset.examples[twin.mirror_of]
        head, nav_line = original.prompt.rsplit("<|vision_end|>", 1)
        assert twin.prompt == head + "<|vision_end|>" + nav_line.replace("right", "left")
        assert "Navigation: turn left" in twin.prompt
        assert twin.action is MetaAction(swap_sides(original.action.value))


def test_a_mirrored_navigation_line_keeps_the_road_name():
    """The nav line's sides are words; a road name holding 'right' inside a word stays as it is."""
    prompt = "<|vision_start|>...<|vision_end|>Navigation: turn right onto Wheelwright Road in 50 m."
    assert mirrored_prompt(prompt) == "<|vision_start|>...<|vision_end|>Navigation: turn left onto Wheelwright Road in 50 m."


def test_mirroring_refuses_unknown_scenarios(dataset):
    with pytest.raises(DatasetError, match="no scenes of that scenario"):
        with_mirrored_clips(dataset, ["stalled_car_nudge_right"])
    assert with_mirrored_clips(dataset, []) is dataset


def test_mirror_option_reaches_train_config():
    from edge_cli.main import build_parser
    from train.cli import config_from_args

    args = build_parser().parse_args(["train", "--scenes", "s", "--out", "o", "--mirror", "lane_edge",
                                      "--mirror", "red_light,cyclist_nudge"])
    assert config_from_args(args).mirror_scenarios == tuple(sorted({*LANE_EDGE, "red_light"}))
    assert config_from_args(build_parser().parse_args(["train", "--scenes", "s", "--out", "o"])).mirror_scenarios == ()
    own = build_parser().parse_args(["train", "--scenes", "s", "--out", "o", "--mirror", "lane_edge",
                                     "--mirror-draws", "own"])
    assert config_from_args(own).mirror_draws == "own"


def test_training_records_the_mirrored_clips(dataset, tmp_path: Path):
    """A whole (tiny) `edge train` run with --mirror: training.json says what was mirrored."""
    import json

    from train.config import TrainConfig
    from train.provenance import TRAINING_JSON
    from train.trainer import train

    root = Path(dataset.scenes[0].folder).parent
    config = TrainConfig(steps=1, batch_size=2, vision_steps=1, vision_batch_size=2, warmup_steps=1,
                         mirror_scenarios=("cyclist_nudge",))
    out, _ = train(root, tmp_path / "ckpt", config, cache_dir=tmp_path / "cache", progress=False)
    training = json.loads((out / TRAINING_JSON).read_text())
    cyclist_clips = sum(dataset.scenes[ex.scene].scenario == "cyclist_nudge" for ex in dataset.examples)
    assert training["data"]["mirrored_clips"] == cyclist_clips
    assert training["data"]["clips"] == len(dataset.examples) + cyclist_clips
    assert training["config"]["mirror_scenarios"] == ["cyclist_nudge"]
    assert training["config"]["mirror_draws"] == "shared"
    # And what decides the float rounding, so a re-run knows whether to expect the same bits.
    import torch

    assert training["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert training["machine"]["cpu"] and training["machine"]["threads"] == config.threads
