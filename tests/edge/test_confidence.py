"""Advice confidence: the action's probability over the grammar's allowed tokens, its calibration, ECE."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.llm.confidence import (
    ActionConfidence,
    ActionTokenSets,
    ConfidenceCalibration,
    expected_calibration_error,
    fit_platt,
)

# A toy vocabulary: the JSON opening, action spellings split the way a BPE might split them.
PIECES = [b'{"action":"', b"keep", b"_speed", b"_lane", b"stop", b'","urgency":"', b"low", b"st", b"op", b"xyz", b""]
ACTIONS = ["keep_speed", "keep_lane", "stop"]


def logits(**by_piece: float) -> np.ndarray:
    out = np.full(len(PIECES), -30.0, dtype=np.float32)
    for piece, value in by_piece.items():
        out[PIECES.index(piece.encode())] = value
    return out


def test_allowed_tokens_keep_the_text_a_prefix_of_some_action():
    sets = ActionTokenSets(PIECES, ACTIONS)
    opening = b'{"action":"'
    allowed = {PIECES[i] for i in sets.allowed(opening)}
    assert allowed == {b"keep", b"stop", b"st"}  # not "xyz", not the empty piece, not "_speed" yet
    assert {PIECES[i] for i in sets.allowed(opening + b"keep")} == {b"_speed", b"_lane"}
    assert sets.open_actions(opening + b"keep") == 2 and sets.open_actions(opening + b"stop") == 1


def test_confidence_multiplies_the_renormalised_probabilities_of_the_deciding_tokens():
    sets = ActionTokenSets(PIECES, ACTIONS)
    conf = ActionConfidence(sets)
    # Before the action opens, only one continuation exists: nothing is counted.
    conf.observe(0, PIECES[0], logits(**{'{"action":"': 5.0}))
    # "keep" against "stop"/"st": probability over the three allowed tokens only (xyz is huge but not allowed).
    step1 = logits(keep=2.0, stop=1.0, st=0.0, xyz=50.0)
    conf.observe(1, b"keep", step1)
    step2 = logits(_speed=1.0, _lane=0.0)
    conf.observe(2, b"_speed", step2)
    conf.observe(5, b'","urgency":"', logits())  # decided: not counted
    expected = (math.exp(2) / (math.exp(2) + math.exp(1) + 1)) * (math.exp(1) / (math.exp(1) + 1))
    assert conf.value == pytest.approx(expected, rel=1e-6)
    assert conf.steps == 2


def test_no_decision_observed_gives_no_confidence():
    assert ActionConfidence(ActionTokenSets(PIECES, ACTIONS)).value is None


def test_calibration_identity_ood_cap_and_round_trip():
    identity = ConfidenceCalibration()
    assert identity.apply(0.8) == pytest.approx(0.8, abs=1e-4)
    assert identity.apply(None) is None
    assert identity.apply(0.95, out_of_domain=True) == identity.ood_cap
    fitted = ConfidenceCalibration(0.5, -0.2, 0.25, "x")
    assert ConfidenceCalibration.from_json(fitted.to_json()) == fitted
    with pytest.raises(ValueError, match="unknown confidence calibration"):
        ConfidenceCalibration.from_json({"method": "isotonic"})


def test_platt_fit_turns_overconfident_scores_into_calibrated_ones():
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0.3, 0.95, 4000)
    correct = rng.uniform(size=true_p.size) < true_p
    # An overconfident model: logit scaled by 3.
    raw = 1 / (1 + np.exp(-3 * np.log(true_p / (1 - true_p))))
    before = expected_calibration_error(raw.tolist(), correct.tolist())["ece"]
    a, b = fit_platt(raw.tolist(), correct.tolist())
    calibration = ConfidenceCalibration(a, b)
    after = expected_calibration_error([calibration.apply(r) for r in raw], correct.tolist())["ece"]
    assert a == pytest.approx(1 / 3, abs=0.05)
    assert before > 0.08 and after < 0.03


def test_ece_bins_count_every_cycle():
    figures = expected_calibration_error([0.05, 0.15, 0.95, 1.0], [False, False, True, True])
    assert figures["n"] == 4 and sum(b["n"] for b in figures["bins"]) == 4
    assert figures["ece"] == pytest.approx((0.05 + 0.15 + 0.05 + 0.0) / 4)
    assert expected_calibration_error([], [])["ece"] is None
