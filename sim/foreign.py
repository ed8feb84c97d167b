"""Videos no driving model should be sure about: black, noise, a test pattern, a frozen frame.

    python -m sim.foreign OUT [--from data/drive/udacity_solidWhiteRight.mp4]
    edge eval --real OUT --split all --out foreign.json

Each clip gets labels (sim.real_labels format) that accept only calm advice (keep_speed, keep_lane)
and list no hazard, so `edge eval --real` counts any alarm or named hazard on them, and reports the
out-of-domain rate and the confidence of every cycle.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

FPS = 25.0
SECONDS = 12.0  # longer than every frozen-input window (edge.ood), so the frozen clip is flagged
SIZE = (640, 360)


def _test_pattern(width: int, height: int) -> np.ndarray:
    """SMPTE-like colour bars (BGR)."""
    bars = [(192, 192, 192), (0, 192, 192), (192, 192, 0), (0, 192, 0), (192, 0, 192), (0, 0, 192), (192, 0, 0)]
    image = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(bars):
        image[:, i * width // len(bars):(i + 1) * width // len(bars)] = colour
    return image


def frames_of(kind: str, source: Path | None, rng: np.random.Generator):
    import cv2

    width, height = SIZE
    n = int(SECONDS * FPS)
    if kind == "black":
        return [np.zeros((height, width, 3), np.uint8)] * n
    if kind == "noise":
        return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]
    if kind == "test_pattern":
        return [_test_pattern(width, height)] * n
    if kind == "frozen":
        if source is None:
            raise ValueError("a frozen clip needs --from VIDEO")
        ok, frame = cv2.VideoCapture(str(source)).read()
        if not ok:
            raise ValueError(f"{source}: no frame to freeze")
        return [cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA)] * n
    raise ValueError(f"unknown kind {kind!r}")


def write_foreign_videos(out: Path | str, source: Path | None = None,
                         kinds: tuple[str, ...] = ("black", "noise", "test_pattern", "frozen")) -> list[Path]:
    import cv2

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = []
    for kind in kinds:
        if kind == "frozen" and source is None:
            continue
        path = out / f"{kind}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
        for frame in frames_of(kind, source, rng):
            writer.write(frame)
        writer.release()
        window = {"start_ms": 0, "end_ms": round(SECONDS * 1000), "actions": ["keep_speed", "keep_lane"],
                  "lateral": None, "hazards": [], "urgency": "low", "rationale": f"{kind} video", "source": kind}
        (out / f"{kind}.labels.jsonl").write_text(json.dumps(window) + "\n")
        written.append(path)
    clips = {p.stem: {"condition": p.stem, "split": "validation"} for p in written}
    (out / "clips.json").write_text(json.dumps({"clips": clips}, indent=2) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.foreign", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--from", dest="source", type=Path, default=None, help="a video whose first frame is frozen")
    args = parser.parse_args(argv)
    for path in write_foreign_videos(args.out, args.source):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
