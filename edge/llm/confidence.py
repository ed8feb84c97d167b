"""How sure the decoder was of the action it wrote.

The advice grammar makes the decoder spell one of a closed set of actions right after
`{"action":"`. At every token written while more than one action is still possible, the
probability of the chosen token is taken over the tokens the grammar allowed there (the tokens
that keep the text a prefix of some action's spelling), not over the whole vocabulary; the
product over those tokens is the probability the decoder gave the chosen action among the
actions it could still choose. Once one action remains, the grammar decides the rest and those
tokens add nothing.

The raw figure is what the network says; `ConfidenceCalibration` maps it to a probability that
matches how often such advice is right (fitted on held-out scenes, carried by the bundle).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# The bundle manifest's quality entry holding the calibration (ConfidenceCalibration.to_json()).
CALIBRATION_KEY = "confidence_calibration"
ACTION_OPENING = '{"action":"'
ACTION_CLOSING = '","urgency":"'


class ActionTokenSets:
    """For a text generated so far, the token ids the grammar allows next while the action is open.

    Allowed: the token's bytes keep the text a prefix of `{"action":"<A>","urgency":"` for some
    action A, or complete that string and run on (a token spanning the closing quote). Computed
    once per distinct prefix and cached: a handful of prefixes recur every cycle.
    """

    def __init__(self, token_pieces: list[bytes], actions: Iterable[str]):
        self.pieces = token_pieces
        self.spellings = [f"{ACTION_OPENING}{a}{ACTION_CLOSING}".encode() for a in actions]
        self._allowed: dict[bytes, np.ndarray] = {}

    def open_actions(self, text: bytes) -> int:
        """How many actions the text so far is still consistent with."""
        return sum(s.startswith(text) for s in self.spellings)

    def allowed(self, text: bytes) -> np.ndarray:
        cached = self._allowed.get(text)
        if cached is not None:
            return cached
        spellings = [s for s in self.spellings if s.startswith(text)]
        ids = []
        for token, piece in enumerate(self.pieces):
            if not piece:
                continue
            grown = text + piece
            if any(s.startswith(grown) or grown.startswith(s) for s in spellings):
                ids.append(token)
        result = np.asarray(ids, dtype=np.int64)
        self._allowed[text] = result
        return result


class ActionConfidence:
    """Follows one generation token by token (call `observe` with the logits the token was chosen
    from, before the next evaluation overwrites them) and multiplies up the action's probability."""

    def __init__(self, sets: ActionTokenSets):
        self.sets = sets
        self.text = b""
        self.log_p = 0.0
        self.steps = 0

    def observe(self, token: int, piece: bytes, logits: np.ndarray) -> None:
        allowed = self.sets.allowed(self.text) if self.sets.open_actions(self.text) > 1 else None
        if allowed is not None and len(allowed) > 1:
            position = np.searchsorted(allowed, token)
            if position < len(allowed) and allowed[position] == token:
                chosen = logits[allowed].astype(np.float64)
                top = chosen.max()
                log_norm = top + math.log(float(np.exp(chosen - top).sum()))
                self.log_p += float(logits[token]) - log_norm
                self.steps += 1
        self.text += piece

    @property
    def value(self) -> float | None:
        """The action's probability, None when no action decision was observed."""
        return math.exp(self.log_p) if self.steps else None


@dataclass(frozen=True)
class ConfidenceCalibration:
    """Platt scaling of the raw action probability: sigmoid(a * logit(p) + b). Identity when
    a = 1 and b = 0. Out-of-domain input is capped at `ood_cap`: the calibration was measured on
    inputs like the training data, and says nothing about the rest."""

    a: float = 1.0
    b: float = 0.0
    ood_cap: float = 0.3
    fitted_on: str = ""

    def apply(self, raw: float | None, out_of_domain: bool = False) -> float | None:
        if raw is None:
            return None
        p = min(max(raw, 1e-6), 1 - 1e-6)
        value = 1.0 / (1.0 + math.exp(-(self.a * math.log(p / (1 - p)) + self.b)))
        if out_of_domain:
            value = min(value, self.ood_cap)
        return round(value, 4)

    def to_json(self) -> dict:
        return {"method": "platt", "a": self.a, "b": self.b, "ood_cap": self.ood_cap, "fitted_on": self.fitted_on}

    @classmethod
    def from_json(cls, data: dict | None) -> ConfidenceCalibration:
        if not data:
            return cls()
        if data.get("method", "platt") != "platt":
            raise ValueError(f"unknown confidence calibration method {data.get('method')!r}")
        return cls(float(data["a"]), float(data["b"]), float(data.get("ood_cap", 0.3)), str(data.get("fitted_on", "")))


def fit_platt(raw: list[float], correct: list[bool], iterations: int = 100) -> tuple[float, float]:
    """(a, b) minimising the log-loss of sigmoid(a * logit(raw) + b) against `correct`: Newton's
    method on two parameters, each step halved until the loss falls (a far start overshoots)."""
    p = np.clip(np.asarray(raw, dtype=np.float64), 1e-6, 1 - 1e-6)
    x = np.log(p / (1 - p))
    y = np.asarray(correct, dtype=np.float64)

    def loss(a: float, b: float) -> float:
        z = a * x + b
        return float(np.sum(np.logaddexp(0.0, z) - y * z))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iterations):
        z = 1.0 / (1.0 + np.exp(-(a * x + b)))
        grad = np.array([np.sum((z - y) * x), np.sum(z - y)])
        w = z * (1 - z) + 1e-9
        hess = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6 and loss(a - scale * step[0], b - scale * step[1]) > current:
            scale /= 2
        a, b = a - scale * step[0], b - scale * step[1]
        previous, current = current, loss(a, b)
        if previous - current < 1e-9:
            break
    return float(a), float(b)


def expected_calibration_error(confidence: list[float], correct: list[bool], bins: int = 10) -> dict:
    """ECE over equal-width confidence bins, with the per-bin figures a reliability plot draws."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows, ece = [], 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        n = int(inside.sum())
        if n:
            mean_conf, accuracy = float(conf[inside].mean()), float(ok[inside].mean())
            ece += n / len(conf) * abs(mean_conf - accuracy)
            rows.append({"lo": round(float(lo), 2), "hi": round(float(hi), 2), "n": n,
                         "confidence": mean_conf, "accuracy": accuracy})
    return {"ece": ece if len(conf) else None, "n": len(conf), "bins": rows}
