"""Out-of-domain warning: does this clip look like anything the model was trained on?

Two checks, both cheap next to a cycle:

- **Embedding distance.** The clip's pooled vision embedding (the mean and the spread over the
  encoder's output rows) is compared with the statistics of the same quantity over the training
  clips, which the bundle carries (`ood_stats.json`): the root-mean-square of the per-dimension
  z-scores. Above the bundle's threshold (set from the training clips' own distances) the input
  is out of domain. A black, noise or test-pattern video lands far outside.
- **Blank input.** Frames without contrast (black, a lens cap, a uniform grey) show no road: the
  pixel standard deviation of every frame of the clip under `BLANK_STD`.
- **Frozen input.** Frames identical to the codec's precision for `advice.frozen_after_s` in a row
  (a stuck camera, a paused stream, a still image) say nothing about the road any more. A real
  camera never repeats a frame exactly (sensor noise), so 3 s by default; the simulator's renderer
  does while the car waits at a light, for up to about 7 s, so replays of rendered scenes wait
  longer (sim.replay.RENDERED_STILL_S).

The loop puts `out_of_domain` on the status heartbeat and names the reason in the advice's
`verdict_reason`; the advice's confidence is capped (edge.llm.confidence).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OOD_STATS_NAME = "ood_stats.json"
# Mean absolute difference between consecutive frames (0-255 levels, on a 1-in-8 pixel grid)
# under which a clip counts as frozen: a moving camera is well above it; identical frames decode
# to 0 between predicted frames and to ~0.3-0.4 across an MPEG-4 key frame.
FROZEN_MEAN_ABS_DIFF = 1.0
# How long identical frames make a feed frozen (config advice.frozen_after_s): a camera's sensor noise
# never repeats, so a few cycles suffice.
FROZEN_AFTER_S = 3.0
# Pixel standard deviation (0-255 levels, 1-in-8 grid) under which a frame is blank; the darkest
# rendered night scene and the darkened real clips are well above it.
BLANK_STD = 3.0


def blank_clip(frames: Sequence[np.ndarray]) -> bool:
    return bool(frames) and all(float(np.asarray(f)[::8, ::8].std()) < BLANK_STD for f in frames)


def pooled_embedding(rows: np.ndarray) -> np.ndarray:
    """[mean over rows | standard deviation over rows] of the encoder's output (tokens, width)."""
    rows = np.asarray(rows, dtype=np.float32)
    return np.concatenate([rows.mean(axis=0), rows.std(axis=0)])


@dataclass(frozen=True)
class OodStats:
    mean: np.ndarray
    std: np.ndarray
    threshold: float
    source: str = ""

    def distance(self, rows: np.ndarray) -> float:
        z = (pooled_embedding(rows) - self.mean) / self.std
        return float(np.sqrt(np.mean(z * z)))

    def to_json(self) -> dict:
        return {"feature": "mean+std of vision rows", "mean": [round(float(v), 6) for v in self.mean],
                "std": [round(float(v), 6) for v in self.std], "threshold": self.threshold, "source": self.source}

    @classmethod
    def from_json(cls, data: dict) -> OodStats:
        mean, std = np.asarray(data["mean"], dtype=np.float32), np.asarray(data["std"], dtype=np.float32)
        if mean.shape != std.shape or mean.ndim != 1:
            raise ValueError("ood stats: mean and std must be vectors of the same length")
        return cls(mean, np.maximum(std, 1e-6), float(data["threshold"]), str(data.get("source", "")))

    @classmethod
    def load(cls, path: Path) -> OodStats:
        return cls.from_json(json.loads(Path(path).read_text()))

    @classmethod
    def fit(cls, embeddings: np.ndarray, quantile: float = 0.995, margin: float = 1.5,
            source: str = "") -> OodStats:
        """Statistics of in-domain pooled embeddings [n, 2 * width]; the threshold is `margin`
        times the `quantile` of the in-domain clips' own distances."""
        embeddings = np.asarray(embeddings, dtype=np.float64)
        mean, std = embeddings.mean(axis=0), np.maximum(embeddings.std(axis=0), 1e-6)
        distances = np.sqrt(np.mean(((embeddings - mean) / std) ** 2, axis=1))
        threshold = float(np.quantile(distances, quantile) * margin)
        return cls(mean.astype(np.float32), std.astype(np.float32), threshold, source)


def frozen_clip(frames: Sequence[np.ndarray]) -> bool:
    """True when every consecutive pair of the clip's frames is identical to within codec noise."""
    if len(frames) < 2:
        return False
    grids = [np.asarray(f)[::8, ::8].astype(np.int16) for f in frames]
    return all(float(np.abs(a - b).mean()) < FROZEN_MEAN_ABS_DIFF for a, b in itertools.pairwise(grids))


@dataclass(frozen=True)
class OodCheck:
    out_of_domain: bool
    distance: float | None
    frozen: bool
    reason: str = ""


class OodDetector:
    """Both checks for one clip; without stats (a bundle made before them) only the frozen check runs."""

    def __init__(self, stats: OodStats | None):
        self.stats = stats
        self._frozen_since_ns: int | None = None

    @classmethod
    def from_bundle(cls, bundle_dir: Path, reports: dict[str, str]) -> OodDetector:
        rel = reports.get("ood_stats")
        return cls(OodStats.load(Path(bundle_dir) / rel) if rel else None)

    def check(self, rows: np.ndarray, frames: Sequence[np.ndarray], times_ns: list[int] | None = None,
              frozen_after_s: float = FROZEN_AFTER_S) -> OodCheck:
        """`times_ns`: the frames' capture times; frozen input is flagged once the frames have
        been identical for `frozen_after_s` (without times: at once)."""
        distance = self.stats.distance(rows) if self.stats is not None else None
        far = distance is not None and distance > self.stats.threshold  # type: ignore[union-attr]
        frozen = self._frozen_long_enough(frozen_clip(frames), times_ns, frozen_after_s)
        blank = blank_clip(frames)
        reasons = []
        if far:
            reasons.append(f"embedding distance {distance:.2f} > {self.stats.threshold:.2f}")  # type: ignore[union-attr]
        if blank:
            reasons.append("blank input (no contrast)")
        if frozen:
            reasons.append(f"frozen input (identical frames for {frozen_after_s:g} s)")
        reason = f"out_of_domain: {'; '.join(reasons)}" if reasons else ""
        return OodCheck(far or frozen or blank, distance, frozen, reason)

    def _frozen_long_enough(self, still: bool, times_ns: list[int] | None, frozen_after_s: float) -> bool:
        if not still:
            self._frozen_since_ns = None
            return False
        if not times_ns:
            return True
        if self._frozen_since_ns is None or self._frozen_since_ns > times_ns[0]:
            self._frozen_since_ns = times_ns[0]
        return times_ns[-1] - self._frozen_since_ns >= frozen_after_s * 1e9
