"""Out-of-domain checks: embedding distance against the bundle's statistics, and frozen input."""

from __future__ import annotations

import numpy as np

from edge.ood import OodDetector, OodStats, frozen_clip, pooled_embedding


def rows_like(rng, n=64, width=16, scale=1.0, shift=0.0):
    return rng.normal(shift, scale, size=(n, width)).astype(np.float32)


def test_distance_is_small_in_domain_and_large_far_from_it():
    rng = np.random.default_rng(0)
    embeddings = np.stack([pooled_embedding(rows_like(rng, shift=rng.normal(0, 0.1))) for _ in range(300)])
    stats = OodStats.fit(embeddings, source="test")
    inside = [stats.distance(rows_like(rng)) for _ in range(50)]
    assert max(inside) < stats.threshold
    assert stats.distance(np.zeros((64, 16), dtype=np.float32)) > stats.threshold  # "black": no spread at all
    assert stats.distance(rows_like(rng, scale=4.0)) > stats.threshold  # "noise"
    assert OodStats.from_json(stats.to_json()).threshold == stats.threshold


def test_frozen_clip_needs_every_frame_identical():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (256, 448, 3), dtype=np.uint8)
    assert frozen_clip([frame, frame.copy(), frame.copy(), frame.copy()])
    moved = np.roll(frame, 3, axis=1)
    assert not frozen_clip([frame, frame, frame, moved])
    assert not frozen_clip([frame])


def test_detector_names_its_reasons():
    rng = np.random.default_rng(2)
    stats = OodStats.fit(np.stack([pooled_embedding(rows_like(rng)) for _ in range(200)]))
    detector = OodDetector(stats)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    assert not detector.check(rows_like(rng), frames).out_of_domain
    black = [np.zeros((64, 64, 3), dtype=np.uint8)] * 4
    check = detector.check(np.zeros((64, 16), dtype=np.float32), black)
    assert check.out_of_domain and check.frozen
    assert check.reason.startswith("out_of_domain: embedding distance") and "frozen input" in check.reason
    assert OodDetector(None).check(rows_like(rng), frames).distance is None


def test_frozen_input_is_flagged_once_the_frames_have_been_identical_for_the_window():
    """A stuck feed is flagged after advice.frozen_after_s (3 s: a camera never repeats a frame);
    replays of rendered scenes, whose car may wait at a light for seconds, pass a longer window."""
    from edge.config import AdviceConfig
    from sim.replay import RENDERED_STILL_S

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rows = rows_like(rng)
    second = 1_000_000_000

    def clip_at(t_s):  # four frames 0.5 s apart, the newest at t_s
        return [round((t_s - 1.5 + 0.5 * k) * second) for k in range(4)]

    camera = OodDetector(None)
    window = AdviceConfig().frozen_after_s
    assert window == 3.0
    flags = [camera.check(rows, [frame] * 4, clip_at(t), window).frozen for t in (1.5, 2.5, 3.0, 5.0)]
    assert flags == [False, False, True, True]
    assert "identical frames for 3 s" in camera.check(rows, [frame] * 4, clip_at(5.5), window).reason
    moving = [frame, np.roll(frame, 5, axis=0), frame, frame]
    assert not camera.check(rows, moving, clip_at(6.0), window).frozen
    assert not camera.check(rows, [frame] * 4, clip_at(6.5), window).frozen  # the count starts again

    rendered = OodDetector(None)
    flags = [rendered.check(rows, [frame] * 4, clip_at(t), RENDERED_STILL_S).frozen for t in (1.5, 5.0, 9.5, 10.0)]
    assert flags == [False, False, False, True]


def test_blank_frames_are_out_of_domain_at_once():
    rng = np.random.default_rng(4)
    detector = OodDetector(None)
    black = [np.zeros((64, 64, 3), np.uint8)] * 4
    check = detector.check(rows_like(rng), black, [0, 500_000_000, 1_000_000_000, 1_500_000_000])
    assert check.out_of_domain and not check.frozen and "blank input" in check.reason
    dark_scene = [rng.integers(0, 40, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    assert not detector.check(rows_like(rng), dark_scene).out_of_domain
